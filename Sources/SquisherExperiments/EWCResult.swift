import Foundation
import SquisherEstimators

/// The continual-learning scenario of an EWC run on split digits [1].
///
/// [1]: van de Ven & Tolias 2019, Three scenarios for continual learning.
public enum EWCScenario: String, Sendable, Codable, CaseIterable {
    /// Task-incremental: the task identity is known at test time; task `t` is trained and
    /// evaluated through its own 2-way head, `OutputSubset(columns: [2t, 2t+1])` of the shared
    /// 10-way output, with labels mapped to 0/1.
    case taskIncremental = "task-incremental"
    /// Class-incremental: one 10-way head for everything, original digit labels, no task identity
    /// at test time (a task's test accuracy is the 10-way accuracy on its two digits).
    case classIncremental = "class-incremental"
}

/// Which importance EWC consolidates after each task (or none: the baseline).
public enum EWCImportance: Sendable, Hashable, Codable, CustomStringConvertible {
    /// No regularization (`λ = 0`): the Fisher-free baseline, plain fine-tuning.
    case none
    /// One of the compared estimators (built-in or a user's), on the task's training run:
    /// empirical/true Fisher (sum over the task's `N` training samples), the joint empirical Fisher
    /// divided by `B`, the Squisher `N·v` (the task's fresh Adam's `exp_avg_sq`), ...
    case estimator(AblationEstimator)
    /// Ablation: the raw, unscaled `v` (Adam's `exp_avg_sq`, no factor `N`).
    case squisherRaw
    /// Ablation: `N·B·v`, the scale of the sum-reduced Fisher (see `SquisherScaling`).
    case squisherSumReducedFisher
    /// Ablation: `N·v` from a ``SquaredGradientAccumulator`` hook with `.ema(beta2:)` attached to
    /// the same Adam (β₂ = 0.999) that trains the task (the optimizer's own β₂ is unchanged).
    case squisherEMA(beta2: Float)
    /// Ablation: the Squisher `N·v` with Adam's bias correction `1/(1 − β₂ᵗ)` applied.
    case squisherBiasCorrected

    /// A display name for tables.
    public var description: String {
        switch self {
        case .none: "no regularization (λ = 0)"
        case .estimator(let choice): choice.displayName
        case .squisherRaw: "Squisher raw v (no N)"
        case .squisherSumReducedFisher: "Squisher N·B·v (sum-reduced Fisher scale)"
        case .squisherEMA(let beta2): "Squisher N·v, hook β₂ = \(beta2)"
        case .squisherBiasCorrected: "Squisher N·v, bias-corrected"
        }
    }

    /// The estimator run on each task's training run (`nil` for no regularization).
    public var estimator: (any TrainingRunEstimator)? {
        switch self {
        case .none: nil
        case .estimator(let choice): choice.estimator
        case .squisherRaw: RecycledSquisher(scaling: .raw)
        case .squisherSumReducedFisher: RecycledSquisher(scaling: .sumReducedFisher)
        case .squisherEMA(let beta2): HookSquisher(rule: .ema(beta2: beta2), scaling: .datasetSize)
        case .squisherBiasCorrected: RecycledSquisher(scaling: .datasetSize, biasCorrection: true)
        }
    }
}

/// One sequence of 5 tasks with one method, one `λ` and one seed.
public struct EWCRunResult: Sendable, Codable, Hashable {
    /// The seed of the split, the initialization and the shuffling.
    public var seed: UInt64
    /// Test accuracy `[stage][task]` in [0, 1]: entry `[i][j]` is the accuracy on task `j`'s test
    /// set after training on tasks `0...i` (entries `j > i` are untrained tasks, kept for plots).
    public var testAccuracy: [[Double]]
    /// The same on the validation sets carved from the training data (used to choose `λ`).
    public var validationAccuracy: [[Double]]
    /// Wall-clock seconds spent computing importances (all tasks).
    public var importanceSeconds: Double
    /// The sum of all entries of each consolidated importance, per task (4 entries: the last task
    /// is not consolidated; empty for the baseline). Shows the scale that `λ` multiplies.
    public var importanceTotals: [Double]
    /// Wall-clock seconds of the whole sequence.
    public var seconds: Double

    /// A run's numbers (matrices `[stage][task]`, accuracies in [0, 1]).
    public init(seed: UInt64, testAccuracy: [[Double]], validationAccuracy: [[Double]], importanceSeconds: Double,
                importanceTotals: [Double] = [], seconds: Double) {
        self.seed = seed
        self.importanceTotals = importanceTotals
        self.testAccuracy = testAccuracy
        self.validationAccuracy = validationAccuracy
        self.importanceSeconds = importanceSeconds
        self.seconds = seconds
    }

