import Squisher
import Testing

/// Any model graph in the Fisher engine: parameters inside a user-written container, a
/// ``Residual`` block and a tied (shared) weight get the empirical Fisher of a per-sample loop,
/// and a container that cannot report its children is an error naming it.
///
/// Reference: one forward and backward per sample through the model's **own** backward (no
/// observer, no per-sample rule), gradients squared and summed in Double: an independent path.
/// Both sides are float32 products of the same O(1) terms summed in different orders (a few ulps,
/// ~1e-6 relative); 1e-4 normwise per tensor leaves margin while a missing or doubled term
/// (O(1) relative) fails.
@Suite("Fisher of any model graph")
struct GraphFisherTests {
    /// A user's container: `y = head(relu(left(x)) + right(x))`, two branches that meet.
    final class TwoBranch: LayerContainer {
        let typeName = "TwoBranch"
        let left: Linear, right: Linear, head: Linear
        let relu = ReLU()
        private var input: Tensor?, hidden: Tensor?, activated: Tensor?
        var localParameters: [(name: String, parameter: Parameter)] { [] }
        var children: [(name: String, layer: any Layer)] { [("left", left), ("right", right), ("act", relu), ("head", head)] }

        init(_ generator: inout SplitMix64) {
            left = Linear(inputFeatures: 6, outputFeatures: 5, generator: &generator)
            right = Linear(inputFeatures: 6, outputFeatures: 5, generator: &generator)
            head = Linear(inputFeatures: 5, outputFeatures: 4, generator: &generator)
        }

        func forward(_ x: Tensor, mode: LayerMode) throws(TensorError) -> Tensor {
            let h = try left.forward(x, mode: mode)
            let a = try relu.forward(h, mode: mode)
            let sum = try a + right.forward(x, mode: mode)
            (input, hidden, activated) = (x, h, sum)
            return try head.forward(sum, mode: mode)
        }

        func backward(_ outputGradient: Tensor, accumulateParameterGradients: Bool) throws(TensorError) -> Tensor {
            try unobservedBackward(outputGradient, accumulateParameterGradients: accumulateParameterGradients, computeInputGradient: true)
        }

        func backward(
            _ outputGradient: Tensor, accumulateParameterGradients: Bool, observer: (any BackwardObserver)?,
            computeInputGradient: Bool, pathPrefix: String
        ) throws -> Tensor {
            let (x, h, s) = (input!, hidden!, activated!)
            func child(_ layer: any Layer, _ name: String, _ g: Tensor, _ layerInput: Tensor) throws -> Tensor {
                try layer.observedBackward(g, input: layerInput, path: pathPrefix + name, accumulateParameterGradients: accumulateParameterGradients, observer: observer)
            }
            let ds = try child(head, "head", outputGradient, s)
            let dxRight = try child(right, "right", ds, x)
            let dh = try child(relu, "act", ds, h)
            return try dxRight + child(left, "left", dh, x)
        }
    }

    /// A container written without the observed backward (allowed, but an estimator must refuse it).
    final class Opaque: LayerContainer {
        let typeName = "Opaque"
        let inner: Linear
        var localParameters: [(name: String, parameter: Parameter)] { [] }
        var children: [(name: String, layer: any Layer)] { [("inner", inner)] }
        init(_ generator: inout SplitMix64) { inner = Linear(inputFeatures: 6, outputFeatures: 4, generator: &generator) }
        func forward(_ x: Tensor, mode: LayerMode) throws(TensorError) -> Tensor { try inner.forward(x, mode: mode) }
        func backward(_ g: Tensor, accumulateParameterGradients: Bool) throws(TensorError) -> Tensor {
            try inner.backward(g, accumulateParameterGradients: accumulateParameterGradients)
        }
    }

    /// `Σ_n g_n²` in Double by running each sample alone through the model's own backward.
    static func perSampleLoop(model: any Layer, data: Dataset) throws -> [String: [Double]] {
        var result: [String: [Double]] = [:]
        let loss = SoftmaxCrossEntropy(reduction: .sum)
        for n in 0..<data.count {
            let sample = try data.subset([n])
            model.zeroGradients()
            let logits = try model.forward(sample.inputs, mode: .evaluation)
            let (_, gradient) = try loss(logits: logits, labels: sample.labels)
            _ = try model.backward(gradient, accumulateParameterGradients: true)
            for (name, parameter) in model.namedParameters {
                let squares = parameter.gradient.scalars.map { Double($0) * Double($0) }
                result[name] = zip(result[name] ?? [Double](repeating: 0, count: squares.count), squares).map { $0 + $1 }
            }
        }
        return result
    }

    static func expectMatchesLoop(_ model: any Layer, _ data: Dataset, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let fisher = try EmpiricalFisher(batchSize: 5).estimate(model: model, data: data)
        let reference = try perSampleLoop(model: model, data: data)
        #expect(fisher.names == model.namedParameters.map(\.name), sourceLocation: sourceLocation)
        for (name, expected) in reference {
            let ours = try #require(fisher[name], sourceLocation: sourceLocation)
            #expect(expected.contains { $0 > 0 }, "\(name): reference all zero, comparison vacuous", sourceLocation: sourceLocation)
            #expect(ours.scalars.contains { $0 > 0 }, "\(name): Fisher is all zero", sourceLocation: sourceLocation)
            let deviation = Deviation(ours.scalars, expected)
            #expect(deviation.normwise < 1e-4, "\(name): \(deviation)", sourceLocation: sourceLocation)
        }
    }

