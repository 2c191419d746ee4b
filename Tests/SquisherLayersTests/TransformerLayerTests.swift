import SquisherLayers
import SquisherTensor
import Testing

/// Gradient checks (central differences in Double, tolerances in ``Tolerance``) of the layers a
/// GPT-2 and a BERT are built from, each against an independent Double reference forward.
@Suite("Transformer layers: finite differences")
struct TransformerLayerTests {
    @Test("HF Conv1D (transposed linear): y = x W + b with W [in, out], on [N, T, in]")
    func transposedLinear() throws {
        var generator = SplitMix64(seed: 401)
        let layer = TransposedLinear(inputFeatures: 4, outputFeatures: 3, generator: &generator)
        layer.bias.value = Tensor.uniform(shape: [3], low: -1, high: 1, using: &generator)
        let input = Tensor.uniform(shape: [2, 3, 4], low: -1, high: 1, using: &generator)
        try checkLayer(layer, input: input, generator: &generator, "Conv1D") { x, p in
            Reference.transposedLinear(x, weight: p[0], bias: p[1], inputFeatures: 4, outputFeatures: 3)
        }
    }

    @Test("scaled dot-product attention, causal and bidirectional, with and without a padding mask",
          arguments: [false, true], elementwiseKernelLevels)
    func attentionCore(causal: Bool, level: Int) throws {
        var generator = SplitMix64(seed: causal ? 402 : 403)
        let (n, t, d, heads) = (2, 4, 4, 2)
        let layer = try ScaledDotProductAttention(heads: heads, causal: causal)
        layer.kernelISALevel = level
        let input = Tensor.uniform(shape: [n, t, 3 * d], low: -1.5, high: 1.5, using: &generator)
        try checkLayer(layer, input: input, generator: &generator, "attention causal=\(causal)") { x, _ in
            Reference.attention(x, n: n, t: t, d: d, heads: heads, causal: causal, mask: nil)
        }
        // Sample 0 pads its last position, sample 1 its first (a causal query 0 then sees no key: output 0).
        let mask: [Float] = [1, 1, 1, 0, 0, 1, 1, 1]
        layer.attentionMask = Tensor(uncheckedShape: [n, t], scalars: mask)
        try checkLayer(layer, input: input, generator: &generator, "masked attention causal=\(causal)") { x, _ in
            Reference.attention(x, n: n, t: t, d: d, heads: heads, causal: causal, mask: mask.map(Double.init))
        }
        let output = try layer.forward(input, mode: .evaluation)
        #expect(output.isFinite)
    }

    /// Causal products run in query blocks of ``ScaledDotProductAttention/causalQueryBlock`` rows that skip
    /// the keys above the diagonal: T = 100 spans three blocks (48, 48, 4), with a padding mask too.
    @Test("causal attention over several query blocks, against Double and finite differences", arguments: elementwiseKernelLevels)
    func causalBlocks(level: Int) throws {
        var generator = SplitMix64(seed: 405)
        let (n, t, d, heads) = (1, 100, 4, 2)
        #expect(t > 2 * ScaledDotProductAttention.causalQueryBlock)
        let layer = try ScaledDotProductAttention(heads: heads, causal: true)
        layer.kernelISALevel = level
        let input = Tensor.uniform(shape: [n, t, 3 * d], low: -1.5, high: 1.5, using: &generator)
        try checkLayer(layer, input: input, generator: &generator, "causal attention T=\(t)") { x, _ in
            Reference.attention(x, n: n, t: t, d: d, heads: heads, causal: true, mask: nil)
        }
        let mask: [Float] = (0..<(n * t)).map { $0 % 7 == 3 ? 0 : 1 }
        layer.attentionMask = Tensor(uncheckedShape: [n, t], scalars: mask)
        try checkLayer(layer, input: input, generator: &generator, "masked causal attention T=\(t)") { x, _ in
            Reference.attention(x, n: n, t: t, d: d, heads: heads, causal: true, mask: mask.map(Double.init))
        }
    }

    static func gpt2Attention(_ generator: inout SplitMix64, d: Int = 4, heads: Int = 2) throws -> MultiHeadSelfAttention {
        try MultiHeadSelfAttention(
            heads: heads, causal: true,
            projections: .fused(name: "c_attn", layer: TransposedLinear(inputFeatures: d, outputFeatures: 3 * d, generator: &generator)),
            output: ("c_proj", TransposedLinear(inputFeatures: d, outputFeatures: d, generator: &generator)))
    }

