import SquisherLayers
import SquisherTensor
import Testing

@Suite("Linear, LayerNorm and Embedding")
struct DenseLayerTests {
    @Test("Linear on 2-D and 3-D input", arguments: [[3, 4], [2, 3, 4]])
    func linear(shape: [Int]) throws {
        var generator = SplitMix64(seed: 21)
        let layer = Linear(inputFeatures: 4, outputFeatures: 5, generator: &generator)
        let input = Tensor.uniform(shape: shape, low: -1, high: 1, using: &generator)
        try checkLayer(layer, input: input, generator: &generator, "Linear \(shape)") { x, p in
            Reference.linear(x, weight: p[0], bias: p[1], inputFeatures: 4, outputFeatures: 5)
        }
    }

    /// One to three rows take the row dot products, four and more the GEMM: both must give
    /// `b + x Wᵀ`. Reference in Double; tolerance 1e-5 relative to Σ|x||w| + |b| (float32 sums of 37 terms).
    @Test("Linear forward on 1 to 6 rows (row products and GEMM) equals b + x Wᵀ", arguments: 1...6)
    func linearForwardRows(rows: Int) throws {
        var generator = SplitMix64(seed: UInt64(30 + rows))
        let layer = Linear(inputFeatures: 37, outputFeatures: 13, generator: &generator)
        let input = Tensor.uniform(shape: [rows, 37], low: -1, high: 1, using: &generator)
        let output = try layer.forward(input, mode: .evaluation)
        let w = layer.weight.value.scalars, b = layer.bias!.value.scalars, x = input.scalars
        for r in 0..<rows {
            for j in 0..<13 {
                var exact = Double(b[j]), scale = abs(Double(b[j]))
                for p in 0..<37 {
                    exact += Double(x[r * 37 + p]) * Double(w[j * 37 + p])
                    scale += abs(Double(x[r * 37 + p]) * Double(w[j * 37 + p]))
                }
                #expect(abs(Double(output.scalars[r * 13 + j]) - exact) <= 1e-5 * scale, "row \(r) output \(j)")
            }
        }
    }

    @Test("Linear's parameter-only backward (first layer of a model) accumulates the same bits as the full backward")
    func linearParameterOnlyBackward() throws {
        var generator = SplitMix64(seed: 22)
        let layer = Linear(inputFeatures: 300, outputFeatures: 40, generator: &generator)  // large enough for the packed GEMM
        let input = Tensor.uniform(shape: [64, 300], low: -1, high: 1, using: &generator)
        let gradient = Tensor.uniform(shape: [64, 40], low: -1, high: 1, using: &generator)
        _ = try layer.forward(input, mode: .training)
        layer.zeroGradients()
        _ = try layer.backward(gradient, accumulateParameterGradients: true)
        let full = layer.namedParameters.map { $0.parameter.gradient }
        layer.zeroGradients()
        try layer.accumulateParameterGradients(gradient)
        #expect(layer.namedParameters.map { $0.parameter.gradient } == full)
        #expect(full[0].scalars.contains { $0 != 0 })
    }

    /// Row lengths 4, 6 and 37 (masked tails, one full 32-lane step) at every row-kernel level this CPU
    /// runs (AVX-512 C rows, Swift lanes).
    @Test("LayerNorm with non-trivial affine parameters", arguments: [[4], [2, 3], [37]], elementwiseKernelLevels)
    func layerNorm(normalizedShape: [Int], level: Int) throws {
        var generator = SplitMix64(seed: 22)
        let layer = try LayerNorm(normalizedShape: normalizedShape)
        layer.kernelISALevel = level
        // PyTorch's initialization first: ones and zeros.
        #expect(layer.weight?.value.scalars.allSatisfy { $0 == 1 } == true)
        #expect(layer.bias?.value.scalars.allSatisfy { $0 == 0 } == true)
        layer.weight!.value = Tensor.uniform(shape: normalizedShape, low: 0.5, high: 1.5, using: &generator)
        layer.bias!.value = Tensor.uniform(shape: normalizedShape, low: -0.5, high: 0.5, using: &generator)
        let d = normalizedShape.reduce(1, *)
        let input = Tensor.uniform(shape: [3, 2] + normalizedShape, low: -2, high: 2, using: &generator)
        try checkLayer(layer, input: input, generator: &generator, "LayerNorm \(normalizedShape)") { x, p in
            Reference.layerNorm(x, d: d, eps: 1e-5, weight: p[0], bias: p[1])
        }
        // The public x̂ hook equals the reference normalization without affine.
        expectClose(
            doubles(try layer.normalized(input)), Reference.layerNorm(doubles(input), d: d, eps: 1e-5, weight: nil, bias: nil),
            relative: Tolerance.forwardRelative, absolute: Tolerance.forwardAbsolute, "LayerNorm.normalized")
    }

