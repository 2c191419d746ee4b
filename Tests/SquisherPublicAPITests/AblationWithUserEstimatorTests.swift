import Foundation
import Squisher
import Testing

/// A Squisher written by a user with the public API only: an EMA of squared mini-batch gradients
/// (Adam's β₂) attached to the run's optimizer before training, scaled by `N`.
struct UserSquisher: TrainingRunEstimator {
    let name = "user-squisher"
    let requirement = EstimatorRequirement.trainingRun

    func prepare(for run: TrainingRun) throws -> SquaredGradientAccumulator {
        let accumulator = try SquaredGradientAccumulator(rule: .ema(beta2: 0.999), scaling: .datasetSize(run.datasetSize))
        accumulator.attach(to: run.optimizer)
        return accumulator
    }

    func estimate(_ run: TrainingRun, observation accumulator: SquaredGradientAccumulator) throws -> Importance {
        accumulator.detach()
        return try accumulator.estimate(model: run.model, data: nil)
    }
}

/// A data-based estimator written as a plain `SensitivityEstimator`: `|θ|·sqrt(Σ_n g_n²)`.
struct UserSaliency: SensitivityEstimator, Sendable {
    let name = "user-saliency"
    let requirement = EstimatorRequirement.data
    func estimate(model: any Layer, data: Dataset?) throws -> Importance {
        let fisher = try EmpiricalFisher().estimate(model: model, data: data)
        var values = NamedTensors()
        for (name, parameter) in model.namedParameters { values[name] = try parameter.value.zipWith(fisher[name]!) { abs($0) * $1.squareRoot() } }
        return try Importance(values: values, estimator: name, cost: fisher.cost)
    }
}
/// One empty extension makes it usable in the ablation.
extension UserSaliency: TrainingRunEstimator {}

/// Estimators are `Sendable` values: shared constants compile in Swift 6.
enum Shared {
    static let fisher = EmpiricalFisher()
    static let trueFisher = TrueFisherExact()
    static let monteCarlo = TrueFisherMonteCarlo(samples: 2)
    static let joint = JointEmpiricalFisher(batchSize: 32)
    static let baselines: [any TrainingRunEstimator] = [UniformImportance(), MagnitudeImportance(), RandomImportance(seed: 1)]
    static let recycled = RecycledSquisher(scaling: .sumReducedFisher)
    static let hook = HookSquisher(rule: .ema(beta2: 0.99))
    static let ablation = AblationEstimator.builtIns + [AblationEstimator(name: "user-squisher", displayName: "User Squisher", estimator: UserSquisher())]
}

/// Must show: `AblationStudy` with user-defined estimators next to the built-ins, through the
/// public API only (`import Squisher`, no `@testable`).
@Suite("AblationStudy with a user's estimators (public API only)")
struct AblationWithUserEstimatorTests {
    /// The user's EMA with Adam's β₂ equals Adam's `exp_avg_sq` bit for bit (the package's own
    /// Squisher tests prove that), so every cell of its rows must equal the built-in Squisher's:
    /// a difference would mean the drivers treat a user's estimator differently.
    @Test("a user's Squisher gets the same rows as the built-in one in every table")
    func userSquisherMatchesBuiltIn() throws {
        let user = Shared.ablation.last!
        let saliency = AblationEstimator(name: "user-saliency", displayName: "User saliency", estimator: UserSaliency())
        let study = AblationStudy(applications: [.merging], estimators: [.empiricalFisher, .squisher, user, saliency, .baseline], seeds: [0], size: .quick)
        let report = try study.run()
        func table(_ identifier: String) throws -> ResultTable { try #require(report.tables.first { $0.identifier == identifier }, "no table \(identifier)") }
        func row(_ table: ResultTable, _ label: String) throws -> [String] { try #require(table.rows.first { $0[0] == label }, "\(table.identifier) has no row \(label)") }
        for identifier in ["merging", "ubgm"] {
            let t = try table(identifier)
            #expect(Array(try row(t, "User Squisher").dropFirst()) == Array(try row(t, "Squisher (N·v)").dropFirst()), "\(identifier)")
            _ = try row(t, "User saliency")
        }
        let agreement = try table("agreement")
        let builtIn = agreement.rows.filter { $0[0] == "fisher" && $0[1] == "squisher" }.map { Array($0.dropFirst(2)) }
        let users = agreement.rows.filter { $0[0] == "fisher" && $0[1] == "user-squisher" }.map { Array($0.dropFirst(2)) }
        #expect(!users.isEmpty && users == builtIn)
        let cost = try table("cost")
        #expect(cost.rows.contains { $0[0] == "user-saliency" && $0[2] != "0" }, "the data-based estimator's passes are counted")
        #expect(cost.rows.contains { $0[0] == "user-squisher" && $0[2] == "0" && $0[3] == "0" })
        #expect(report.tables.contains { $0.identifier == "scale" })
        #expect(report.settings.contains("user-squisher"))
    }

    @Test("two estimators with one name are rejected")
    func duplicateNames() {
        let clash = AblationEstimator(name: "squisher", estimator: UserSquisher())
        #expect(throws: EstimatorError.self) { try AblationStudy(applications: [], estimators: [.squisher, clash], seeds: [0], size: .quick).run() }
    }

    @Test("shared estimator constants run from concurrent tasks")
    func sendableConstants() async throws {
        let (train, _) = try DigitsExperiment.split(seed: 0)
        let data = try train.subset(Array(0..<64))
        let sums = try await withThrowingTaskGroup(of: Double.self) { group in
            for _ in 0..<2 {
                group.addTask {
                    let model = DigitsExperiment.mlp(hidden: [8], seed: 0)
                    return try Shared.fisher.estimate(model: model, data: data).flattened.reduce(0.0) { $0 + Double($1) }
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(sums.count == 2 && sums[0] == sums[1] && sums[0] > 0)
    }
}