    @Test("multi-head self-attention, GPT-2 layout: fused c_attn (Conv1D), causal core, c_proj")
    func fusedAttention() throws {
        var generator = SplitMix64(seed: 404)
        let layer = try Self.gpt2Attention(&generator)
        for (_, parameter) in layer.namedParameters { parameter.value = Tensor.uniform(shape: parameter.value.shape, low: -0.8, high: 0.8, using: &generator) }
        #expect(layer.namedParameters.map(\.name) == ["c_attn.weight", "c_attn.bias", "c_proj.weight", "c_proj.bias"])
        let input = Tensor.uniform(shape: [2, 3, 4], low: -1, high: 1, using: &generator)
        try checkLayer(layer, input: input, generator: &generator, "GPT-2 attention") { x, p in
            let qkv = Reference.transposedLinear(x, weight: p[0], bias: p[1], inputFeatures: 4, outputFeatures: 12)
            let attended = Reference.attention(qkv, n: 2, t: 3, d: 4, heads: 2, causal: true, mask: nil)
            return Reference.transposedLinear(attended, weight: p[2], bias: p[3], inputFeatures: 4, outputFeatures: 4)
        }
    }

    @Test("multi-head self-attention, BERT layout: separate query/key/value (Linear), padding mask, no output projection")
    func separateAttention() throws {
        var generator = SplitMix64(seed: 405)
        func linear() -> Linear { Linear(inputFeatures: 4, outputFeatures: 4, generator: &generator) }
        let layer = try MultiHeadSelfAttention(
            heads: 2, causal: false, projections: .separate(query: ("self.query", linear()), key: ("self.key", linear()), value: ("self.value", linear())),
            output: nil)
        let mask: [Float] = [1, 1, 0, 1, 1, 1]
        layer.attentionMask = Tensor(uncheckedShape: [2, 3], scalars: mask)
        #expect(layer.namedParameters.map(\.name).first == "self.query.weight")
        let input = Tensor.uniform(shape: [2, 3, 4], low: -1, high: 1, using: &generator)
        try checkLayer(layer, input: input, generator: &generator, "BERT attention") { x, p in
            let parts = (0..<3).map { Reference.linear(x, weight: p[2 * $0], bias: p[2 * $0 + 1], inputFeatures: 4, outputFeatures: 4) }
            return Reference.attention(Reference.concatenate(parts, width: 4), n: 2, t: 3, d: 4, heads: 2, causal: false, mask: mask.map(Double.init))
        }
    }

    @Test("transformer blocks: pre-norm (GPT-2, tanh-GELU) and post-norm (BERT, erf-GELU)", arguments: [TransformerBlock.Arrangement.preNorm, .postNorm])
    func block(arrangement: TransformerBlock.Arrangement) throws {
        var generator = SplitMix64(seed: arrangement == .preNorm ? 406 : 407)
        let attention = try Self.gpt2Attention(&generator)
        let norm1 = try LayerNorm(normalizedShape: [4]), norm2 = try LayerNorm(normalizedShape: [4])
        let gelu = GELU(approximate: arrangement == .preNorm ? .tanh : .none)
        let block = try TransformerBlock(
            arrangement: arrangement, attention: ("attn", attention), norm1: ("ln_1", norm1),
            mlp: [("mlp.c_fc", TransposedLinear(inputFeatures: 4, outputFeatures: 6, generator: &generator)), ("mlp.act", gelu),
                  ("mlp.c_proj", TransposedLinear(inputFeatures: 6, outputFeatures: 4, generator: &generator))],
            norm2: ("ln_2", norm2))
        for (_, parameter) in block.namedParameters { parameter.value = Tensor.uniform(shape: parameter.value.shape, low: -0.8, high: 0.8, using: &generator) }
        let names = block.namedParameters.map(\.name)
        #expect(names.contains("mlp.c_fc.weight") && names.contains("attn.c_attn.bias") && names.contains("ln_2.weight"))
        let input = Tensor.uniform(shape: [2, 3, 4], low: -1, high: 1, using: &generator)
        let order = names
        try checkLayer(block, input: input, generator: &generator, "\(arrangement) block") { x, p in
            func param(_ name: String) -> [Double] { p[order.firstIndex(of: name)!] }
            func norm(_ v: [Double], _ prefix: String) -> [Double] { Reference.layerNorm(v, d: 4, eps: 1e-5, weight: param(prefix + ".weight"), bias: param(prefix + ".bias")) }
            func attend(_ v: [Double]) -> [Double] {
                let qkv = Reference.transposedLinear(v, weight: param("attn.c_attn.weight"), bias: param("attn.c_attn.bias"), inputFeatures: 4, outputFeatures: 12)
                let a = Reference.attention(qkv, n: 2, t: 3, d: 4, heads: 2, causal: true, mask: nil)
                return Reference.transposedLinear(a, weight: param("attn.c_proj.weight"), bias: param("attn.c_proj.bias"), inputFeatures: 4, outputFeatures: 4)
            }
            func mlp(_ v: [Double]) -> [Double] {
                let hidden = Reference.transposedLinear(v, weight: param("mlp.c_fc.weight"), bias: param("mlp.c_fc.bias"), inputFeatures: 4, outputFeatures: 6)
                let activated = arrangement == .preNorm ? Reference.geluTanh(hidden) : Reference.geluExact(hidden)
                return Reference.transposedLinear(activated, weight: param("mlp.c_proj.weight"), bias: param("mlp.c_proj.bias"), inputFeatures: 6, outputFeatures: 4)
            }
            switch arrangement {
            case .preNorm:
                let h = Reference.add(x, attend(norm(x, "ln_1")))
                return Reference.add(h, mlp(norm(h, "ln_2")))
            case .postNorm:
                let h = norm(Reference.add(x, attend(x)), "ln_1")
                return norm(Reference.add(h, mlp(h)), "ln_2")
            }
        }
    }

