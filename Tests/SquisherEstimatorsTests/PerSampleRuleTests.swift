import Squisher
import Testing

/// The per-sample rules against an independent reference: a loop over single samples, each with an
/// ordinary backward pass, whose gradients are squared and summed (what the rules avoid doing).
/// Float32 both ways with different summation orders: 1e-5 normwise.
@Suite("Per-sample rules vs a per-sample loop")
struct PerSampleRuleTests {
    static func loopReference(model: Sequential, data: Dataset) throws -> [String: [Double]] {
        var sums: [String: [Double]] = [:]
        let loss = SoftmaxCrossEntropy(reduction: .sum)
        for index in 0..<data.count {
            let sample = try data.subset([index])
            model.zeroGradients()
            let logits = try model.forward(sample.inputs, mode: .evaluation)
            _ = try model.backward(try loss(logits: logits, labels: sample.labels).logitsGradient, accumulateParameterGradients: true)
            for (name, parameter) in model.namedParameters {
                let g = parameter.gradient.scalars.map { Double($0) * Double($0) }
                sums[name] = zip(sums[name] ?? [Double](repeating: 0, count: g.count), g).map { $0 + $1 }
            }
        }
        return sums
    }

    static func check(_ model: Sequential, _ data: Dataset) throws {
        let reference = try loopReference(model: model, data: data)
        let ours = try EmpiricalFisher(batchSize: 7).estimate(model: model, data: data)
        for (name, _) in model.namedParameters {
            let deviation = Deviation(try #require(ours[name]).scalars, reference[name]!)
            #expect(deviation.normwise < 1e-5, "\(name): \(deviation)")
        }
    }

    @Test("Embedding + LayerNorm + Linear over sequences (3-D inputs)")
    func sequenceModel() throws {
        var generator = SplitMix64(seed: 4)
        // ids [N, T=5] -> Embedding(12, 6) -> LayerNorm([6]) -> Linear(6 -> 3) -> per-position logits
        // flattened to [N, 15] -> Linear(15 -> 4).
        let model = Sequential([
            try Embedding(numEmbeddings: 12, embeddingDim: 6, generator: &generator),
            try LayerNorm(normalizedShape: [6]),
            Linear(inputFeatures: 6, outputFeatures: 3, generator: &generator),
            Flatten(),
            Linear(inputFeatures: 15, outputFeatures: 4, generator: &generator),
        ])
        // Non-trivial LayerNorm affine parameters.
        model.namedParameters[1].parameter.value = Tensor.normal(shape: [6], mean: 1, standardDeviation: 0.3, using: &generator)
        model.namedParameters[2].parameter.value = Tensor.normal(shape: [6], standardDeviation: 0.3, using: &generator)
        let ids = (0..<(20 * 5)).map { _ in Float(generator.next() % 12) }
        let data = try Dataset(inputs: Tensor(shape: [20, 5], scalars: ids), labels: (0..<20).map { $0 % 4 }, classCount: 4)
        try Self.check(model, data)
    }

    @Test("Conv2d with stride and padding, AvgPool, Tanh")
    func convolution() throws {
        var generator = SplitMix64(seed: 5)
        let model = Sequential([
            try Conv2d(inputChannels: 2, outputChannels: 3, kernelSize: 3, stride: 2, padding: 1, generator: &generator),
            Tanh(),
            try AvgPool2d(kernelSize: 2),
            Flatten(),
            Linear(inputFeatures: 3 * 2 * 2, outputFeatures: 5, generator: &generator),
        ])
        let data = try Dataset(inputs: Tensor.normal(shape: [9, 2, 8, 7], using: &generator), labels: (0..<9).map { $0 % 5 }, classCount: 5)
        try Self.check(model, data)
    }
}