    static func data(_ generator: inout SplitMix64, features: Int = 6, count: Int = 13, classes: Int = 4) throws -> Dataset {
        try Dataset(inputs: Tensor.normal(shape: [count, features], using: &generator), labels: (0..<count).map { ($0 * 7) % classes }, classCount: classes)
    }

    @Test("a user-written container inside a Sequential: non-zero Fisher equal to the per-sample loop")
    func customContainer() throws {
        var generator = SplitMix64(seed: 301)
        let model = Sequential([TwoBranch(&generator), Tanh(), Linear(inputFeatures: 4, outputFeatures: 4, generator: &generator)])
        try Self.expectMatchesLoop(model, Self.data(&generator))
        // The container itself as the whole model (paths without a prefix).
        try Self.expectMatchesLoop(TwoBranch(&generator), Self.data(&generator))
    }

    @Test("Residual blocks, nested: y = x + body(x) observed through the skip")
    func residual() throws {
        var generator = SplitMix64(seed: 302)
        let block = try Residual(Sequential([Linear(inputFeatures: 6, outputFeatures: 6, generator: &generator), Tanh(), Linear(inputFeatures: 6, outputFeatures: 6, generator: &generator)]))
        let model = Sequential([
            Linear(inputFeatures: 6, outputFeatures: 6, generator: &generator), block,
            try Residual(try Residual(Linear(inputFeatures: 6, outputFeatures: 6, generator: &generator), bodyName: "inner")),
            Linear(inputFeatures: 6, outputFeatures: 4, generator: &generator),
        ])
        #expect(model.namedParameters.map(\.name).contains("1.body.2.weight"))
        #expect(model.namedParameters.map(\.name).contains("2.body.inner.bias"))
        try Self.expectMatchesLoop(model, Self.data(&generator))
    }

    @Test("a weight shared by two layers: per-sample gradients of both uses summed, then squared")
    func sharedWeight() throws {
        var generator = SplitMix64(seed: 303)
        let first = Linear(inputFeatures: 6, outputFeatures: 6, generator: &generator)
        let tied = try Linear(weight: first.weight, bias: nil)
        let model = Sequential([first, Tanh(), tied, Tanh(), Linear(inputFeatures: 6, outputFeatures: 4, generator: &generator)])
        #expect(model.namedParameters.map(\.name) == ["0.weight", "0.bias", "4.weight", "4.bias"])
        try Self.expectMatchesLoop(model, Self.data(&generator))
    }

    /// A container whose observed backward forgets a child (a bug in user code).
    final class Forgetful: LayerContainer {
        let typeName = "Forgetful"
        let used: Linear, forgotten: Linear
        private var input: Tensor?
        var localParameters: [(name: String, parameter: Parameter)] { [] }
        var children: [(name: String, layer: any Layer)] { [("used", used), ("forgotten", forgotten)] }
        init(_ generator: inout SplitMix64) {
            used = Linear(inputFeatures: 6, outputFeatures: 4, generator: &generator)
            forgotten = Linear(inputFeatures: 6, outputFeatures: 4, generator: &generator)
        }
        func forward(_ x: Tensor, mode: LayerMode) throws(TensorError) -> Tensor {
            input = x
            return try used.forward(x, mode: mode) + forgotten.forward(x, mode: mode)
        }
        func backward(_ g: Tensor, accumulateParameterGradients: Bool) throws(TensorError) -> Tensor {
            try unobservedBackward(g, accumulateParameterGradients: accumulateParameterGradients, computeInputGradient: true)
        }
        func backward(
            _ g: Tensor, accumulateParameterGradients: Bool, observer: (any BackwardObserver)?, computeInputGradient: Bool, pathPrefix: String
        ) throws -> Tensor {
            try used.observedBackward(g, input: input!, path: pathPrefix + "used", accumulateParameterGradients: accumulateParameterGradients, observer: observer)
        }
    }

    @Test("a trainable parameter that no observed layer holds is an error naming it")
    func unreachedParameter() throws {
        var generator = SplitMix64(seed: 305)
        let model = Forgetful(&generator)
        #expect {
            _ = try EmpiricalFisher().estimate(model: model, data: try Self.data(&generator))
        } throws: { error in
            "\(error)".contains("parameter 'forgotten.weight' requires a gradient but no layer holding it was reached")
        }
        // Frozen, it is an explicit choice: zeros, no error.
        model.forgotten.weight.requiresGradient = false
        model.forgotten.bias!.requiresGradient = false
        let fisher = try EmpiricalFisher().estimate(model: model, data: try Self.data(&generator))
        #expect(fisher["forgotten.weight"]!.scalars.allSatisfy { $0 == 0 } && fisher["used.weight"]!.scalars.contains { $0 > 0 })
    }

    @Test("a container without the observed backward is an error naming it, not a zero Fisher")
    func opaqueContainer() throws {
        var generator = SplitMix64(seed: 304)
        let model = Sequential([Linear(inputFeatures: 6, outputFeatures: 6, generator: &generator), Opaque(&generator)])
        let data = try Self.data(&generator)
        #expect {
            _ = try EmpiricalFisher().estimate(model: model, data: data)
        } throws: { error in
            "\(error)".contains("container '1' (Opaque)")
        }
        // Without an observer it still trains.
        _ = try model.forward(data.inputs, mode: .training)
        _ = try model.backward(Tensor(repeating: 1, shape: [13, 4]), accumulateParameterGradients: true)
        #expect(model.namedParameters[2].parameter.gradient.scalars.contains { $0 != 0 })
    }
}
