import Foundation
import SquisherApplications
import SquisherEstimators
import SquisherIO
import SquisherTensor
import SquisherTraining

/// The main job: every estimator in the six applications on digits, the paper's comparisons
/// reproduced (Figure 2: application results per estimator; Table 1: cost; Table 2: EWC
/// ablations), written as a report folder with Markdown, CSV and SVG plots.
public struct AblationStudy {
    /// The applications the study can run.
    public enum Application: String, Sendable, CaseIterable {
        case merging, pruning, fishMask = "fish-mask", task2vec, ewc
    }

    public var applications: [Application]
    public var estimators: [EstimatorChoice]
    public var seeds: [UInt64]
    public var size: ExperimentSize

    public init(applications: [Application] = Application.allCases, estimators: [EstimatorChoice] = EstimatorChoice.allCases,
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
                the merging, UBGM, pruning, FISH mask, Task2Vec and EWC tables.
                - Table 1 (cost of each estimator vs the Squisher's ~0): \(find("Cost of each estimator")).
                - Table 2 (EWC ablations: raw v vs N·v, β₂ sweep, joint): \(find("EWC ablations")).
                """
        }

        /// The report as Markdown.
        public func markdown() -> String {
            var text = "# Squisher ablation study on digits\n\n\(settings)\n\n"
            text += "Reproduces the comparisons of Li, Dangel, Tam, Raffel (ICML 2025), *Fishers for Free?*, on the bundled digits data: "
            text += "per application the Fisher variants, the Squisher (Adam's `exp_avg_sq`) and the application's Fisher-free baseline (Figure 2), "
            text += "the cost of each estimator (Table 1) and the EWC ablations (Table 2).\n\n"
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
    public func run(progress: ProgressReporter = .silent) throws -> Report {
        var tables: [ResultTable] = [], plots: [(String, String)] = [], seconds: [(String, Double)] = []
        func timed<T>(_ name: String, _ body: () throws -> T) rethrows -> T {
            let start = Date()
            progress.message("ablate: \(name)...")
            defer { seconds.append((name, Date().timeIntervalSince(start))) }
            return try body()
        }
        // Agreement and cost (Table 1) always run: they are cheap and anchor every comparison.
        let agreement = try timed("agreement and cost") { try AgreementExperiment.run(seed: seeds.first ?? 0, progress: progress) }
        tables += agreement.tables().reversed()
        plots.append(("scatter_fisher_vs_squisher.svg", Self.scatterPlot(agreement)))
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
            }
        }
        let settings = "Size: \(size.rawValue); seeds: \(seeds.map(String.init).joined(separator: ", ")); estimators: \(estimators.map(\.rawValue).joined(separator: ", ")); applications: \(applications.map(\.rawValue).joined(separator: ", ")). The Squisher is read without bias correction, scaled by N where scale matters."
        return Report(tables: tables, plots: plots, seconds: seconds, settings: settings)
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