    /// Mean test accuracy over all tasks after the last one (the headline number).
    public var finalAverageTestAccuracy: Double { Self.mean(testAccuracy.last ?? []) }
    /// Mean validation accuracy over all tasks after the last one.
    public var finalAverageValidationAccuracy: Double { Self.mean(validationAccuracy.last ?? []) }

    static func mean(_ values: [Double]) -> Double { values.isEmpty ? .nan : values.reduce(0, +) / Double(values.count) }
}

/// One method at one `λ` in one scenario, over all seeds.
public struct EWCVariantResult: Sendable, Codable, Hashable {
    /// The scenario.
    public var scenario: EWCScenario
    /// What EWC consolidates.
    public var importance: EWCImportance
    /// The penalty strength of `(λ/2) Σ F (θ − θ*)²` (0 for the baseline).
    public var lambda: Double
    /// How `λ` was set (`"own best on validation"`, `"Fisher's λ"`, `"sweep"`, ...).
    public var lambdaChoice: String
    /// One run per seed, in seed order.
    public var runs: [EWCRunResult]

    /// The runs of one variant, one per seed.
    public init(scenario: EWCScenario, importance: EWCImportance, lambda: Double, lambdaChoice: String = "sweep", runs: [EWCRunResult]) {
        self.scenario = scenario
        self.importance = importance
        self.lambda = lambda
        self.lambdaChoice = lambdaChoice
        self.runs = runs
    }

    /// Final average test accuracy over seeds (mean ± sample std).
    public var finalTestAccuracy: Spread { Spread(runs.map(\.finalAverageTestAccuracy)) }
    /// Final average validation accuracy over seeds.
    public var finalValidationAccuracy: Spread { Spread(runs.map(\.finalAverageValidationAccuracy)) }
    /// The sum of the first task's importance entries, over seeds (`nil` for the baseline).
    public var firstImportanceTotal: Spread? {
        let totals = runs.compactMap(\.importanceTotals.first)
        return totals.isEmpty ? nil : Spread(totals)
    }
    /// Importance computation time per sequence (5 tasks), over seeds.
    public var importanceSeconds: Spread { Spread(runs.map(\.importanceSeconds)) }

    /// The test accuracy matrix `[stage][task]` averaged over seeds ("accuracy per task over time").
    public var meanTestAccuracy: [[Double]] {
        guard let first = runs.first else { return [] }
        return first.testAccuracy.indices.map { i in
            first.testAccuracy[i].indices.map { j in EWCRunResult.mean(runs.map { $0.testAccuracy[i][j] }) }
        }
    }
}

/// Everything ``EWCExperiment/run(size:seeds:estimators:progress:)`` measured: the `λ` sweeps,
/// the selected main comparison, the ablations and the class-incremental variant, with the raw
/// numbers (per-seed accuracy matrices) for plots.
public struct EWCResult: Sendable, Codable, Hashable {
    /// The set-up used.
    public var configuration: EWCConfiguration
    /// The seeds, in order.
    public var seeds: [UInt64]
    /// Every (scenario, method, `λ`) evaluated, including the unselected `λ`s.
    public var sweep: [EWCVariantResult]
    /// Task-incremental: the baseline, then each estimator at its `λ` chosen on validation.
    public var main: [EWCVariantResult]
    /// Task-incremental ablations (raw `v`, `N·v` at the Fisher's `λ`, β₂ of the hook, bias
    /// correction, joint Fisher), with the baseline and the Fisher for reference.
    public var ablations: [EWCVariantResult]
    /// Class-incremental: the baseline, then each estimator at its `λ` chosen on validation.
    public var classIncremental: [EWCVariantResult]
    /// Wall-clock seconds of the whole experiment.
    public var seconds: Double
    /// What the tables cannot show (an ablation `λ` whose training failed), printed under the
    /// ablation table.
    public var notes: [String]

    /// A complete result (normally made by ``EWCExperiment/run(configuration:seeds:estimators:progress:)``).
    public init(configuration: EWCConfiguration, seeds: [UInt64], sweep: [EWCVariantResult], main: [EWCVariantResult],
                ablations: [EWCVariantResult], classIncremental: [EWCVariantResult], seconds: Double, notes: [String] = []) {
        self.notes = notes
        self.configuration = configuration
        self.seeds = seeds
        self.sweep = sweep
        self.main = main
        self.ablations = ablations
        self.classIncremental = classIncremental
        self.seconds = seconds
    }

