import SquisherLayers
import SquisherTensor
import Testing

@Suite("Sequential models and error messages")
struct SequentialTests {
    /// conv(2->3, k3, s1, p1) -> ReLU -> MaxPool(2) -> Flatten -> Linear(3*2*3 -> 4) on [2, 2, 4, 6].
    static func makeModel(_ generator: inout SplitMix64) throws -> Sequential {
        Sequential([
            try Conv2d(inputChannels: 2, outputChannels: 3, kernelSize: 3, padding: 1, generator: &generator),
            ReLU(),
            try MaxPool2d(kernelSize: 2),
            Flatten(),
            Linear(inputFeatures: 18, outputFeatures: 4, generator: &generator),
        ])
    }

    static func reference(_ x: [Double], _ p: [[Double]]) -> [Double] {
        let conv = Reference.conv2d(
            x, batch: 2, inputChannels: 2, height: 4, width: 6, weight: p[0], bias: p[1], outputChannels: 3,
            kernel: (3, 3), stride: (1, 1), padding: (1, 1)).output
        let pooled = Reference.pool2d(Reference.relu(conv), planes: 6, height: 4, width: 6, kernel: (2, 2), stride: (2, 2), average: false).output
        return Reference.linear(pooled, weight: p[2], bias: p[3], inputFeatures: 18, outputFeatures: 4)
    }

    @Test("conv -> relu -> maxpool -> flatten -> linear end to end")
    func endToEnd() throws {
        var generator = SplitMix64(seed: 51)
        let model = try Self.makeModel(&generator)
        let input = Tensor.uniform(shape: [2, 2, 4, 6], low: -1, high: 1, using: &generator)
        // Finite differences need the point away from kinks: every pre-activation more than 1e-4 from
        // ReLU's 0, and in each pooling window the largest positive value more than 1e-4 above the
        // runner-up (checked here for this seed, since ±h = 1e-6 across a kink would break the check).
        let x = doubles(input), p = model.namedParameters.map { doubles($0.parameter.value) }
        let preactivation = Reference.conv2d(
            x, batch: 2, inputChannels: 2, height: 4, width: 6, weight: p[0], bias: p[1], outputChannels: 3,
            kernel: (3, 3), stride: (1, 1), padding: (1, 1)).output
        #expect(preactivation.allSatisfy { abs($0) > 1e-4 })
        for plane in 0..<6 {
            for r in 0..<2 {
                for c in 0..<3 {
                    let window = [0, 1, 6, 7].map { preactivation[plane * 24 + r * 12 + c * 2 + $0] }.map { max($0, 0) }.sorted()
                    #expect(window[3] == 0 || window[3] - window[2] > 1e-4, "near-tie in pooling window \(window)")
                }
            }
        }
        try checkLayer(model, input: input, generator: &generator, "Sequential CNN", reference: Self.reference)
    }

    @Test("PyTorch parameter names and state dict round trip")
    func naming() throws {
        var generator = SplitMix64(seed: 52)
        let model = try Self.makeModel(&generator)
        #expect(model.namedParameters.map(\.name) == ["0.weight", "0.bias", "4.weight", "4.bias"])
        #expect(model.namedParameters.map(\.parameter.value.shape) == [[3, 2, 3, 3], [3], [4, 18], [4]])
        let nested = try Sequential(named: [
            ("features", Sequential([try Conv2d(inputChannels: 1, outputChannels: 2, kernelSize: 3, bias: false, generator: &generator), Tanh()])),
            ("norm", try LayerNorm(normalizedShape: [2, 4, 4])),
            ("embed", try Embedding(numEmbeddings: 3, embeddingDim: 2, generator: &generator)),
        ])
        #expect(nested.namedParameters.map(\.name) == ["features.0.weight", "norm.weight", "norm.bias", "embed.weight"])
        let state = model.stateDict()
        let copy = try Self.makeModel(&generator)
        try copy.load(state)
        let input = Tensor.uniform(shape: [2, 2, 4, 6], low: -1, high: 1, using: &generator)
        #expect(try copy(input) == model(input))
    }

    @Test("the backward observer sees every leaf layer's input and output gradient")
    func observer() throws {
        final class Recorder: BackwardObserver {
            var seen: [(path: String, type: String, input: [Int], gradient: [Int])] = []
            func observe(layer: any Layer, path: String, input: Tensor, outputGradient: Tensor) throws {
                seen.append((path, layer.typeName, input.shape, outputGradient.shape))
            }
        }
        var generator = SplitMix64(seed: 53)
        let model = try Self.makeModel(&generator)
        let input = Tensor.uniform(shape: [2, 2, 4, 6], low: -1, high: 1, using: &generator)
        _ = try model.forward(input, mode: .training)
        let recorder = Recorder()
        _ = try model.backward(Tensor(repeating: 1, shape: [2, 4]), accumulateParameterGradients: false, observer: recorder)
        #expect(recorder.seen.map(\.path) == ["4", "3", "2", "1", "0"])
        #expect(recorder.seen.map(\.type) == ["Linear", "Flatten", "MaxPool2d", "ReLU", "Conv2d"])
        #expect(recorder.seen.last!.input == [2, 2, 4, 6] && recorder.seen.last!.gradient == [2, 3, 4, 6])
    }

