import SquisherLayers
import SquisherTensor
import Testing

@Suite("Activations, Flatten and Dropout")
struct ActivationTests {
    enum Activation: String, CaseIterable, Sendable {
        case relu, tanh, sigmoid, geluExact, geluTanh
    }

    @Test("element-wise activations match Double references and finite differences", arguments: Activation.allCases)
    func activation(_ kind: Activation) throws {
        var generator = SplitMix64(seed: 11)
        // Inputs at least 0.1 from zero (ReLU's kink), spread over [-3, 3] so the saturating parts are exercised.
        let input = awayFromZero(shape: [3, 2, 4], using: &generator).map { 2.7 * $0 }
        let layer: any Layer
        let reference: ([Double]) -> [Double]
        switch kind {
        case .relu: (layer, reference) = (ReLU(), Reference.relu)
        case .tanh: (layer, reference) = (Tanh(), Reference.tanh)
        case .sigmoid: (layer, reference) = (Sigmoid(), Reference.sigmoid)
        case .geluExact: (layer, reference) = (GELU(), Reference.geluExact)
        case .geluTanh: (layer, reference) = (GELU(approximate: .tanh), Reference.geluTanh)
        }
        try checkLayer(layer, input: input, generator: &generator, kind.rawValue) { x, _ in reference(x) }
    }

    @Test("sigmoid and tanh stay finite for huge inputs")
    func saturation() throws {
        let input = try Tensor(shape: [1, 4], scalars: [-1e4, -100, 100, 1e4])
        let sigmoid = try Sigmoid().forward(input, mode: .training)
        // Exact limits: float32 rounds 1/(1+e^-100) to 1 and e^-100/(1+e^-100) to 3.7e-44 (subnormal).
        #expect(sigmoid.scalars[0] == 0 && sigmoid.scalars[3] == 1 && sigmoid.isFinite)
        #expect(try Tanh().forward(input, mode: .training).scalars == [-1, -1, 1, 1])
    }

    @Test("NaN propagates through every activation (no silent masking)")
    func nanPropagates() throws {
        let input = try Tensor(shape: [1, 2], scalars: [.nan, 1])
        for layer: any Layer in [ReLU(), Tanh(), Sigmoid(), GELU(), GELU(approximate: .tanh)] {
            let output = try layer.forward(input, mode: .training)
            #expect(output.scalars[0].isNaN && output.scalars[1].isFinite, "\(layer.typeName)")
        }
    }

    @Test("Flatten reshapes C, H, W row-major and back")
    func flatten() throws {
        var generator = SplitMix64(seed: 12)
        let input = Tensor.uniform(shape: [2, 3, 2, 2], low: -1, high: 1, using: &generator)
        let layer = Flatten()
        let output = try layer.forward(input, mode: .training)
        #expect(output.shape == [2, 12])
        // Flatten is exactly the identity on the row-major scalars.
        #expect(output.scalars == input.scalars)
        try checkLayer(layer, input: input, generator: &generator, "Flatten") { x, _ in x }
    }

    @Test("Dropout in training: output and gradient are exactly x * mask / (1 - p)")
    func dropoutTraining() throws {
        var seed = SplitMix64(seed: 13)
        let p: Float = 0.3
        let layer = try Dropout(probability: p, generator: &seed)
        let input = Tensor.uniform(shape: [4, 50], low: -1, high: 1, using: &seed)
        let output = try layer.forward(input, mode: .training)
        let mask = try #require(layer.mask)
        let keep: Float = 1 / (1 - p)
        #expect(mask.scalars.allSatisfy { $0 == 0 || $0 == keep })
        // Exact: one float32 multiplication per element in both the layer and here.
        #expect(output.scalars == zip(input.scalars, mask.scalars).map { $0 * $1 })
        // Gradient of a sum: exactly the mask / (1 - p).
        let ones = Tensor(repeating: 1, shape: input.shape)
        #expect(try layer.backward(ones, accumulateParameterGradients: true) == mask)
        // Repeatable: the second backward reuses the cached mask.
        let r = Tensor.uniform(shape: input.shape, low: -1, high: 1, using: &seed)
        let first = try layer.backward(r, accumulateParameterGradients: true)
        #expect(try layer.backward(r, accumulateParameterGradients: true) == first)
        #expect(first.scalars == zip(r.scalars, mask.scalars).map { $0 * $1 })
        // 200 Bernoulli(0.3) draws: the dropped count has mean 60 and standard deviation 6.5;
        // a stream that ignored p (0 or 200 dropped) is far outside 60 ± 30 (4.6 sd).
        let dropped = mask.scalars.filter { $0 == 0 }.count
        #expect(abs(dropped - 60) <= 30, "dropped \(dropped) of 200 at p = 0.3")
    }

    @Test("Dropout is seeded: same seed, same masks; a new forward draws a new mask")
    func dropoutDeterminism() throws {
        var a = SplitMix64(seed: 14), b = SplitMix64(seed: 14)
        let first = try Dropout(probability: 0.5, generator: &a), second = try Dropout(probability: 0.5, generator: &b)
        let input = Tensor(repeating: 1, shape: [2, 64])
        let maskA = try first.forward(input, mode: .training)
        #expect(maskA == (try second.forward(input, mode: .training)))
        #expect(maskA != (try first.forward(input, mode: .training)))
    }

    @Test("Dropout in evaluation mode (or p = 0) is the identity, forward and backward")
    func dropoutEvaluation() throws {
        var generator = SplitMix64(seed: 15)
        let input = Tensor.uniform(shape: [3, 5], low: -1, high: 1, using: &generator)
        let r = Tensor.uniform(shape: [3, 5], low: -1, high: 1, using: &generator)
        for layer in [try Dropout(probability: 0.9, generator: &generator), try Dropout(probability: 0, generator: &generator)] {
            let mode: LayerMode = layer.probability == 0 ? .training : .evaluation
            #expect(try layer.forward(input, mode: mode) == input)
            #expect(try layer.backward(r, accumulateParameterGradients: true) == r)
        }
        // p = 1 zeroes everything (PyTorch gives zeros, not NaN).
        let all = try Dropout(probability: 1, generator: &generator)
        #expect(try all.forward(input, mode: .training).scalars.allSatisfy { $0 == 0 })
        #expect(throws: TensorError.self) { _ = try Dropout(probability: 1.5, generator: &generator) }
    }
}