    /// Final average test accuracy per method of the main (task-incremental) comparison, keyed by
    /// the method's display name.
    public var mainAccuracy: [String: Spread] {
        Dictionary(main.map { ($0.importance.description, $0.finalTestAccuracy) }, uniquingKeysWith: { a, _ in a })
    }

    /// The selected task-incremental result of one method (`.none` for the baseline).
    public func main(_ importance: EWCImportance) -> EWCVariantResult? { main.first { $0.importance == importance } }

    /// The tables for reports: main comparison, ablations, class-incremental, and the full `λ` sweep.
    public func tables() -> [ResultTable] {
        let seedNote = "Mean ± sample std over \(seeds.count) seed(s) \(seeds.map(String.init)); accuracies in %."
        func lambdaText(_ variant: EWCVariantResult) -> String {
            variant.importance == .none ? "0" : String(format: "%g", variant.lambda)
        }
        func perTask(_ variant: EWCVariantResult) -> [String] {
            (variant.meanTestAccuracy.last ?? []).map { String(format: "%.1f", 100 * $0) }
        }
        let taskColumns = (0..<configuration.taskCount).map { "task \($0 + 1) {\(2 * $0),\(2 * $0 + 1)}" }

        let mainTable = ResultTable(
            identifier: "ewc",
            title: "EWC on split digits, task-incremental: average test accuracy after task \(configuration.taskCount)",
            columns: ["method", "λ (chosen on validation)", "avg test acc", "avg val acc", "Σ importance, task 1"] + taskColumns,
            rows: main.map { v in
                [v.importance.description, lambdaText(v), v.finalTestAccuracy.percent, v.finalValidationAccuracy.percent,
                 v.firstImportanceTotal.map { String(format: "%.3g", $0.mean) } ?? "–"] + perTask(v)
            },
            notes: [seedNote, configuration.summary(.taskIncremental),
                    "λ is chosen per method by the final average validation accuracy (validation split carved from each task's training data), then reported on test.",
                    "Per-task columns: test accuracy of each task after the last task (mean over seeds).",
                    "Σ importance: the sum of all entries of the importance consolidated after task 1 (mean over seeds), the scale that λ multiplies."])

        let ablationTable = ResultTable(
            identifier: "ewc-ablations",
            title: "EWC ablations on split digits, task-incremental: average test accuracy after task \(configuration.taskCount)",
            columns: ["variant", "λ", "how λ was set", "avg test acc", "avg val acc", "Σ importance, task 1"],
            rows: ablations.map { v in
                [v.importance.description, lambdaText(v), v.lambdaChoice, v.finalTestAccuracy.percent, v.finalValidationAccuracy.percent,
                 v.firstImportanceTotal.map { String(format: "%.3g", $0.mean) } ?? "–"]
            },
            notes: [seedNote, configuration.summary(.taskIncremental),
                    "β₂ rows: Adam keeps β₂ = 0.999 for its update; the importance is N·v from a SquaredGradientAccumulator(.ema(beta2:)) hook on the same optimizer (β₂ = 0.999 reproduces Adam's exp_avg_sq bit for bit), at the Squisher's chosen λ.",
                    "No EMA is bias-corrected unless stated: after T steps the uncorrected v carries a factor 1 − β₂ᵀ, so small β₂ gives a larger importance at the same λ.",
                    "N·B·v rows: the Squisher scaled to the sum-reduced Fisher (B = \(configuration.batchSize), see SquisherScaling), at the Fisher's λ and at its own λ chosen on validation from the same grid."] + notes)

        let classTable = ResultTable(
            identifier: "ewc-class-incremental",
            title: "EWC on split digits, class-incremental (single 10-way head, no task identity): average test accuracy after task \(configuration.taskCount)",
            columns: ["method", "λ (chosen on validation)", "avg test acc", "avg val acc"] + taskColumns,
            rows: classIncremental.map { v in
                [v.importance.description, lambdaText(v), v.finalTestAccuracy.percent, v.finalValidationAccuracy.percent] + perTask(v)
            },
            notes: [seedNote, configuration.summary(.classIncremental),
                    "Per-task accuracy is the 10-way accuracy on that task's two digits; EWC is known to fail in this scenario (van de Ven & Tolias 2019): expect the last task to dominate."])

        let sweepTable = ResultTable(
            identifier: "ewc-lambda-sweep",
            title: "EWC λ sweep on split digits (final average accuracy)",
            columns: ["scenario", "method", "λ", "avg val acc", "avg test acc"],
            rows: sweep.map { v in
                [v.scenario.rawValue, v.importance.description, lambdaText(v), v.finalValidationAccuracy.percent, v.finalTestAccuracy.percent]
            },
            notes: [seedNote])
        return [mainTable, ablationTable, classTable, sweepTable]
    }
}
