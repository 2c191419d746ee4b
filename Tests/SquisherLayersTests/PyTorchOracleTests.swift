import SquisherLayers
import SquisherTensor
import Testing

@Suite("PyTorch oracle: the digits CNN")
struct PyTorchOracleTests {
    /// conv(1->4, k3) -> relu -> maxpool(2) -> flatten -> fc(36->10), PyTorch names, oracle weights.
    static func model() throws -> Sequential {
        var generator = SplitMix64(seed: 0)  // overwritten by the oracle weights below
        let model = try Sequential(named: [
            ("conv", try Conv2d(inputChannels: 1, outputChannels: 4, kernelSize: 3, generator: &generator)),
            ("relu", ReLU()),
            ("pool", try MaxPool2d(kernelSize: 2)),
            ("flatten", Flatten()),
            ("fc", Linear(inputFeatures: 36, outputFeatures: 10, generator: &generator)),
        ])
        try model.load(NamedTensors(CNNDigitsOracle.weights.map { ($0.name, try Tensor(shape: $0.shape, scalars: $0.values)) }))
        return model
    }

    @Test("logits and the sum-reduced cross-entropy gradient match PyTorch/BackPACK")
    func digitsCNN() throws {
        let model = try Self.model()
        #expect(model.namedParameters.map(\.name) == CNNDigitsOracle.weights.map(\.name))
        let input = try Tensor(shape: [8, 1, 8, 8], scalars: CNNDigitsOracle.pixelsTimes16.map { Float($0) / 16 })
        let logits = try model.forward(input, mode: .training)
        // Float32 forward vs PyTorch's float64 logits (float32 weights): ~1e-6 relative rounding.
        expectClose(doubles(logits), CNNDigitsOracle.logits, relative: 1e-5, absolute: 1e-5, "logits")
        let (_, logitsGradient) = try SoftmaxCrossEntropy(reduction: .sum)(logits: logits, labels: CNNDigitsOracle.labels)
        model.zeroGradients()
        _ = try model.backward(logitsGradient, accumulateParameterGradients: true)
        // Float32 backward vs float64 oracle: gradients sum 8 samples x up to 36 positions of O(1)
        // products; 1e-4 relative with a 1e-5 absolute floor (values are O(0.1..1)).
        for (name, parameter) in model.namedParameters {
            let expected = try #require(CNNDigitsOracle.gradients[name])
            expectClose(doubles(parameter.gradient), expected, relative: 1e-4, absolute: 1e-5, "gradient of \(name)")
        }
    }
}
