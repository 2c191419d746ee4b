import Foundation
import SquisherApplications
import SquisherData
import SquisherEstimators
import SquisherLayers
import SquisherOptimizers
import SquisherTensor
import SquisherTraining

/// The set-up of the EWC experiment on split digits.
public struct EWCConfiguration: Sendable, Codable, Hashable {
    /// Hidden widths of the shared body (`64-hidden...-10`, ReLU, PyTorch naming).
    public var hidden: [Int]
    /// Epochs of Adam per task (task-incremental).
    public var epochsPerTask: Int
    /// Epochs of Adam per task in the class-incremental scenario.
    public var classIncrementalEpochsPerTask: Int
    /// Mini-batch size (mean-reduced cross-entropy).
    public var batchSize: Int
    /// Adam's learning rate (betas (0.9, 0.999), eps 1e-8, no weight decay), task-incremental.
    public var learningRate: Float
    /// Adam's learning rate in the class-incremental scenario (at the task-incremental rate the
    /// plain network stops learning after task 1 there and predicts one class for everything).
    public var classIncrementalLearningRate: Float
    /// Fraction of each task's training data held out for choosing `λ`.
    public var validationFraction: Double
    /// The `λ` grid of the task-incremental sweep (every importance-based estimator).
    public var lambdas: [Double]
    /// The `λ` grid of the class-incremental sweep.
    public var classIncrementalLambdas: [Double]
    /// β₂ values of the hook-accumulator ablation.
    public var ablationBeta2s: [Float]
    /// `nil`: a separate penalty per task (van de Ven's EWC); otherwise online EWC with this `γ`.
    public var onlineGamma: Double?

    /// The digit pairs of the tasks: `{0,1}, {2,3}, ..., {8,9}`.
    public static let taskClasses: [[Int]] = (0..<5).map { [2 * $0, 2 * $0 + 1] }
    /// The number of tasks (5).
    public var taskCount: Int { Self.taskClasses.count }

    /// A set-up with every field given (see ``preset(_:)`` for the presets).
    public init(hidden: [Int], epochsPerTask: Int, classIncrementalEpochsPerTask: Int, batchSize: Int, learningRate: Float,
                classIncrementalLearningRate: Float, validationFraction: Double, lambdas: [Double], classIncrementalLambdas: [Double],
                ablationBeta2s: [Float], onlineGamma: Double? = nil) {
        self.hidden = hidden
        self.epochsPerTask = epochsPerTask
        self.classIncrementalEpochsPerTask = classIncrementalEpochsPerTask
        self.batchSize = batchSize
        self.learningRate = learningRate
        self.classIncrementalLearningRate = classIncrementalLearningRate
        self.validationFraction = validationFraction
        self.lambdas = lambdas
        self.classIncrementalLambdas = classIncrementalLambdas
        self.ablationBeta2s = ablationBeta2s
        self.onlineGamma = onlineGamma
    }

    /// The preset of a size: `quick` (tests, `--quick`) sweeps fewer `λ`s with fewer epochs.
    public static func preset(_ size: ExperimentSize) -> EWCConfiguration {
        switch size {
        case .quick:
            EWCConfiguration(hidden: [50, 50, 50], epochsPerTask: 10, classIncrementalEpochsPerTask: 20, batchSize: 32, learningRate: 1e-2,
                             classIncrementalLearningRate: 3e-3, validationFraction: 0.2,
                             lambdas: [10, 100, 1000], classIncrementalLambdas: [10, 1000],
                             ablationBeta2s: [0.9, 0.95, 0.99, 0.999])
        case .full:
            EWCConfiguration(hidden: [50, 50, 50], epochsPerTask: 10, classIncrementalEpochsPerTask: 20, batchSize: 32, learningRate: 1e-2,
                             classIncrementalLearningRate: 3e-3, validationFraction: 0.2,
                             lambdas: [1, 10, 100, 1000, 10_000], classIncrementalLambdas: [1, 10, 100, 1000, 10_000],
                             ablationBeta2s: [0.9, 0.95, 0.99, 0.999])
        }
    }

    /// One sentence describing the set-up of a scenario, for table notes.
    public func summary(_ scenario: EWCScenario) -> String {
        let (epochs, learningRate) = training(scenario)
        return "MLP 64-\(hidden.map(String.init).joined(separator: "-"))-10 (ReLU), 5 tasks {0,1}...{8,9} of the seeded 80/20 digits split, "
            + "\(Int(100 * validationFraction))% of each task's training data held out for validation; fresh Adam(lr \(learningRate)) per task, "
            + "\(epochs) epochs, batch \(batchSize), mean-reduced cross-entropy; "
            + (onlineGamma.map { "online EWC (γ = \($0))" } ?? "one EWC penalty (λ/2) Σ F (θ − θ*)² per earlier task")
            + ", importances summed over the task's N training samples (Squisher: N·v)."
    }

