import Foundation
import SquisherIO
import SquisherLayers
import SquisherOptimizers
import SquisherTensor
import Testing

/// Published optimizer state: saving to and restoring from safetensors, resuming bit for bit,
/// errors that name the parameter and buffer, and hyperparameter validation.
@Suite("Optimizer state: save, restore, resume")
struct OptimizerStateTests {
    struct Kind: Sendable, CustomTestStringConvertible {
        var name: String
        var buffers: [String]
        var make: @Sendable ([(name: String, parameter: Parameter)]) throws -> any Optimizer
        var testDescription: String { name }
    }

    static let kinds: [Kind] = [
        Kind(name: "Adam+AMSGrad", buffers: ["exp_avg", "exp_avg_sq", "max_exp_avg_sq"]) {
            try Adam(parameters: $0, learningRate: 0.01, weightDecay: 0.01, amsgrad: true)
        },
        Kind(name: "AdamW", buffers: ["exp_avg", "exp_avg_sq"]) { try Adam.adamW(parameters: $0, learningRate: 0.01) },
        Kind(name: "SGD", buffers: ["momentum_buffer"]) {
            try SGD(parameters: $0, learningRate: 0.05, momentum: 0.9, nesterov: true)
        },
        Kind(name: "RMSprop", buffers: ["square_avg", "momentum_buffer", "grad_avg"]) {
            try RMSprop(parameters: $0, learningRate: 0.01, momentum: 0.5, centered: true)
        },
        Kind(name: "Adagrad", buffers: ["sum"]) { try Adagrad(parameters: $0, learningRate: 0.1, learningRateDecay: 0.01) },
    ]

    static func makeParameters(seed: UInt64) -> [(name: String, parameter: Parameter)] {
        var generator = SplitMix64(seed: seed)
        return SquisherOptimizersTests.makeParameters([
            ("fc1.weight", Tensor.normal(shape: [4, 3], using: &generator)),
            ("fc1.bias", Tensor.normal(shape: [4], using: &generator)),
            ("fc2.weight", Tensor.normal(shape: [2, 4], using: &generator)),
        ])
    }

    /// Step `t`'s gradient depends on the parameters (a quadratic pull to 0) plus seeded noise, so
    /// that a resumed run that restored anything wrongly diverges.
    static func setGradients(step t: Int, _ parameters: [(name: String, parameter: Parameter)]) {
        var generator = SplitMix64(seed: UInt64(1000 + t))
        for (_, parameter) in parameters {
            let noise = Tensor.normal(shape: parameter.value.shape, standardDeviation: 0.3, using: &generator)
            parameter.gradient = (try? parameter.value.zipWith(noise, "gradient") { 0.7 * $0 + $1 }) ?? noise
        }
    }

    static func temporaryURL(_ name: String) -> URL {
        FileManager.default.temporaryDirectory.appendingPathComponent("squisher-optim-\(name)-\(UUID().uuidString).safetensors")
    }

    @Test(arguments: kinds)
    func flattenedStateRoundTripsThroughSafetensors(_ kind: Kind) throws {
        let parameters = Self.makeParameters(seed: 11)
        let optimizer = try kind.make(parameters)
        for t in 1...3 {
            Self.setGradients(step: t, parameters)
            try optimizer.step(batchSize: 8)
        }
        let state = optimizer.state
        #expect(Set(state.buffers.keys) == Set(kind.buffers))
        let url = Self.temporaryURL(kind.name)
        defer { try? FileManager.default.removeItem(at: url) }
        try SafeTensorsWriter.write(state.flattened(), metadata: state.metadata, to: url)
        let file = try SafeTensorsFile(contentsOf: url)
        let restored = try OptimizerState(flattened: file.allTensors(), metadata: file.metadata)
        #expect(restored.kind == state.kind)
        #expect(restored.hyperparameters == state.hyperparameters)
        #expect(restored.steps == state.steps)
        #expect(restored.steps.values.allSatisfy { $0 == 3 })
        #expect(Set(restored.buffers.keys) == Set(state.buffers.keys))
        for (bufferName, tensors) in state.buffers {
            for (parameter, tensor) in tensors {
                // Float32 safetensors store the buffers exactly: bit-identical.
                #expect(restored.buffer(bufferName, for: parameter) == tensor, "\(bufferName)/\(parameter)")
            }
        }
    }

