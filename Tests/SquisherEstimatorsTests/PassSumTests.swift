import Squisher
import Testing

/// The pass-summed rules (``PassSummableSquaredGradientRule``: one `Linear` product per batch, one
/// `Conv2d` unfolding per batch) against the same rules run once per backward pass, as before.
///
/// Both sides are float32 with the same terms summed in a different order (`Σ_c` before or after
/// the product over samples): each entry is a sum of at most `C·N` non-negative terms, so both
/// sides carry a relative rounding error of a few float32 ulps (~1e-7 · log2(C·N)); 1e-5 normwise
/// and element-wise leaves a wide margin while catching any real difference (a missing pass, a
/// wrong scale) by orders of magnitude.
@Suite("Pass-summed rules equal the per-pass rules")
struct PassSumTests {
    /// Forwards to a built-in rule but does not adopt ``PassSummableSquaredGradientRule``, so the
    /// estimators call it once per pass (what a user rule gets).
    struct PerPass: PerSampleSquaredGradientRule {
        let rule: any PerSampleSquaredGradientRule
        func accumulateSquaredGradients(
            layer: any Layer, input: Tensor, outputGradient: Tensor, scale: Float, into accumulators: inout [String: Tensor]
        ) throws -> Int {
            try rule.accumulateSquaredGradients(layer: layer, input: input, outputGradient: outputGradient, scale: scale, into: &accumulators)
        }
    }

    static var perPassRules: PerSampleRuleRegistry {
        var registry = PerSampleRuleRegistry.standard
        registry.register(PerPass(rule: LinearSquaredGradientRule()), for: Linear.self)
        registry.register(PerPass(rule: Conv2dSquaredGradientRule()), for: Conv2d.self)
        return registry
    }

    static func compare(_ ours: Importance, _ reference: Importance, sourceLocation: SourceLocation = #_sourceLocation) throws {
        #expect(ours.values.names == reference.values.names, sourceLocation: sourceLocation)
        for (name, tensor) in reference.values {
            let deviation = Deviation(try #require(ours[name]).scalars, tensor.scalars.map(Double.init))
            #expect(deviation.normwise < 1e-5 && deviation.elementwise < 1e-5, "\(name): \(deviation)", sourceLocation: sourceLocation)
            #expect(tensor.scalars.contains { $0 > 0 }, "\(name) is all zero: the comparison would be vacuous", sourceLocation: sourceLocation)
        }
    }

    static func mlp(_ generator: inout SplitMix64) -> Sequential {
        Sequential([
            Linear(inputFeatures: 12, outputFeatures: 9, generator: &generator), Tanh(),
            Linear(inputFeatures: 9, outputFeatures: 7, generator: &generator), ReLU(),
            Linear(inputFeatures: 7, outputFeatures: 5, generator: &generator),
        ])
    }

    @Test("true Fisher exact and Monte-Carlo (S = 3, scale 1/3) on a random MLP, batches of 7 with a short last one")
    func mlpModel() throws {
        var generator = SplitMix64(seed: 81)
        let model = Self.mlp(&generator)
        let data = try Dataset(inputs: Tensor.normal(shape: [23, 12], using: &generator), labels: (0..<23).map { $0 % 5 }, classCount: 5)
        try Self.compare(
            TrueFisherExact(batchSize: 7).estimate(model: model, data: data),
            TrueFisherExact(batchSize: 7, rules: Self.perPassRules).estimate(model: model, data: data))
        try Self.compare(
            TrueFisherMonteCarlo(samples: 3, seed: 5, batchSize: 7).estimate(model: model, data: data),
            TrueFisherMonteCarlo(samples: 3, seed: 5, batchSize: 7, rules: Self.perPassRules).estimate(model: model, data: data))
        try Self.compare(
            EmpiricalFisher(batchSize: 7).estimate(model: model, data: data),
            EmpiricalFisher(batchSize: 7, rules: Self.perPassRules).estimate(model: model, data: data))
    }

    @Test("true Fisher exact on a CNN with two convolutions (nested Sequential first) and a Linear")
    func cnnModel() throws {
        var generator = SplitMix64(seed: 82)
        let model = Sequential([
            Sequential([
                try Conv2d(inputChannels: 2, outputChannels: 4, kernelSize: 3, padding: 1, generator: &generator), ReLU(),
            ]),
            try Conv2d(inputChannels: 4, outputChannels: 3, kernelSize: 3, stride: 2, padding: 1, generator: &generator), Tanh(),
            Flatten(),
            Linear(inputFeatures: 3 * 3 * 4, outputFeatures: 6, generator: &generator),
        ])
        let data = try Dataset(inputs: Tensor.normal(shape: [11, 2, 6, 7], using: &generator), labels: (0..<11).map { $0 % 6 }, classCount: 6)
        try Self.compare(
            TrueFisherExact(batchSize: 4).estimate(model: model, data: data),
            TrueFisherExact(batchSize: 4, rules: Self.perPassRules).estimate(model: model, data: data))
    }

    @Test("Linear on [N, T, in] inputs keeps the per-pass path and agrees")
    func sequenceLinear() throws {
        var generator = SplitMix64(seed: 83)
        let model = Sequential([
            Linear(inputFeatures: 4, outputFeatures: 3, generator: &generator), ReLU(), Flatten(),
            Linear(inputFeatures: 15, outputFeatures: 4, generator: &generator),
        ])
        let data = try Dataset(inputs: Tensor.normal(shape: [9, 5, 4], using: &generator), labels: (0..<9).map { $0 % 4 }, classCount: 4)
        try Self.compare(
            TrueFisherExact(batchSize: 4).estimate(model: model, data: data),
            TrueFisherExact(batchSize: 4, rules: Self.perPassRules).estimate(model: model, data: data))
    }
}