    @Test("computeInputGradient: false reports the same observations and parameter gradients, and returns a [0] placeholder")
    func withoutInputGradient() throws {
        final class Recorder: BackwardObserver {
            var seen: [(path: String, input: Tensor, gradient: Tensor)] = []
            func observe(layer: any Layer, path: String, input: Tensor, outputGradient: Tensor) throws {
                seen.append((path, input, outputGradient))
            }
        }
        var generator = SplitMix64(seed: 55)
        // The first leaf sits inside a nested Sequential at position 0.
        let model = Sequential([
            Sequential([try Conv2d(inputChannels: 2, outputChannels: 3, kernelSize: 3, padding: 1, generator: &generator), ReLU()]),
            try MaxPool2d(kernelSize: 2), Flatten(), Linear(inputFeatures: 18, outputFeatures: 4, generator: &generator),
        ])
        let input = Tensor.uniform(shape: [2, 2, 4, 6], low: -1, high: 1, using: &generator)
        let outputGradient = Tensor.uniform(shape: [2, 4], low: -1, high: 1, using: &generator)
        _ = try model.forward(input, mode: .evaluation)
        for accumulate in [false, true] {
            let full = Recorder(), partial = Recorder()
            model.zeroGradients()
            let inputGradient = try model.backward(outputGradient, accumulateParameterGradients: accumulate, observer: full)
            let fullGradients = model.namedParameters.map { $0.parameter.gradient }
            model.zeroGradients()
            let placeholder = try model.backward(outputGradient, accumulateParameterGradients: accumulate, observer: partial, computeInputGradient: false)
            #expect(inputGradient.shape == input.shape)
            #expect(placeholder.shape == [0])
            #expect(partial.seen.map(\.path) == ["3", "2", "1", "0.1", "0.0"])
            #expect(partial.seen.map(\.path) == full.seen.map(\.path))
            #expect(partial.seen.map(\.input) == full.seen.map(\.input))
            #expect(partial.seen.map(\.gradient) == full.seen.map(\.gradient))
            #expect(model.namedParameters.map { $0.parameter.gradient } == fullGradients)
            if accumulate { #expect(fullGradients.allSatisfy { $0.scalars.contains { $0 != 0 } }) }
        }
    }

    /// Runs `body`, expecting a thrown error whose message contains every fragment.
    func expectError(_ fragments: [String], sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void) {
        do {
            try body()
            Issue.record("no error; expected one mentioning \(fragments)", sourceLocation: sourceLocation)
        } catch {
            let message = "\(error)"
            for fragment in fragments where !message.contains(fragment) {
                Issue.record("error '\(message)' does not mention '\(fragment)'", sourceLocation: sourceLocation)
            }
        }
    }

    @Test("shape errors name the layer, its configuration, the expectation and the actual shape")
    func errors() throws {
        var generator = SplitMix64(seed: 54)
        let conv = try Conv2d(inputChannels: 3, outputChannels: 8, kernelSize: 3, stride: 2, padding: 1, generator: &generator)
        expectError(["Conv2d(3, 8, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1))", "[N, 3, H, W]", "[2, 4, 5, 5]"]) {
            _ = try conv.forward(Tensor(zeros: [2, 4, 5, 5]), mode: .training)
        }
        expectError(["Conv2d", "[2, 3, 5]"]) { _ = try conv.forward(Tensor(zeros: [2, 3, 5]), mode: .training) }
        expectError(["Conv2d", "H + 2*1 >= 4", "[1, 3, 1, 5]"]) {
            _ = try Conv2d(inputChannels: 3, outputChannels: 1, kernelSize: (4, 3), padding: (1, 0), generator: &generator)
                .forward(Tensor(zeros: [1, 3, 1, 5]), mode: .training)
        }
        expectError(["Conv2d", "before forward"]) {
            _ = try Conv2d(inputChannels: 1, outputChannels: 1, kernelSize: 1, generator: &generator)
                .backward(Tensor(zeros: [1, 1, 1, 1]), accumulateParameterGradients: true)
        }
        _ = try conv.forward(Tensor(zeros: [2, 3, 5, 5]), mode: .training)
        expectError(["Conv2d", "output gradient", "[2, 8, 3, 3]", "[2, 8, 5, 5]"]) {
            _ = try conv.backward(Tensor(zeros: [2, 8, 5, 5]), accumulateParameterGradients: true)
        }
        expectError(["Conv2d", "stride"]) { _ = try Conv2d(inputChannels: 1, outputChannels: 1, kernelSize: 3, stride: 0, generator: &generator) }
        expectError(["MaxPool2d(kernel_size=(3, 3), stride=(3, 3))", "H >= 3", "[1, 1, 2, 5]"]) {
            _ = try MaxPool2d(kernelSize: 3).forward(Tensor(zeros: [1, 1, 2, 5]), mode: .training)
        }
        expectError(["AvgPool2d", "[4, 4]"]) { _ = try AvgPool2d(kernelSize: 2).forward(Tensor(zeros: [4, 4]), mode: .training) }
        expectError(["Linear(4->5)", "[N, ..., 4]", "[2, 3]"]) {
            _ = try Linear(inputFeatures: 4, outputFeatures: 5, generator: &generator).forward(Tensor(zeros: [2, 3]), mode: .training)
        }
        expectError(["LayerNorm((4,)", "[N, ..., 4]", "[2, 5]"]) {
            _ = try LayerNorm(normalizedShape: [4]).forward(Tensor(zeros: [2, 5]), mode: .training)
        }
        expectError(["Flatten", "[7]"]) { _ = try Flatten().forward(Tensor(zeros: [7]), mode: .training) }
        expectError(["Tanh", "before forward"]) { _ = try Tanh().backward(Tensor(zeros: [1]), accumulateParameterGradients: true) }
        // A model's error still names the failing layer.
        let model = try Self.makeModel(&generator)
        expectError(["Conv2d(2, 3", "[N, 2, H, W]", "[2, 1, 4, 6]"]) { _ = try model.forward(Tensor(zeros: [2, 1, 4, 6]), mode: .training) }
    }
}