    /// Training k steps, saving parameters and optimizer state, restoring both into fresh objects
    /// and continuing equals uninterrupted training bit for bit (the update is deterministic and
    /// the file stores float32 exactly).
    @Test(arguments: kinds)
    func resumingEqualsUninterruptedTrainingBitForBit(_ kind: Kind) throws {
        let total = 7, k = 3
        let uninterrupted = Self.makeParameters(seed: 12)
        let reference = try kind.make(uninterrupted)
        for t in 1...total {
            Self.setGradients(step: t, uninterrupted)
            try reference.step(batchSize: 8)
        }

        let first = Self.makeParameters(seed: 12)
        let firstOptimizer = try kind.make(first)
        for t in 1...k {
            Self.setGradients(step: t, first)
            try firstOptimizer.step(batchSize: 8)
        }
        let stateURL = Self.temporaryURL("state-\(kind.name)"), modelURL = Self.temporaryURL("model-\(kind.name)")
        defer {
            try? FileManager.default.removeItem(at: stateURL)
            try? FileManager.default.removeItem(at: modelURL)
        }
        let saved = firstOptimizer.state
        try SafeTensorsWriter.write(saved.flattened(), metadata: saved.metadata, to: stateURL)
        try SafeTensorsWriter.write(firstOptimizer.currentParameters(), to: modelURL)

        let resumed = Self.makeParameters(seed: 99)  // different values, overwritten by the file
        let modelFile = try SafeTensorsFile(contentsOf: modelURL)
        for (name, parameter) in resumed { try parameter.load(modelFile.tensor(name), name: name) }
        let resumedOptimizer = try kind.make(resumed)
        let stateFile = try SafeTensorsFile(contentsOf: stateURL)
        try resumedOptimizer.loadState(OptimizerState(flattened: stateFile.allTensors(), metadata: stateFile.metadata))
        #expect(resumedOptimizer.stepCount == k)
        for t in (k + 1)...total {
            Self.setGradients(step: t, resumed)
            try resumedOptimizer.step(batchSize: 8)
        }
        #expect(resumedOptimizer.stepCount == total)
        for ((name, a), (_, b)) in zip(uninterrupted, resumed) {
            #expect(a.value.scalars.map(\.bitPattern) == b.value.scalars.map(\.bitPattern), "\(kind.name) \(name)")
        }
        #expect(resumedOptimizer.state == reference.state)
    }