    @Test("Residual: y = x + body(x), nested, with the body's parameters under its name")
    func residual() throws {
        var generator = SplitMix64(seed: 410)
        let inner = Linear(inputFeatures: 3, outputFeatures: 3, generator: &generator)
        let outer = Linear(inputFeatures: 3, outputFeatures: 3, generator: &generator)
        let block = try Residual(Sequential([outer, Tanh(), try Residual(inner, bodyName: "skip")]))
        #expect(block.namedParameters.map(\.name) == ["body.0.weight", "body.0.bias", "body.2.skip.weight", "body.2.skip.bias"])
        let input = Tensor.uniform(shape: [2, 4, 3], low: -1, high: 1, using: &generator)
        try checkLayer(block, input: input, generator: &generator, "residual") { x, p in
            let h = Reference.tanh(Reference.linear(x, weight: p[0], bias: p[1], inputFeatures: 3, outputFeatures: 3))
            let innerOut = Reference.add(h, Reference.linear(h, weight: p[2], bias: p[3], inputFeatures: 3, outputFeatures: 3))
            return Reference.add(x, innerOut)
        }
        #expect(throws: TensorError.self) { _ = try Residual(Linear(inputFeatures: 3, outputFeatures: 2, generator: &generator)).forward(input, mode: .training) }
    }

    @Test("BERT pooler: tanh(dense(first token))")
    func pooler() throws {
        var generator = SplitMix64(seed: 408)
        let pooler = FirstTokenPooler(dense: Linear(inputFeatures: 4, outputFeatures: 3, generator: &generator))
        let input = Tensor.uniform(shape: [2, 3, 4], low: -1, high: 1, using: &generator)
        try checkLayer(pooler, input: input, generator: &generator, "pooler") { x, p in
            let first = (0..<2).flatMap { Array(x[($0 * 12)..<($0 * 12 + 4)]) }
            return Reference.tanh(Reference.linear(first, weight: p[0], bias: p[1], inputFeatures: 4, outputFeatures: 3))
        }
    }

    @Test("token + position (+ type) embeddings with LayerNorm, and a tied output embedding h · Eᵀ")
    func embeddingsAndTiedHead() throws {
        var generator = SplitMix64(seed: 409)
        let embedding = try SequenceEmbedding(
            token: ("word_embeddings", Embedding(numEmbeddings: 5, embeddingDim: 4, generator: &generator)),
            position: ("position_embeddings", Embedding(numEmbeddings: 6, embeddingDim: 4, generator: &generator)),
            tokenType: ("token_type_embeddings", Embedding(numEmbeddings: 2, embeddingDim: 4, generator: &generator)),
            norm: ("LayerNorm", LayerNorm(normalizedShape: [4])))
        let ids: [Int] = [3, 1, 3, 0, 4, 2]
        let types: [Int] = [0, 0, 1, 0, 1, 1]
        embedding.tokenTypeIDs = Tensor(uncheckedShape: [2, 3], scalars: types.map(Float.init))
        let input = Tensor(uncheckedShape: [2, 3], scalars: ids.map(Float.init))
        try checkLayer(embedding, input: input, differentiableInput: false, generator: &generator, "BERT embeddings") { _, p in
            let words = Reference.embedding(ids: ids, weight: p[0], dim: 4)
            let positions = Reference.embedding(ids: [0, 1, 2, 0, 1, 2], weight: p[1], dim: 4)
            let typeRows = Reference.embedding(ids: types, weight: p[2], dim: 4)
            return Reference.layerNorm(Reference.add(Reference.add(words, positions), typeRows), d: 4, eps: 1e-5, weight: p[3], bias: p[4])
        }
        // Tied head: one parameter, its gradient the sum of the lookup's and the head's.
        let table = try Embedding(numEmbeddings: 5, embeddingDim: 4, generator: &generator)
        let model = Sequential([table, Tanh(), try Linear(weight: table.weight, bias: nil)])
        #expect(model.namedParameters.map(\.name) == ["0.weight"])
        try checkLayer(model, input: input, differentiableInput: false, generator: &generator, "tied embedding") { _, p in
            let hidden = Reference.tanh(Reference.embedding(ids: ids, weight: p[0], dim: 4))
            return Reference.linear(hidden, weight: p[0], bias: nil, inputFeatures: 4, outputFeatures: 5)
        }
    }
}
