import Foundation
import SquisherApplications
import SquisherEstimators
import SquisherIO
import SquisherTensor
import SquisherTraining

/// The main job: every estimator in the six applications on digits, the paper's comparisons
/// reproduced (Figure 2: application results per estimator; Table 1: cost; Table 2: EWC
/// ablations) and the measured scale of the accumulator, written as a report folder with Markdown,
/// CSV and SVG plots.
///
/// The estimators are ``AblationEstimator`` values: the built-ins and any user's
/// ``TrainingRunEstimator`` side by side, in every table and plot (a user's estimator is also
/// compared with the empirical Fisher in the agreement and cost tables and gets its own Task2Vec
/// heat map).
public struct AblationStudy {
    /// The applications the study can run.
    public enum Application: String, Sendable, CaseIterable {
        case merging, pruning, fishMask = "fish-mask", task2vec, ewc
        /// The causal-LM setting (``CausalLMExperiment``): merging and FISH mask with a tiny GPT.
        case lm
    }

    /// The applications to run, in order.
    public var applications: [Application]
    /// The estimators compared (built-in and custom; names must be unique).
    public var estimators: [AblationEstimator]
    /// One run per seed; tables show mean ± std.
    public var seeds: [UInt64]
    /// `quick` (tests) or `full` (the report).
    public var size: ExperimentSize

    /// A study of `estimators` in `applications`.
    public init(applications: [Application] = Application.allCases, estimators: [AblationEstimator] = AblationEstimator.builtIns,
                seeds: [UInt64] = [0, 1, 2], size: ExperimentSize = .full) {
        self.applications = applications
        self.estimators = estimators
        self.seeds = seeds
        self.size = size
    }

    /// Everything the study produced.
    public struct Report: Sendable {
        /// Tables in report order.
        public var tables: [ResultTable]
        /// SVG documents by file name.
        public var plots: [(name: String, svg: String)]
        /// Seconds per application.
        public var seconds: [(String, Double)]
        /// The settings, for the report header.
        public var settings: String

        /// Which table answers which of the paper's comparisons.
        public var guide: String {
            let titles = tables.map(\.title)
            func find(_ fragment: String) -> String { titles.first { $0.contains(fragment) }.map { "\"\($0)\"" } ?? "(not run)" }
            return """
                - Figure 2 (each application: Fisher vs Squisher vs Fisher-free baseline, mean ± std over seeds): \
                the merging, UBGM, pruning, FISH mask, Task2Vec and EWC tables; the causal-LM tables repeat merging and FISH mask with a tiny GPT on generated token tasks.
                - Table 1 (cost of each estimator vs the Squisher's ~0): \(find("Cost of each estimator")).
                - Table 2 (EWC ablations: raw v vs N·v vs N·B·v, β₂ sweep, joint): \(find("EWC ablations")).
                - The scale of the recycled accumulator against the sum-reduced Fisher (Σ N·v / Σ F ≈ 1/B): \(find("Scale of the recycled accumulator")).
                """
        }

        /// The report as Markdown.
        public func markdown() -> String {
            var text = "# Squisher ablation study on digits\n\n\(settings)\n\n"
            text += "Reproduces the comparisons of Li, Dangel, Tam, Raffel (ICML 2025), *Fishers for Free?*, on the bundled digits data: "
            text += "per application the Fisher variants, the Squisher (Adam's `exp_avg_sq`) and the application's Fisher-free baseline (Figure 2), "
            text += "the cost of each estimator (Table 1) and the EWC ablations (Table 2), and measures the scale of Adam's `v` against the sum-reduced Fisher.\n\n"
            text += guide + "\n\n"
            for table in tables { text += table.markdown() + "\n" }
            if !plots.isEmpty {
                text += "## Plots\n\n" + plots.map { "![\($0.name)](\($0.name))" }.joined(separator: "\n\n") + "\n\n"
            }
            if !seconds.isEmpty { text += "## Run time\n\n" + seconds.map { String(format: "- %@: %.1f s", $0.0, $0.1) }.joined(separator: "\n") + "\n" }
            return text
        }

        /// Writes `report.md`, one CSV per table and the SVG plots into `folder` (created if needed);
        /// every file is written to a temporary name and renamed.
        public func write(to folder: URL) throws {
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            try AtomicFile.write(Data(markdown().utf8), to: folder.appendingPathComponent("report.md"))
            for table in tables { try AtomicFile.write(Data(table.csv().utf8), to: folder.appendingPathComponent("\(table.identifier).csv")) }
            for (name, svg) in plots { try AtomicFile.write(Data(svg.utf8), to: folder.appendingPathComponent(name)) }
        }
    }

