import Foundation
import Squisher
import Testing

/// The scale relation behind ``SquisherScaling``: for a batch `S` of `B` samples drawn without
/// replacement from `N`, the mean gradient `ḡ_S` satisfies
/// `E[ḡ²] = (F/N − m²)/B · (N − B)/(N − 1) + m²` (`F = Σ g_n²`, `m` the mean gradient), and one
/// epoch of `ḡ_b²` times `B²` is the joint empirical Fisher over those batches.
@Suite("Scale of the squared mean mini-batch gradient")
struct ScaleTests {
    /// Mean-reduced gradient of `model` on `data` (float32, as training computes it).
    static func meanGradient(_ model: Sequential, _ data: Dataset) throws -> [String: [Double]] {
        for (_, parameter) in model.namedParameters { parameter.gradient = Tensor(zeros: parameter.value.shape) }
        let logits = try model.forward(data.inputs, mode: .evaluation)
        let (_, gradient) = try SoftmaxCrossEntropy(reduction: .mean)(logits: logits, labels: data.labels)
        try model.accumulateParameterGradients(gradient)
        return Dictionary(uniqueKeysWithValues: model.namedParameters.map { ($0.name, $0.parameter.gradient.scalars.map(Double.init)) })
    }

    /// Every 2-subset of 8 samples (28 batches), in Double: the exact expectation against the
    /// formula with `F` from the per-sample rules (an independent code path) and `m` from the full
    /// batch. Float32 gradients: relative 1e-4 normwise.
    @Test("E[ḡ²] over all batches equals (F/N − m²)/B·(N−B)/(N−1) + m²")
    func expectationOverAllBatches() throws {
        let (model, all) = try SquisherTests.setup(seed: 21)
        let data = try all.subset(Array(0..<8))
        let n = 8.0, b = 2.0
        let fisher = try EmpiricalFisher().estimate(model: model, data: data)
        let mean = try Self.meanGradient(model, data)
        var average: [String: [Double]] = [:]
        var batches = 0.0
        for i in 0..<8 {
            for j in (i + 1)..<8 {
                let gradient = try Self.meanGradient(model, try data.subset([i, j]))
                for (name, g) in gradient {
                    var sum = average[name] ?? [Double](repeating: 0, count: g.count)
                    for k in g.indices { sum[k] += g[k] * g[k] }
                    average[name] = sum
                }
                batches += 1
            }
        }
        for (name, sum) in average {
            let f = fisher[name]!.scalars.map(Double.init), m = mean[name]!
            let expected = f.indices.map { k in (f[k] / n - m[k] * m[k]) / b * (n - b) / (n - 1) + m[k] * m[k] }
            let deviation = Deviation(sum.map { Float($0 / batches) }, expected)
            #expect(deviation.normwise < 1e-4, "\(name): \(deviation)")
        }
    }

    /// One epoch without shuffling at learning rate 0 (parameters fixed): `B² Σ_b ḡ_b²` from the
    /// hook accumulator equals the joint empirical Fisher over the same batches (float32 sums of
    /// 6 terms: relative 1e-5).
    @Test("B² · one epoch of the running sum equals the joint empirical Fisher over the batches")
    func runningSumIsJointFisher() throws {
        let (model, data) = try SquisherTests.setup(seed: 22)
        let sgd = try SGD(parameters: model.namedParameters, learningRate: 0)
        let hook = try SquaredGradientAccumulator(rule: .runningSum, scaling: .factor(16 * 16))
        hook.attach(to: sgd)
        try Trainer.train(model: model, optimizer: sgd, data: data, configuration: TrainingConfiguration(epochs: 1, batchSize: 16, seed: 0, shuffle: false))
        let scaled = try hook.estimate(model: model, data: nil)
        let joint = try JointEmpiricalFisher(batchSize: 16).estimate(model: model, data: data)
        for name in joint.names {
            let deviation = Deviation(scaled[name]!.scalars, joint[name]!.scalars.map(Double.init))
            #expect(deviation.normwise < 1e-5, "\(name): \(deviation)")
        }
    }

    @Test("sumReducedFisher scales by N·B; RecycledSquisher resolves it from the run")
    func sumReducedScaling() throws {
        #expect(SquisherScaling.sumReducedFisher(datasetSize: 1438, batchSize: 32).multiplier == 1438 * 32)
        #expect(SquisherScaling.sumReducedFisher(datasetSize: 1438, batchSize: 32).label == "N·B=1438·32")
        let (model, data) = try SquisherTests.setup(seed: 23)
        let adam = try Adam(parameters: model.namedParameters)
        let run = TrainingRun(model: model, optimizer: adam, data: data, batchSize: 16)
        let observers = try TrainingRunObservers(run: run, estimators: [RecycledSquisher(scaling: .raw), RecycledSquisher(scaling: .sumReducedFisher)])
        try Trainer.train(model: model, optimizer: adam, data: data, configuration: TrainingConfiguration(epochs: 1, batchSize: 16, seed: 2))
        let (raw, matched) = (try observers.estimate(0), try observers.estimate(1))
        for name in raw.names {
            #expect(matched[name]!.scalars == raw[name]!.scalars.map { $0 * Float(96 * 16) }, "\(name)")
        }
        #expect(matched.conventions["scaling"] == "N·B=96·16")
    }
}
