import Foundation
import Squisher
import Testing

/// Must show 3: the Squisher read from Adam equals the recurrence v_t = β₂ v_{t−1} + (1−β₂) ḡ_t²
/// replayed by hand, and the hook-accumulated EMA with Adam's β₂ equals Adam's state bit for bit.
@Suite("Squisher from optimizer state and step hooks")
struct SquisherTests {
    /// A small MLP and random data, all seeded.
    static func setup(seed: UInt64) throws -> (Sequential, Dataset) {
        var generator = SplitMix64(seed: seed)
        let model = Sequential([
            Linear(inputFeatures: 12, outputFeatures: 16, generator: &generator), ReLU(),
            Linear(inputFeatures: 16, outputFeatures: 4, generator: &generator),
        ])
        let inputs = Tensor.normal(shape: [96, 12], using: &generator)
        let labels = (0..<96).map { _ in Int(generator.next() % 4) }
        return (model, try Dataset(inputs: inputs, labels: labels, classCount: 4))
    }

    @Test("Adam's exp_avg_sq equals the hand-replayed recurrence; bias correction and N scaling")
    func replay() throws {
        let (model, data) = try Self.setup(seed: 1)
        let adam = try Adam(parameters: model.namedParameters, learningRate: 1e-2, betas: (0.9, 0.99))
        var recorded: [NamedTensors] = []
        adam.registerStepPostHook { recorded.append($0.gradients) }
        try Trainer.train(model: model, optimizer: adam, data: data, configuration: TrainingConfiguration(epochs: 3, batchSize: 16, seed: 2))
        #expect(recorded.count == 18)
        let raw = try Squisher(optimizer: adam).estimate(model: model, data: nil)
        let corrected = try Squisher(optimizer: adam, biasCorrection: true, scaling: .datasetSize(96)).estimate(model: model, data: nil)
        for (name, _) in model.namedParameters {
            // Replay in Double: the only difference to Adam's float32 state is rounding, ~18 steps
            // of relative 2^-24 each, so 1e-5 relative to the tensor's largest value.
            var v = [Double](repeating: 0, count: recorded[0][name]!.count)
            for gradients in recorded {
                for (i, g) in gradients[name]!.scalars.enumerated() { v[i] = 0.99 * v[i] + 0.01 * Double(g) * Double(g) }
            }
            let deviation = Deviation(try #require(raw[name]).scalars, v)
            #expect(deviation.normwise < 1e-5, "\(name): \(deviation)")
            let correction = 96 / (1 - pow(0.99, Double(recorded.count)))
            let scaled = Deviation(try #require(corrected[name]).scalars, v.map { $0 * correction })
            #expect(scaled.normwise < 1e-5, "\(name) corrected: \(scaled)")
        }
        #expect(raw.cost == .free)
        #expect(corrected.conventions["scaling"] == "N=96")
    }

    @Test("hook-accumulated EMA with Adam's beta2 equals exp_avg_sq bit for bit", arguments: [Float(0.999), 0.95])
    func hookEqualsState(beta2: Float) throws {
        let (model, data) = try Self.setup(seed: 3)
        let adam = try Adam(parameters: model.namedParameters, betas: (0.9, beta2))
        let accumulator = try SquaredGradientAccumulator(rule: .ema(beta2: beta2))
        accumulator.attach(to: adam)
        try Trainer.train(model: model, optimizer: adam, data: data, configuration: TrainingConfiguration(epochs: 2, batchSize: 32, seed: 4))
        let hooked = try accumulator.estimate(model: model, data: nil)
        let state = try Squisher(optimizer: adam).estimate(model: model, data: nil)
        for name in hooked.names {
            #expect(hooked[name]!.scalars == state[name]!.scalars, "\(name) differs")
        }
        #expect(accumulator.accumulatedSteps == 6)
    }

    @Test("detaching stops accumulation; startStep skips early steps")
    func detachAndStart() throws {
        let (model, data) = try Self.setup(seed: 5)
        let sgd = try Adam(parameters: model.namedParameters)
        let late = try SquaredGradientAccumulator(rule: .runningSum, startStep: 4)
        let early = try SquaredGradientAccumulator(rule: .runningSum)
        late.attach(to: sgd)
        early.attach(to: sgd)
        try Trainer.train(model: model, optimizer: sgd, data: data, configuration: TrainingConfiguration(epochs: 1, batchSize: 16, seed: 6))
        early.detach()
        try Trainer.train(model: model, optimizer: sgd, data: data, configuration: TrainingConfiguration(epochs: 1, batchSize: 16, seed: 7))
        #expect(early.accumulatedSteps == 6)
        #expect(late.accumulatedSteps == 9)  // steps 4...12
    }

    @Test("an optimizer without an accumulator is a clear error")
    func noAccumulator() throws {
        let state = OptimizerState(kind: "SGD", hyperparameters: [:])
        #expect(throws: EstimatorError.self) { try Squisher(source: .state(state)).estimate(parameters: [("w", [2])]) }
        #expect(throws: EstimatorError.self) { try SquaredGradientAccumulator(rule: .ema(beta2: 1)) }
    }
}

@Suite("Squisher from RMSprop, Adagrad and SGD")
struct OtherOptimizerSquisherTests {
    /// RMSprop's `square_avg` is the EMA with decay `alpha`; the hook accumulator with
    /// `beta2 = alpha` replays it, and Adagrad's `sum` is the running sum. Both replay in float32
    /// with possibly different fused multiply-adds: 1e-5 normwise.
    @Test("RMSprop square_avg and Adagrad sum match the hook accumulators; SGD needs the hook")
    func optimizers() throws {
        for kind in ["RMSprop", "Adagrad", "SGD"] {
            let (model, data) = try SquisherTests.setup(seed: 9)
            let optimizer: any Optimizer = switch kind {
            case "RMSprop": try RMSprop(parameters: model.namedParameters, learningRate: 1e-3, alpha: 0.95)
            case "Adagrad": try Adagrad(parameters: model.namedParameters, learningRate: 1e-2)
            default: try SGD(parameters: model.namedParameters, learningRate: 1e-2)
            }
            let hook = try SquaredGradientAccumulator(rule: kind == "RMSprop" ? .ema(beta2: 0.95) : .runningSum)
            hook.attach(to: optimizer)
            try Trainer.train(model: model, optimizer: optimizer, data: data, configuration: TrainingConfiguration(epochs: 2, batchSize: 16, seed: 1))
            let hooked = try hook.estimate(model: model, data: nil)
            guard kind != "SGD" else {
                #expect(throws: EstimatorError.self) { try Squisher(optimizer: optimizer).estimate(model: model, data: nil) }
                #expect(hooked.flattened.contains { $0 > 0 })
                continue
            }
            let recycled = try Squisher(optimizer: optimizer).estimate(model: model, data: nil)
            #expect(recycled.conventions["source"] == (kind == "RMSprop" ? "RMSprop.square_avg" : "Adagrad.sum"))
            for name in recycled.names {
                let deviation = Deviation(recycled[name]!.scalars, hooked[name]!.scalars.map(Double.init))
                #expect(deviation.normwise < 1e-5, "\(kind) \(name): \(deviation)")
            }
        }
    }
}