    /// Runs the study. Progress goes to `progress` (stderr), never to stdout.
    /// - Throws: ``EstimatorError`` for no estimators or duplicate names (a user's estimator may
    ///   not take a built-in's name); whatever the experiments throw.
    public func run(progress: ProgressReporter = .silent) throws -> Report {
        try checkEstimators()
        var tables: [ResultTable] = [], plots: [(String, String)] = [], seconds: [(String, Double)] = []
        func timed<T>(_ name: String, _ body: () throws -> T) rethrows -> T {
            let start = Date()
            progress.message("ablate: \(name)...")
            defer { seconds.append((name, Date().timeIntervalSince(start))) }
            return try body()
        }
        // Agreement and cost (Table 1) always run: they are cheap and anchor every comparison.
        let custom = estimators.filter { !$0.isBuiltIn }
        let agreement = try timed("agreement and cost") { try AgreementExperiment.run(seed: seeds.first ?? 0, estimators: custom, progress: progress) }
        tables += agreement.tables().reversed()
        plots.append(("scatter_fisher_vs_squisher.svg", Self.scatterPlot(agreement)))
        let scale = try timed("scale") { try ScaleExperiment.run(seed: seeds.first ?? 0, batchSizes: size == .quick ? [32] : [8, 32, 128], progress: progress) }
        tables += scale.tables()
        for application in applications {
            switch application {
            case .merging:
                let result = try timed("merging") { try MergingExperiment.run(size: size, seeds: seeds, estimators: estimators, progress: progress) }
                tables += result.tables()
            case .pruning:
                let result = try timed("pruning") { try PruningExperiment.run(size: size, seeds: seeds, estimators: estimators, progress: progress) }
                tables += result.tables()
                plots.append(("pruning_accuracy_vs_sparsity.svg", Self.pruningPlot(result)))
            case .fishMask:
                let result = try timed("fish-mask") { try FishMaskExperiment.run(size: size, seeds: seeds, estimators: estimators, progress: progress) }
                tables += result.tables()
            case .task2vec:
                let (t, p) = try timed("task2vec") { try Self.task2vec(size: size, seeds: seeds, estimators: estimators, progress: progress) }
                tables += t
                plots += p
            case .ewc:
                let (t, p) = try timed("ewc") { try Self.ewc(size: size, seeds: seeds, estimators: estimators, progress: progress) }
                tables += t
                plots += p
            case .lm:
                let result = try timed("lm") { try CausalLMExperiment.run(size: size, seeds: seeds, estimators: estimators, progress: progress) }
                tables += result.tables()
            }
        }
        let settings = "Size: \(size.rawValue); seeds: \(seeds.map(String.init).joined(separator: ", ")); estimators: \(estimators.map(\.name).joined(separator: ", ")); applications: \(applications.map(\.rawValue).joined(separator: ", ")). The Squisher is read without bias correction, scaled by N where scale matters."
        return Report(tables: tables, plots: plots, seconds: seconds, settings: settings)
    }

    /// Names must be unique, and a user's estimator may not reuse a name the study gives its own
    /// estimators.
    func checkEstimators() throws(EstimatorError) {
        guard !estimators.isEmpty else { throw EstimatorError(estimator: "ablation", problem: "needs at least one estimator") }
        var seen: Set<String> = []
        let reserved: Set<String> = ["true-fisher-mc1"]
        for estimator in estimators {
            guard seen.insert(estimator.name).inserted else {
                throw EstimatorError(estimator: estimator.name, problem: "two estimators of the ablation are named '\(estimator.name)'; names identify table rows and must be unique")
            }
            guard estimator.isBuiltIn || !reserved.contains(estimator.name) else {
                throw EstimatorError(estimator: estimator.name, problem: "'\(estimator.name)' is the name of an estimator the study always runs; choose another name")
            }
        }
    }

    static func scatterPlot(_ result: AgreementExperiment.Result) -> String {
        guard let fisher = result.importances["fisher"], let squisher = result.importances["squisher"] else { return "" }
        let series = fisher.names.map { name in
            SVGPlot.Series(label: name, points: zip(fisher[name]!.scalars, squisher[name]!.scalars).map { (Double($0), Double($1)) })
        }
        return SVGPlot.scatter(title: "Empirical Fisher vs Squisher (raw v), per parameter", xLabel: "empirical Fisher (sum over N)", yLabel: "Squisher v (Adam exp_avg_sq)", series: series, diagonal: false)
    }

    static func pruningPlot(_ result: PruningExperiment.Result) -> String {
        SVGPlot.lines(
            title: "Fisher pruning on digits (no fine-tuning)", xLabel: "fraction of weights removed", yLabel: "test accuracy (%)",
            xTicks: result.sparsities.map { ($0, "\(Int(100 * $0))%") },
            series: result.rowOrder.map { row in
                SVGPlot.Series(label: row, points: zip(result.sparsities, result.withoutFineTuning[row]!).map { ($0, 100 * $1.mean) },
                               errors: result.withoutFineTuning[row]!.map { 100 * $0.standardDeviation })
            })
    }
}