    @Test func loadStateErrorsNameTheParameterAndBuffer() throws {
        let parameters = Self.makeParameters(seed: 13)
        let adam = try Adam(parameters: parameters)
        Self.setGradients(step: 1, parameters)
        try adam.step(batchSize: 1)
        let good = adam.state

        let sgd = try SGD(parameters: parameters)
        #expect(invalidArgumentName { try sgd.loadState(good) } == "optimizer state")  // an Adam state

        var missing = good
        missing.buffers["exp_avg_sq"]?["fc1.bias"] = nil
        let missingError = errorText { try adam.loadState(missing) }
        #expect(missingError.contains("fc1.bias") && missingError.contains("exp_avg_sq"), "\(missingError)")

        var misshaped = good
        misshaped.buffers["exp_avg"]?["fc2.weight"] = Tensor(zeros: [4, 2])
        let shapeError = errorText { try adam.loadState(misshaped) }
        #expect(shapeError.contains("fc2.weight") && shapeError.contains("exp_avg"), "\(shapeError)")

        var unknown = good
        unknown.steps["fc3.weight"] = 1
        #expect(errorText { try adam.loadState(unknown) }.contains("fc3.weight"))

        var nonFinite = good
        nonFinite.buffers["exp_avg"]?["fc1.bias"] = Tensor(repeating: .nan, shape: [4])
        #expect(errorText { try adam.loadState(nonFinite) }.contains("fc1.bias"))

        // A failed load leaves the state as it was.
        #expect(adam.state == good)
        #expect(throws: TensorError.self) { try OptimizerState(flattened: good.flattened(), metadata: [:]) }
        #expect(throws: TensorError.self) {
            try OptimizerState(flattened: good.flattened(), metadata: ["optimizer": "Adam", "lr": "fast"])
        }
    }

    static let invalidConstructions: [(String, @Sendable () throws -> Any)] = [
        ("learningRate", { try Adam(parameters: [], learningRate: -1) as Any }),
        ("betas", { try Adam(parameters: [], betas: (0.9, 1)) as Any }),
        ("eps", { try Adam(parameters: [], eps: -1e-8) as Any }),
        ("weightDecay", { try Adam.adamW(parameters: [], weightDecay: .nan) as Any }),
        ("learningRate", { try SGD(parameters: [], learningRate: .infinity) as Any }),
        ("momentum", { try SGD(parameters: [], momentum: -0.1) as Any }),
        ("nesterov", { try SGD(parameters: [], momentum: 0, nesterov: true) as Any }),
        ("nesterov", { try SGD(parameters: [], momentum: 0.9, dampening: 0.1, nesterov: true) as Any }),
        ("weightDecay", { try SGD(parameters: [], weightDecay: -1) as Any }),
        ("alpha", { try RMSprop(parameters: [], alpha: 1.5) as Any }),
        ("momentum", { try RMSprop(parameters: [], momentum: -1) as Any }),
        ("eps", { try RMSprop(parameters: [], eps: -1) as Any }),
        ("learningRateDecay", { try Adagrad(parameters: [], learningRateDecay: -0.1) as Any }),
        ("initialAccumulatorValue", { try Adagrad(parameters: [], initialAccumulatorValue: -1) as Any }),
        ("eps", { try Adagrad(parameters: [], eps: -1) as Any }),
    ]

    /// Each invalid hyperparameter throws `invalidArgument` naming the argument.
    @Test(arguments: invalidConstructions)
    func invalidHyperparametersAreNamed(_ argument: String, _ make: @Sendable () throws -> Any) {
        #expect(invalidArgumentName { _ = try make() } == argument)
    }

    @Test func duplicateParameterNamesAreRejected() {
        let parameter = Parameter(Tensor(zeros: [2]))
        #expect(invalidArgumentName { _ = try SGD(parameters: [("w", parameter), ("w", parameter)]) } == "parameters")
    }

    /// Adagrad publishes `sum` = initial_accumulator_value with step 0 for every parameter from
    /// construction on, as PyTorch initializes its state in `__init__`.
    @Test func adagradStateExistsBeforeTheFirstStep() throws {
        let parameters = Self.makeParameters(seed: 14)
        let adagrad = try Adagrad(parameters: parameters, initialAccumulatorValue: 0.25)
        let state = adagrad.state
        for (name, parameter) in parameters {
            #expect(state.steps[name] == 0)
            #expect(state.buffer("sum", for: name) == Tensor(repeating: 0.25, shape: parameter.value.shape))
        }
    }

    /// Hyperparameters are published with the decimal values the user wrote (PyTorch's Python floats).
    @Test func hyperparametersArePublishedAsWritten() throws {
        let adam = try Adam(parameters: [], learningRate: 3e-4, betas: (0.9, 0.999))
        let state = adam.state
        #expect(state.hyperparameters["lr"] == 3e-4)
        #expect(state.hyperparameters["beta1"] == 0.9)
        #expect(state.hyperparameters["beta2"] == 0.999)
        #expect(state.metadata["optimizer"] == "Adam")
        #expect(state.metadata["lr"] == "0.0003")
    }

    func errorText(_ body: () throws -> Void) -> String {
        do {
            try body()
            return "no error"
        } catch {
            return "\(error)"
        }
    }
}