    /// Epochs per task and learning rate of a scenario.
    public func training(_ scenario: EWCScenario) -> (epochs: Int, learningRate: Float) {
        scenario == .taskIncremental ? (epochsPerTask, learningRate) : (classIncrementalEpochsPerTask, classIncrementalLearningRate)
    }
}

/// Elastic weight consolidation on split digits with the Fisher variants and the Squisher, the
/// paper's EWC experiment and ablations at digits scale [1].
///
/// Set-up (see `Guides/EWC.md`): 5 tasks of 2 digits from ``DigitsExperiment/split(seed:)``; one
/// MLP body with a shared 10-way output. Every model is `Sequential([body, OutputSubset(columns)])`
/// (parameter names `0.0.weight`, `0.0.bias`, `0.2.weight`, ... identical for every task):
/// task-incremental uses the columns `[2t, 2t+1]` and labels 0/1, class-incremental all 10 columns
/// and the digit labels. Each task trains with a **fresh** Adam (β₂ = 0.999), so the Squisher of
/// task `t` is exactly that task's `exp_avg_sq` (which also squares the EWC penalty's gradient,
/// as in any training run with EWC), scaled by `N_t`, the task's training-set size. After each
/// task the chosen importance is computed on the task's training data and consolidated with the
/// final parameters as anchor.
///
/// [1]: Li, Dangel, Tam, Raffel 2025, Fishers for Free?; Kirkpatrick et al. 2017, Overcoming
///      catastrophic forgetting in neural networks.
public enum EWCExperiment {
    /// The data of one task for one scenario.
    struct TaskData {
        var fit: Dataset
        var validation: Dataset
        var test: Dataset
    }

    /// Seeds derived from the experiment seed with `SplitMix64`.
    struct Seeds {
        var model: UInt64
        var validation: UInt64
        var tasks: [UInt64]

        init(_ seed: UInt64, taskCount: Int) {
            var generator = SplitMix64(seed: seed ^ 0xE3C0_E3C0)
            model = generator.next()
            validation = generator.next()
            tasks = (0..<taskCount).map { _ in generator.next() }
        }
    }

    /// The tasks of one seed: each task's training data (split into fit and validation with a seeded
    /// shuffle) and test data, with labels for the scenario.
    static func tasks(seed: UInt64, scenario: EWCScenario, configuration: EWCConfiguration) throws -> [TaskData] {
        let (train, test) = try DigitsExperiment.split(seed: seed)
        var generator = SplitMix64(seed: Seeds(seed, taskCount: configuration.taskCount).validation)
        return try EWCConfiguration.taskClasses.map { classes in
            var taskTrain = try train.classes(classes)
            var taskTest = try test.classes(classes)
            if scenario == .classIncremental {
                taskTrain = try taskTrain.mapLabels(classCount: 10) { classes[$0] }
                taskTest = try taskTest.mapLabels(classCount: 10) { classes[$0] }
            }
            let (fit, validation) = try taskTrain.split(testFraction: configuration.validationFraction, using: &generator)
            return TaskData(fit: fit, validation: validation, test: taskTest)
        }
    }

    /// The model through which task `task` is trained and evaluated: the shared body and the
    /// scenario's output columns. The same two-level structure for every task and scenario, so
    /// parameter names (`0.0.weight`, ...) never change.
    public static func head(_ body: Sequential, scenario: EWCScenario, task: Int) -> Sequential {
        let columns = scenario == .taskIncremental ? EWCConfiguration.taskClasses[task] : Array(0..<10)
        return Sequential([body, OutputSubset(columns: columns)])
    }

    /// One sequence of tasks with one method and one `λ` (the building block of ``run(configuration:seeds:estimators:progress:)``).
    /// - Throws: ``ApplicationError`` for a negative `λ`; training, estimator or data errors.
    public static func sequence(
        scenario: EWCScenario, importance: EWCImportance, lambda: Double, seed: UInt64, configuration: EWCConfiguration
    ) throws -> EWCRunResult {
        try sequence(tasks: tasks(seed: seed, scenario: scenario, configuration: configuration), scenario: scenario,
                     importance: importance, lambda: lambda, seed: seed, configuration: configuration)
    }

