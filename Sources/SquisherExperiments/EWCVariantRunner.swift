import Foundation
import SquisherApplications
import SquisherTraining

/// The bookkeeping of one ``EWCExperiment`` run: each (scenario, importance, `λ`) is run once over
/// all seeds and cached, every evaluated variant is recorded for the sweep table, and progress is
/// counted against the expected number of sequences.
final class EWCVariantRunner {
    let configuration: EWCConfiguration
    let seeds: [UInt64]
    let totalRuns: Int
    let progress: ProgressReporter
    private var taskCache: [EWCScenario: [UInt64: [EWCExperiment.TaskData]]] = [:]
    private var computed: [String: EWCVariantResult] = [:]
    private var doneRuns = 0
    /// Every variant evaluated in a sweep, in order.
    private(set) var sweep: [EWCVariantResult] = []
    /// Failures that the tables cannot show (an ablation `λ` whose training failed).
    private(set) var notes: [String] = []

    /// Builds the tasks of every scenario and seed once.
    init(configuration: EWCConfiguration, seeds: [UInt64], totalRuns: Int, progress: ProgressReporter) throws {
        self.configuration = configuration
        self.seeds = seeds
        self.totalRuns = totalRuns
        self.progress = progress
        for scenario in EWCScenario.allCases {
            for seed in seeds {
                taskCache[scenario, default: [:]][seed] = try EWCExperiment.tasks(seed: seed, scenario: scenario, configuration: configuration)
            }
        }
    }

    /// One variant over all seeds (cached; `choice` only relabels a cached result).
    func variant(_ scenario: EWCScenario, _ importance: EWCImportance, _ lambda: Double, choice: String) throws -> EWCVariantResult {
        let key = "\(scenario)|\(importance)|\(lambda)"
        if var cached = computed[key] {
            cached.lambdaChoice = choice
            return cached
        }
        var runs: [EWCRunResult] = []
        for seed in seeds {
            do {
                runs.append(try EWCExperiment.sequence(tasks: taskCache[scenario]![seed]!, scenario: scenario, importance: importance,
                                                       lambda: lambda, seed: seed, configuration: configuration))
            } catch {
                throw ApplicationError(application: "ewc", problem: "\(scenario.rawValue), \(importance), λ = \(lambda), seed \(seed): \(error)")
            }
            doneRuns += 1
            progress.update("ewc", done: min(doneRuns, totalRuns), total: totalRuns, detail: "\(scenario.rawValue) \(importance) λ=\(lambda)")
        }
        let result = EWCVariantResult(scenario: scenario, importance: importance, lambda: lambda, lambdaChoice: choice, runs: runs)
        computed[key] = result
        return result
    }

    /// The baseline, then each method at its `λ` chosen on validation from `grid`.
    func selected(_ scenario: EWCScenario, grid: [Double], methods: [AblationEstimator]) throws -> [EWCVariantResult] {
        let baseline = try variant(scenario, .none, 0, choice: "baseline")
        sweep.append(baseline)
        var chosen = [baseline]
        for method in methods {
            if let best = try best(scenario, .estimator(method), grid: grid, skippingFailures: false) { chosen.append(best) }
        }
        return chosen
    }

    /// The variant with the best final validation accuracy over `grid` (ties: the earlier `λ`),
    /// labelled "own best (validation)". With `skippingFailures`, a `λ` whose training fails is
    /// reported in ``notes`` and left out.
    func best(_ scenario: EWCScenario, _ importance: EWCImportance, grid: [Double], skippingFailures: Bool) throws -> EWCVariantResult? {
        var best: EWCVariantResult?
        for lambda in grid {
            let result: EWCVariantResult
            do { result = try variant(scenario, importance, lambda, choice: "sweep") } catch where skippingFailures {
                notes.append("\(importance) at λ = \(String(format: "%g", lambda)) failed and is left out of its λ choice: \(error)")
                continue
            }
            sweep.append(result)
            if best.map({ result.finalValidationAccuracy.mean > $0.finalValidationAccuracy.mean }) ?? true { best = result }
        }
        best?.lambdaChoice = "own best (validation)"
        return best
    }

    /// The task-incremental ablations around the main comparison: raw `v`, `N·v` at the Fisher's
    /// `λ`, the matched scale `N·B·v` (at the Fisher's `λ` and its own), bias correction, the β₂
    /// sweep of the hook accumulator, then the joint and true Fisher for reference. Needs the
    /// Squisher in `main`.
    func ablations(main: [EWCVariantResult]) throws -> [EWCVariantResult] {
        var ablations = main.filter { [.none, .estimator(.empiricalFisher), .estimator(.squisher)].contains($0.importance) }
        if let squisherLambda = main.first(where: { $0.importance == .estimator(.squisher) })?.lambda {
            let fisherLambda = main.first { $0.importance == .estimator(.empiricalFisher) }?.lambda
            if let fisherLambda {
                let same = fisherLambda == squisherLambda ? " (= its own best here)" : ""
                ablations.append(try variant(.taskIncremental, .estimator(.squisher), fisherLambda, choice: "Fisher's best λ, paper's heuristic\(same)"))
                ablations.append(try variant(.taskIncremental, .squisherRaw, fisherLambda, choice: "Fisher's best λ"))
            }
            if fisherLambda != squisherLambda {
                ablations.append(try variant(.taskIncremental, .squisherRaw, squisherLambda, choice: "Squisher's best λ"))
            }
            // The matched scale N·B·v: at the Fisher's λ (what matching the scale is for), and with
            // its own λ. N·B·v is about B times N·v, so the top of the grid can make training diverge.
            if let fisherLambda {
                ablations.append(try variant(.taskIncremental, .squisherSumReducedFisher, fisherLambda, choice: "Fisher's best λ"))
            }
            if let matched = try best(.taskIncremental, .squisherSumReducedFisher, grid: configuration.lambdas, skippingFailures: true) {
                ablations.append(matched)
            }
            ablations.append(try variant(.taskIncremental, .squisherBiasCorrected, squisherLambda, choice: "Squisher's best λ"))
            for beta2 in configuration.ablationBeta2s {
                ablations.append(try variant(.taskIncremental, .squisherEMA(beta2: beta2), squisherLambda, choice: "Squisher's best λ"))
            }
        }
        return ablations + main.filter { $0.importance == .estimator(.jointFisher) || $0.importance == .estimator(.trueFisher) }
    }
}
