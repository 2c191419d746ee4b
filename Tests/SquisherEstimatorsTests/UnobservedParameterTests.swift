import Foundation
import Squisher
import Testing

/// No silent zeros: an optimizer or accumulator whose names do not match the model, or that saw no
/// step, is an error naming the parameters (with the prefix hint); `.zero` is the explicit,
/// reported alternative; frozen parameters are reported, not an error.
@Suite("Unobserved parameters are an error, never a silent zero")
struct UnobservedParameterTests {
    /// The set-up: the model wraps a sub-model, so it names `0.0.weight` what the
    /// sub-model (and an optimizer built over it) calls `0.weight`.
    static func wrapped(seed: UInt64) throws -> (model: Sequential, inner: Sequential, data: Dataset) {
        let (inner, data) = try SquisherTests.setup(seed: seed)
        return (Sequential([inner]), inner, data)
    }

    static func train(_ model: any Layer, _ optimizer: any Optimizer, _ data: Dataset) throws {
        try Trainer.train(model: model, optimizer: optimizer, data: data, configuration: TrainingConfiguration(epochs: 1, batchSize: 32, seed: 1))
    }

    @Test("Squisher: optimizer over a sub-model is an error naming both names and the prefix")
    func squisherSubModel() throws {
        let (model, inner, data) = try Self.wrapped(seed: 11)
        let adam = try Adam(parameters: inner.namedParameters)
        try Self.train(model, adam, data)
        for policy in UnobservedParameterPolicy.allCases {
            let error = #expect(throws: EstimatorError.self) { try Squisher(optimizer: adam, unobserved: policy).estimate(model: model, data: nil) }
            let text = error?.description ?? ""
            #expect(text.contains("'0.0.weight'") && text.contains("'0.weight'") && text.contains("prefix"), "\(policy): \(text)")
        }
    }

    @Test("Squisher: an optimizer over part of the model fails by default; .zero gives reported zeros")
    func squisherPartial() throws {
        let (model, data) = try SquisherTests.setup(seed: 12)
        let firstLayer = model.namedParameters.filter { $0.name.hasPrefix("0.") }
        let adam = try Adam(parameters: firstLayer)
        try Self.train(model, adam, data)
        let error = #expect(throws: EstimatorError.self) { try Squisher(optimizer: adam).estimate(model: model, data: nil) }
        #expect(error?.description.contains("'2.weight'") == true, "\(String(describing: error))")
        let importance = try Squisher(optimizer: adam, unobserved: .zero).estimate(model: model, data: nil)
        #expect(importance.conventions["no_state"] == "2.weight,2.bias")
        #expect(importance["2.weight"]!.scalars.allSatisfy { $0 == 0 })
        // The observed parameters are exactly Adam's state.
        #expect(importance["0.weight"]!.scalars == adam.state.buffer("exp_avg_sq", for: "0.weight")!.scalars)
    }

    @Test("Squisher: parameters the model freezes get reported zeros, no error")
    func squisherFrozen() throws {
        let (model, data) = try SquisherTests.setup(seed: 13)
        for (name, parameter) in model.namedParameters where name.hasPrefix("2.") { parameter.requiresGradient = false }
        let adam = try Adam(parameters: model.namedParameters)
        try Self.train(model, adam, data)
        let importance = try Squisher(optimizer: adam).estimate(model: model, data: nil)
        #expect(importance.conventions["frozen"] == "2.weight,2.bias")
        #expect(importance["2.bias"]!.scalars.allSatisfy { $0 == 0 })
        #expect(importance["0.weight"]!.scalars.contains { $0 > 0 })
    }

    @Test("Squisher: an optimizer that took no step is an error that says so")
    func squisherNoStep() throws {
        let (model, _) = try SquisherTests.setup(seed: 14)
        let adam = try Adam(parameters: model.namedParameters)
        let error = #expect(throws: EstimatorError.self) { try Squisher(optimizer: adam, unobserved: .zero).estimate(model: model, data: nil) }
        #expect(error?.description.contains("no step") == true, "\(String(describing: error))")
    }

    @Test("accumulator: never attached, or attached to a sub-model's optimizer, is an error")
    func accumulator() throws {
        let (model, inner, data) = try Self.wrapped(seed: 15)
        let idle = try SquaredGradientAccumulator(rule: .ema(beta2: 0.999))
        let idleError = #expect(throws: EstimatorError.self) { try idle.estimate(model: model, data: nil) }
        #expect(idleError?.description.contains("no optimizer step") == true, "\(String(describing: idleError))")

        let sgd = try SGD(parameters: inner.namedParameters, learningRate: 0.1)
        let hook = try SquaredGradientAccumulator(rule: .runningSum, unobserved: .zero)
        hook.attach(to: sgd)
        try Self.train(model, sgd, data)
        let error = #expect(throws: EstimatorError.self) { try hook.estimate(model: model, data: nil) }
        #expect(error?.description.contains("'0.0.weight'") == true && error?.description.contains("prefix") == true, "\(String(describing: error))")
        // Over the sub-model itself the names match.
        let importance = try hook.estimate(model: inner, data: nil)
        #expect(importance.names == inner.namedParameters.map(\.name) && importance.conventions["unobserved"] == nil)
    }

    @Test("the same mismatch through a TrainingRunEstimator fails the same way")
    func trainingRunEstimator() throws {
        let (model, inner, data) = try Self.wrapped(seed: 16)
        let adam = try Adam(parameters: inner.namedParameters)
        let observers = try TrainingRunObservers(run: TrainingRun(model: model, optimizer: adam, data: data, batchSize: 32),
                                                 estimators: [RecycledSquisher(), HookSquisher(rule: .ema(beta2: 0.999))])
        try Self.train(model, adam, data)
        for index in 0..<2 {
            let error = #expect(throws: EstimatorError.self) { try observers.estimate(index) }
            #expect(error?.description.contains("prefix") == true, "\(observers.names[index]): \(String(describing: error))")
        }
    }
}