    static func sequence(
        tasks: [TaskData], scenario: EWCScenario, importance: EWCImportance, lambda: Double, seed: UInt64, configuration: EWCConfiguration
    ) throws -> EWCRunResult {
        let start = Date()
        let seeds = Seeds(seed, taskCount: tasks.count)
        let body = DigitsExperiment.mlp(hidden: configuration.hidden, classes: 10, seed: seeds.model)
        let penaltyStrength = importance == .none ? 0 : lambda
        let ewc = try ElasticWeightConsolidation(
            lambda: penaltyStrength, mode: configuration.onlineGamma.map { .online(gamma: $0) } ?? .separate)
        var testAccuracy: [[Double]] = [], validationAccuracy: [[Double]] = []
        var importanceSeconds = 0.0
        var importanceTotals: [Double] = []
        let (epochs, learningRate) = configuration.training(scenario)
        for (t, task) in tasks.enumerated() {
            let model = head(body, scenario: scenario, task: t)
            let optimizer = try Adam(parameters: model.namedParameters, learningRate: learningRate)
            let consolidates = penaltyStrength > 0 && t < tasks.count - 1
            let observers = try importance.estimator.map { estimator in
                try TrainingRunObservers(run: TrainingRun(model: model, optimizer: optimizer, data: task.fit, batchSize: configuration.batchSize), estimators: consolidates ? [estimator] : [])
            }
            try Trainer.train(
                model: model, optimizer: optimizer, data: task.fit,
                configuration: TrainingConfiguration(epochs: epochs, batchSize: configuration.batchSize, seed: seeds.tasks[t]),
                regularizers: penaltyStrength > 0 ? [ewc] : [])

            var testRow: [Double] = [], validationRow: [Double] = []
            for (j, other) in tasks.enumerated() {
                let evaluationModel = head(body, scenario: scenario, task: j)
                testRow.append(try Trainer.evaluate(model: evaluationModel, data: other.test).accuracy)
                validationRow.append(try Trainer.evaluate(model: evaluationModel, data: other.validation).accuracy)
            }
            testAccuracy.append(testRow)
            validationAccuracy.append(validationRow)

            guard consolidates, let observers else { continue }
            let importanceStart = Date()
            let values = try observers.estimate(0)
            importanceSeconds += Date().timeIntervalSince(importanceStart)
            importanceTotals.append(values.flattened.reduce(0.0) { $0 + Double($1) })
            try ewc.consolidate(importance: values, anchor: model.stateDict())
        }
        return EWCRunResult(seed: seed, testAccuracy: testAccuracy, validationAccuracy: validationAccuracy,
                            importanceSeconds: importanceSeconds, importanceTotals: importanceTotals, seconds: Date().timeIntervalSince(start))
    }

    /// Runs the experiment at a preset size.
    /// - Parameters:
    ///   - seeds: one sequence per seed and variant (mean ± std over seeds).
    ///   - estimators: importance-based estimators to compare, built-in or a user's (the baseline
    ///     "no regularization" is always included; ``AblationEstimator/baseline`` in the list is
    ///     ignored). The ablations need `.squisher` (and use `.empiricalFisher`'s `λ` when present).
    public static func run(
        size: ExperimentSize, seeds: [UInt64], estimators: [AblationEstimator] = AblationEstimator.importanceBased,
        progress: ProgressReporter = .silent
    ) throws -> EWCResult {
        try run(configuration: .preset(size), seeds: seeds, estimators: estimators, progress: progress)
    }

    /// Runs the `λ` sweeps (task- and class-incremental), selects `λ` per method on validation,
    /// and runs the ablations at the selected `λ`s.
    /// - Throws: ``ApplicationError`` for no seeds or an empty or negative `λ` grid; training errors.
    public static func run(
        configuration: EWCConfiguration, seeds: [UInt64], estimators: [AblationEstimator] = AblationEstimator.importanceBased,
        progress: ProgressReporter = .silent
    ) throws -> EWCResult {
        guard !seeds.isEmpty else { throw ApplicationError(application: "ewc", problem: "needs at least one seed") }
        for (name, grid) in [("lambdas", configuration.lambdas), ("classIncrementalLambdas", configuration.classIncrementalLambdas)] {
            guard !grid.isEmpty, grid.allSatisfy({ $0 > 0 && $0.isFinite }) else {
                throw ApplicationError(application: "ewc", problem: "\(name) must be a non-empty list of finite values > 0, got \(grid)")
            }
        }
        let start = Date()
        var methods: [AblationEstimator] = []
        for choice in estimators where !choice.isBaseline && !methods.contains(choice) { methods.append(choice) }
        let hasSquisher = methods.contains(.squisher)

        let sweepRuns = seeds.count * (2 + methods.count * (configuration.lambdas.count + configuration.classIncrementalLambdas.count))
        let ablationRuns = hasSquisher ? seeds.count * (5 + configuration.lambdas.count + configuration.ablationBeta2s.count) : 0
        let runner = try EWCVariantRunner(configuration: configuration, seeds: seeds, totalRuns: sweepRuns + ablationRuns, progress: progress)
        func elapsed() -> String { String(format: "%.1f", Date().timeIntervalSince(start)) }

        let main = try runner.selected(.taskIncremental, grid: configuration.lambdas, methods: methods)
        progress.message("ewc: task-incremental sweep done (\(elapsed()) s)")
        let ablations = try runner.ablations(main: main)
        progress.message("ewc: ablations done (\(elapsed()) s)")
        let classIncremental = try runner.selected(.classIncremental, grid: configuration.classIncrementalLambdas, methods: methods)
        progress.message("ewc: class-incremental sweep done (\(elapsed()) s)")

        return EWCResult(configuration: configuration, seeds: seeds, sweep: runner.sweep, main: main, ablations: ablations,
                         classIncremental: classIncremental, seconds: Date().timeIntervalSince(start), notes: runner.notes)
    }
}
