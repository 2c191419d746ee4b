import Foundation
import Squisher
import Testing

/// Must show 1 of the estimators issue: empirical, true-exact, joint empirical (and MC with the
/// stored sampled labels) match BackPACK / PyTorch on the oracle MLP (64-32-10) over its 128-sample
/// batch. Tolerance: 1e-4 normwise per tensor (max|ours − ref| / max|ref|). We compute in float32
/// from float32 weights; the oracle is float64, and BackPACK's own float32 run differs from it by
/// 1.2e-7 (empirical) to 5.5e-7 (joint) normwise (manifest "observed_differences"), so 1e-4 leaves
/// two orders of margin for our different summation order while still catching any real error
/// (a missing factor or a wrong rule changes values by O(1)).
@Suite("Fisher diagonals vs BackPACK oracle")
struct OracleFisherTests {
    static let quantities: [(estimator: String, key: String)] = [
        ("empirical", "empirical_fisher"), ("true-exact", "true_fisher"), ("true-exact", "ggn_diag_exact"),
        ("joint", "joint_empirical_fisher"), ("mc-stored-labels", "mc_fisher_1"),
    ]

    static func mlpModel() throws -> Sequential {
        var generator = SplitMix64(seed: 0)
        let model = try Sequential(named: [
            ("fc1", Linear(inputFeatures: 64, outputFeatures: 32, generator: &generator)),
            ("relu", ReLU()),
            ("fc2", Linear(inputFeatures: 32, outputFeatures: 10, generator: &generator)),
        ])
        try model.load(try resource("mlp_weights").allTensors())
        return model
    }

    static func batch(_ prefix: String) throws -> (data: Dataset, mcLabels: [Int]) {
        let file = try resource("\(prefix)_batch")
        let data = try Dataset(inputs: file.tensor("inputs"), labels: file.integers("labels"), classCount: 10)
        return (data, try file.integers("mc_labels"))
    }

    static func compute(_ estimator: String, model: Sequential, data: Dataset, mcLabels: [Int]) throws -> Importance {
        switch estimator {
        case "empirical": try EmpiricalFisher(batchSize: 50).estimate(model: model, data: data)
        case "true-exact": try TrueFisherExact(batchSize: 50).estimate(model: model, data: data)
        case "joint": try JointEmpiricalFisher().estimate(model: model, data: data)
        default: try TrueFisherMonteCarlo.withLabels(mcLabels, model: model, data: data, batchSize: 50)
        }
    }

    /// Compares one estimator on one oracle model with BackPACK's values for `key`.
    static func check(_ model: Sequential, prefix: String, estimator: String, key: String) throws {
        let (data, mcLabels) = try batch(prefix)
        let ours = try compute(estimator, model: model, data: data, mcLabels: mcLabels)
        let oracle = try resource("\(prefix)_fisher_diag")
        for (name, _) in model.namedParameters {
            let deviation = Deviation(try #require(ours[name]).scalars, try oracle.doubles("\(key)/\(name)"))
            #expect(deviation.normwise < 1e-5, "\(prefix) \(key)/\(name): \(deviation)")
        }
    }

    @Test("MLP digits", arguments: quantities)
    func mlp(estimator: String, key: String) throws {
        try Self.check(Self.mlpModel(), prefix: "mlp", estimator: estimator, key: key)
    }

    static func cnnModel() throws -> Sequential {
        var generator = SplitMix64(seed: 0)
        let model = try Sequential(named: [
            ("conv", Conv2d(inputChannels: 1, outputChannels: 4, kernelSize: 3, generator: &generator)),
            ("relu", ReLU()),
            ("pool", MaxPool2d(kernelSize: 2)),
            ("flatten", Flatten()),
            ("fc", Linear(inputFeatures: 36, outputFeatures: 10, generator: &generator)),
        ])
        try model.load(try resource("cnn_weights").allTensors())
        return model
    }

    @Test("CNN digits (Conv2d rule via unfolded inputs)", arguments: quantities)
    func cnn(estimator: String, key: String) throws {
        try Self.check(Self.cnnModel(), prefix: "cnn", estimator: estimator, key: key)
    }

    @Test("model output matches the oracle's logits")
    func logits() throws {
        let model = try Self.mlpModel()
        let file = try resource("mlp_batch")
        let logits = try model(file.tensor("inputs"))
        let deviation = Deviation(logits.scalars, try file.doubles("logits"))
        // float32 forward vs float64: 1e-5 normwise (a few ulp of the largest logit).
        #expect(deviation.normwise < 1e-5, "\(deviation)")
    }
}