    @Test("LayerNorm without affine parameters", arguments: elementwiseKernelLevels)
    func layerNormPlain(level: Int) throws {
        var generator = SplitMix64(seed: 23)
        let layer = try LayerNorm(normalizedShape: [6], eps: 1e-3, elementwiseAffine: false)
        layer.kernelISALevel = level
        #expect(layer.namedParameters.isEmpty)
        let input = Tensor.uniform(shape: [4, 6], low: -1, high: 1, using: &generator)
        try checkLayer(layer, input: input, generator: &generator, "LayerNorm no affine") { x, _ in
            Reference.layerNorm(x, d: 6, eps: 1e-3, weight: nil, bias: nil)
        }
    }

    @Test("Embedding: lookup, weight gradient with repeated ids, zero input gradient")
    func embedding() throws {
        var generator = SplitMix64(seed: 24)
        let layer = try Embedding(numEmbeddings: 5, embeddingDim: 3, generator: &generator)
        #expect(layer.weight.value.shape == [5, 3])
        let ids = [1, 3, 1, 0, 3, 3]
        let input = try Tensor(shape: [2, 3], scalars: ids.map(Float.init))
        let output = try layer.forward(input, mode: .training)
        #expect(output.shape == [2, 3, 3])
        try checkLayer(layer, input: input, differentiableInput: false, generator: &generator, "Embedding") { _, p in
            Reference.embedding(ids: ids, weight: p[0], dim: 3)
        }
        // The ids are not differentiable: exactly zero, in the input's shape.
        #expect(try layer.backward(Tensor(repeating: 1, shape: [2, 3, 3]), accumulateParameterGradients: false) == Tensor(zeros: [2, 3]))
        // Id 2 and 4 never occur; their gradient rows stay exactly zero.
        #expect(layer.weight.gradient[2, 0] == 0 && layer.weight.gradient[4, 2] == 0)
    }

    @Test("Embedding rejects ids that are not integers in range, naming them", arguments: [2.5, 5, -1, Float.nan])
    func embeddingBadID(bad: Float) throws {
        var generator = SplitMix64(seed: 25)
        let layer = try Embedding(numEmbeddings: 5, embeddingDim: 2, generator: &generator)
        let input = try Tensor(shape: [3], scalars: [0, bad, 1])
        do {
            _ = try layer.forward(input, mode: .training)
            Issue.record("id \(bad) accepted")
        } catch {
            let message = "\(error)"
            #expect(message.contains("Embedding(5, 2)") && message.contains("\(bad)") && message.contains("index 1"), "\(message)")
        }
    }

    @Test("Embedding initialization is N(0, 1) and seeded")
    func embeddingInit() throws {
        var a = SplitMix64(seed: 26), b = SplitMix64(seed: 26)
        let first = try Embedding(numEmbeddings: 100, embeddingDim: 40, generator: &a)
        let second = try Embedding(numEmbeddings: 100, embeddingDim: 40, generator: &b)
        #expect(first.weight.value == second.weight.value)
        // 4000 N(0, 1) draws: mean has sd 0.016, variance sd 0.022; bounds at about 5 sd.
        let values = doubles(first.weight.value)
        let mean = values.reduce(0, +) / 4000
        let variance = values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 4000
        #expect(abs(mean) < 0.08 && abs(variance - 1) < 0.11, "mean \(mean), variance \(variance)")
    }
}
