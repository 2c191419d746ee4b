import SquisherLayers
import SquisherTensor
import Testing

/// The layers of a transformer (LayerNorm, attention, Conv1D, embeddings, Dropout, Residual, the block,
/// the pooler) reuse their activation and gradient memory across passes (``ReusableTensor``). For each:
/// a later pass equals a fresh layer's bit for bit (same arithmetic, only the memory differs), tensors
/// the caller kept from an earlier pass (outputs, gradients, `x̂`, attention probabilities) are never
/// written, memory let go of is reused, and several backward passes after one forward all read that
/// forward's caches.
@Suite("Transformer memory reused across passes")
struct TransformerReuseTests {
    static func address(_ tensor: Tensor) -> UnsafePointer<Float>? { tensor.withUnsafeBufferPointer { $0.baseAddress } }
    static func bits(_ tensor: Tensor) -> [UInt32] { tensor.scalars.map(\.bitPattern) }

    /// One layer under test: how to build it (deterministically: every call makes the same layer), its
    /// inputs, the tensors it caches that a caller can see, and whether its input gradient is made in
    /// reused memory (an embedding's is zeros of the ids' shape, made fresh).
    struct Case {
        var name: String
        var make: () throws -> any Layer
        var input: (inout SplitMix64) -> Tensor
        /// Cached tensors a caller can read after a forward with this input (x̂, probabilities).
        var caches: (any Layer, Tensor) throws -> [Tensor] = { _, _ in [] }
        var reusesOutput = true
        var reusesInputGradient = true
        /// Brings a fresh layer to the reused one's state before the compared pass (a dropout stream).
        var synchronize: (_ fresh: any Layer, _ reused: any Layer) -> Void = { _, _ in }
    }

    /// Parameters drawn uniformly (not the initial ones, so that biases and norm weights matter).
    static func randomized<L: Layer>(_ layer: L, seed: UInt64) -> L {
        var generator = SplitMix64(seed: seed)
        for (_, parameter) in layer.namedParameters {
            parameter.value = Tensor.uniform(shape: parameter.value.shape, low: -0.8, high: 0.8, using: &generator)
        }
        return layer
    }

    static func ids(_ shape: [Int], below limit: Int, _ generator: inout SplitMix64) -> Tensor {
        Tensor(uncheckedShape: shape, scalars: (0..<shape.reduce(1, *)).map { _ in Float(Int(generator.nextUniformFloat() * Float(limit)) % limit) })
    }

    static func uniform(_ shape: [Int]) -> (inout SplitMix64) -> Tensor {
        { Tensor.uniform(shape: shape, low: -1.5, high: 1.5, using: &$0) }
    }

    static func mask(n: Int, t: Int) -> Tensor {
        Tensor(uncheckedShape: [n, t], scalars: (0..<(n * t)).map { $0 % 5 == 3 ? 0 : 1 })
    }

    static func gpt2Block(d: Int, heads: Int, seed: UInt64) throws -> TransformerBlock {
        var generator = SplitMix64(seed: seed)
        let attention = try MultiHeadSelfAttention(
            heads: heads, causal: true,
            projections: .fused(name: "c_attn", layer: TransposedLinear(inputFeatures: d, outputFeatures: 3 * d, generator: &generator)),
            output: ("c_proj", TransposedLinear(inputFeatures: d, outputFeatures: d, generator: &generator)))
        return randomized(
            try TransformerBlock(
                arrangement: .preNorm, attention: ("attn", attention), norm1: ("ln_1", LayerNorm(normalizedShape: [d])),
                mlp: [("mlp.c_fc", TransposedLinear(inputFeatures: d, outputFeatures: 2 * d, generator: &generator)), ("mlp.act", GELU(approximate: .tanh)),
                      ("mlp.c_proj", TransposedLinear(inputFeatures: 2 * d, outputFeatures: d, generator: &generator))],
                norm2: ("ln_2", LayerNorm(normalizedShape: [d]))),
            seed: seed + 1)
    }

    static func bertAttention(d: Int, heads: Int, seed: UInt64) throws -> MultiHeadSelfAttention {
        var generator = SplitMix64(seed: seed)
        func linear() -> Linear { Linear(inputFeatures: d, outputFeatures: d, generator: &generator) }
        return try MultiHeadSelfAttention(
            heads: heads, causal: false, projections: .separate(query: ("self.query", linear()), key: ("self.key", linear()), value: ("self.value", linear())),
            output: nil)
    }

    static func bertBlock(d: Int, heads: Int, seed: UInt64) throws -> TransformerBlock {
        var generator = SplitMix64(seed: seed)
        let attention = try bertAttention(d: d, heads: heads, seed: seed + 2)
        let output = Linear(inputFeatures: d, outputFeatures: d, generator: &generator)
        let attentionWithOutput = try MultiHeadSelfAttention(
            heads: heads, causal: false, projections: attention.projections, output: ("output.dense", output))
        return randomized(
            try TransformerBlock(
                arrangement: .postNorm, attention: ("attention", attentionWithOutput), norm1: ("attention.output.LayerNorm", LayerNorm(normalizedShape: [d])),
                mlp: [("intermediate.dense", Linear(inputFeatures: d, outputFeatures: 2 * d, generator: &generator)), ("intermediate.act", GELU()),
                      ("output.dense", Linear(inputFeatures: 2 * d, outputFeatures: d, generator: &generator))],
                norm2: ("output.LayerNorm", LayerNorm(normalizedShape: [d]))),
            seed: seed + 1)
    }

    static var cases: [Case] {
        [
            Case(name: "LayerNorm", make: { randomized(try LayerNorm(normalizedShape: [24]), seed: 1) }, input: uniform([4, 5, 24]),
                 caches: { layer, x in [try (layer as! LayerNorm).normalized(x)] }),
            Case(name: "LayerNorm without affine (the output is x̂)", make: { try LayerNorm(normalizedShape: [3, 10], elementwiseAffine: false) },
                 input: uniform([3, 7, 3, 10]), caches: { layer, x in [try (layer as! LayerNorm).normalized(x)] }),
            Case(name: "causal attention over two query blocks", make: { try ScaledDotProductAttention(heads: 2, causal: true) },
                 input: uniform([2, ScaledDotProductAttention.causalQueryBlock + 5, 3 * 8]), caches: { layer, _ in [(layer as! ScaledDotProductAttention).probabilities!] }),
            Case(name: "masked attention", make: {
                     let layer = try ScaledDotProductAttention(heads: 3, causal: false)
                     layer.attentionMask = mask(n: 3, t: 9)
                     return layer
                 }, input: uniform([3, 9, 3 * 6]), caches: { layer, _ in [(layer as! ScaledDotProductAttention).probabilities!] }),
            Case(name: "BERT self-attention (separate query, key, value; padding mask)", make: {
                     let layer = randomized(try bertAttention(d: 8, heads: 2, seed: 3), seed: 4)
                     layer.attentionMask = mask(n: 3, t: 6)
                     return layer
                 }, input: uniform([3, 6, 8]), caches: { layer, _ in [(layer as! MultiHeadSelfAttention).core.probabilities!] }),
            Case(name: "GPT-2 attention block (fused c_attn, c_proj)", make: { try gpt2Block(d: 8, heads: 2, seed: 5).attention.layer },
                 input: uniform([2, 7, 8]), caches: { layer, _ in [(layer as! MultiHeadSelfAttention).core.probabilities!] }),
            Case(name: "Embedding", make: {
                     var generator = SplitMix64(seed: 8)
                     return try Embedding(numEmbeddings: 11, embeddingDim: 6, generator: &generator)
                 }, input: { ids([4, 5], below: 11, &$0) }, reusesInputGradient: false),
            Case(name: "BERT embeddings (word, position, type, LayerNorm)", make: {
                     var generator = SplitMix64(seed: 9)
                     let layer = try SequenceEmbedding(
                         token: ("word_embeddings", Embedding(numEmbeddings: 13, embeddingDim: 8, generator: &generator)),
                         position: ("position_embeddings", Embedding(numEmbeddings: 10, embeddingDim: 8, generator: &generator)),
                         tokenType: ("token_type_embeddings", Embedding(numEmbeddings: 2, embeddingDim: 8, generator: &generator)),
                         norm: ("LayerNorm", LayerNorm(normalizedShape: [8])))
                     layer.tokenTypeIDs = Tensor(uncheckedShape: [3, 6], scalars: (0..<18).map { Float($0 % 4 / 2) })
                     return randomized(layer, seed: 10)
                 }, input: { ids([3, 6], below: 13, &$0) }, reusesInputGradient: false),
            Case(name: "GPT-2 embeddings (wte + wpe)", make: {
                     var generator = SplitMix64(seed: 11)
                     return try SequenceEmbedding(
                         token: ("wte", Embedding(numEmbeddings: 13, embeddingDim: 8, generator: &generator)),
                         position: ("wpe", Embedding(numEmbeddings: 10, embeddingDim: 8, generator: &generator)))
                 }, input: { ids([3, 6], below: 13, &$0) }, reusesInputGradient: false),
            Case(name: "Dropout", make: {
                     var generator = SplitMix64(seed: 12)
                     return try Dropout(probability: 0.3, generator: &generator)
                 }, input: uniform([4, 5, 6]), caches: { layer, _ in [(layer as! Dropout).mask!] },
                 synchronize: { fresh, reused in (fresh as! Dropout).generator = (reused as! Dropout).generator }),
            Case(name: "Residual", make: {
                     var generator = SplitMix64(seed: 13)
                     return try Residual(Sequential([Linear(inputFeatures: 6, outputFeatures: 6, generator: &generator), Tanh(),
                                                     Linear(inputFeatures: 6, outputFeatures: 6, generator: &generator)]))
                 }, input: uniform([3, 4, 6])),
            Case(name: "GPT-2 block (pre-norm)", make: { try gpt2Block(d: 8, heads: 2, seed: 14) }, input: uniform([2, 6, 8]),
                 caches: { layer, x in
                     let block = layer as! TransformerBlock
                     return [try block.norm1.layer.normalized(x), block.attention.layer.core.probabilities!]
                 }),
            Case(name: "BERT block (post-norm, padding mask)", make: {
                     let block = try bertBlock(d: 8, heads: 2, seed: 15)
                     block.attentionMask = mask(n: 3, t: 5)
                     return block
                 }, input: uniform([3, 5, 8]), caches: { layer, _ in [(layer as! TransformerBlock).attention.layer.core.probabilities!] }),
            Case(name: "BERT pooler", make: {
                     var generator = SplitMix64(seed: 16)
                     return FirstTokenPooler(dense: Linear(inputFeatures: 8, outputFeatures: 5, generator: &generator))
                 }, input: uniform([3, 4, 8]), reusesOutput: false),  // the output is the tanh's, [N, D'] (made fresh)
        ]
    }

    @Test("later passes equal a fresh layer's, keep held tensors and reuse released memory", arguments: 0..<14)
    func reuse(index: Int) throws {
        let testCase = Self.cases[index]
        let layer = try testCase.make()
        var generator = SplitMix64(seed: UInt64(200 + index))
        let inputs = (0..<3).map { _ in testCase.input(&generator) }
        // Pass 1, kept by the caller (output, input gradient, cached x̂ and probabilities): later passes must not touch them.
        let y1 = try layer.forward(inputs[0], mode: .training)
        let caches1 = try testCase.caches(layer, inputs[0])
        let dy = Tensor.uniform(shape: y1.shape, low: -1, high: 1, using: &generator)
        let dx1 = try layer.backward(dy, accumulateParameterGradients: true)
        let saved = ([y1, dx1] + caches1).map(Self.bits)
        // Pass 2 in a function of its own: its tensors are let go at the end.
        func secondPass() throws -> (addresses: [UnsafePointer<Float>?], sizes: [Int]) {
            let y2 = try layer.forward(inputs[1], mode: .training)
            let caches2 = try testCase.caches(layer, inputs[1])
            let dx2 = try layer.backward(dy, accumulateParameterGradients: true)
            return (([y2, dx2] + caches2).map(Self.address), ([y2, dx2] + caches2).map(\.count))
        }
        let (addresses2, sizes2) = try secondPass()
        #expect(([y1, dx1] + caches1).map(Self.bits) == saved, "\(testCase.name): a held tensor of the first pass was overwritten")
        #expect(Self.address(y1) != addresses2[0] && Self.address(dx1) != addresses2[1], "\(testCase.name): a held tensor's memory was reused")
        // Pass 3 after the caller let go of pass 2: same memory, same values as a fresh layer. Blocks of
        // pass 2's sizes taken first would get pass 2's memory if the layer had handed it back to malloc.
        let fresh = try testCase.make()
        testCase.synchronize(fresh, layer)
        layer.zeroGradients()
        let blockers = sizes2.map { [Float](repeating: 1, count: $0) }
        let y3 = try layer.forward(inputs[2], mode: .training)
        let caches3 = try testCase.caches(layer, inputs[2])
        let dx3 = try layer.backward(dy, accumulateParameterGradients: true)
        let addresses3 = ([y3, dx3] + caches3).map(Self.address)
        withExtendedLifetime(blockers) {}
        if testCase.reusesOutput { #expect(addresses3[0] == addresses2[0], "\(testCase.name): the output memory was not reused") }
        if testCase.reusesInputGradient { #expect(addresses3[1] == addresses2[1], "\(testCase.name): the input-gradient memory was not reused") }
        #expect(Array(addresses3.dropFirst(2)) == Array(addresses2.dropFirst(2)), "\(testCase.name): the memory of a cache (x̂, probabilities, mask) was not reused")
        let expectedY = try fresh.forward(inputs[2], mode: .training)
        let expectedCaches = try testCase.caches(fresh, inputs[2])
        let expectedDx = try fresh.backward(dy, accumulateParameterGradients: true)
        #expect(Self.bits(y3) == Self.bits(expectedY), "\(testCase.name): output")
        #expect(Self.bits(dx3) == Self.bits(expectedDx), "\(testCase.name): input gradient")
        #expect(caches3.map(Self.bits) == expectedCaches.map(Self.bits), "\(testCase.name): cached tensors")
        #expect(layer.gradients().names == fresh.gradients().names)
        for (name, gradient) in fresh.gradients() {
            #expect(Self.bits(layer.gradients()[name]!) == Self.bits(gradient), "\(testCase.name): gradient of \(name)")
        }
        #expect(([y1, dx1] + caches1).map(Self.bits) == saved, "\(testCase.name): a held tensor of the first pass was overwritten")

        // Several backward passes after one forward (the exact true Fisher; estimators observing without
        // input gradients): every one reads the forward's caches, none writes a gradient the caller holds.
        let dyB = Tensor.uniform(shape: y1.shape, low: -1, high: 1, using: &generator)
        let dxA = try layer.backward(dy, accumulateParameterGradients: false)
        let savedA = Self.bits(dxA)
        let dxB = try layer.backward(dyB, accumulateParameterGradients: false)
        for _ in 0..<2 {
            _ = try layer.observedBackward(dyB, input: inputs[2], path: "", accumulateParameterGradients: false, observer: nil, computeInputGradient: false)
        }
        let dxA2 = try layer.backward(dy, accumulateParameterGradients: false)
        #expect(Self.bits(dxA) == savedA, "\(testCase.name): a held gradient was overwritten by a later backward")
        #expect(Self.bits(dxA2) == savedA && Self.bits(dxA) == Self.bits(expectedDx), "\(testCase.name): a repeated backward differs")
        let expectedB = try fresh.backward(dyB, accumulateParameterGradients: false)
        #expect(Self.bits(dxB) == Self.bits(expectedB), "\(testCase.name): a second backward after one forward differs")
        #expect(try testCase.caches(layer, inputs[2]).map(Self.bits) == expectedCaches.map(Self.bits), "\(testCase.name): a backward changed a cache")
        #expect(Self.bits(y3) == Self.bits(expectedY), "\(testCase.name): a backward changed the output")
    }

    /// Outputs that the next layer keeps as its input until its own next forward take two slots: with
    /// the last output still held, the one before it (let go by then) is the memory reused.
    @Test("outputs held by the next layer: the one before the last is reused", arguments: 0..<4)
    func outputWhileHeld(index: Int) throws {
        var generator = SplitMix64(seed: UInt64(300 + index))
        let layer: any Layer, shape: [Int]
        switch index {
        case 0: (layer, shape) = (try LayerNorm(normalizedShape: [10]), [3, 4, 10])
        case 1: (layer, shape) = (try ScaledDotProductAttention(heads: 2, causal: true), [2, 5, 12])
        case 2: (layer, shape) = (TransposedLinear(inputFeatures: 10, outputFeatures: 4, generator: &generator), [3, 4, 10])
        default: (layer, shape) = (try Residual(Tanh()), [3, 4, 10])
        }
        let inputs = (0..<4).map { _ in Tensor.uniform(shape: shape, low: -2, high: 2, using: &generator) }
        var held = try layer.forward(inputs[0], mode: .training)  // as the next layer's cached input
        let firstAddress = Self.address(held)
        held = try layer.forward(inputs[1], mode: .training)  // the first output is let go here
        let kept = Self.bits(held)
        let blocker = [Float](repeating: 1, count: held.count)  // would take the first output's memory, were it freed
        let third = try layer.forward(inputs[2], mode: .training)
        withExtendedLifetime(blocker) {}
        #expect(Self.address(third) == firstAddress, "the output before the last was not reused")
        #expect(Self.bits(held) == kept, "the held output was overwritten")
    }

    /// A GPT-2-like model (embeddings, two pre-norm blocks, final norm, tied head) trained for several
    /// passes and then backpropagated many times after one forward, against a fresh copy at every step.
    @Test("a GPT-2-like model over several passes, and many backward passes after one forward, equal a fresh model's")
    func model() throws {
        func makeModel() throws -> (model: Sequential, embeddings: SequenceEmbedding) {
            var generator = SplitMix64(seed: 400)
            let embeddings = try SequenceEmbedding(
                token: ("wte", Embedding(numEmbeddings: 17, embeddingDim: 8, generator: &generator)),
                position: ("wpe", Embedding(numEmbeddings: 12, embeddingDim: 8, generator: &generator)))
            let model = try Sequential(named: [
                ("embeddings", embeddings), ("h.0", Self.gpt2Block(d: 8, heads: 2, seed: 401)), ("h.1", Self.gpt2Block(d: 8, heads: 2, seed: 403)),
                ("ln_f", LayerNorm(normalizedShape: [8])), ("lm_head", Linear(weight: embeddings.token.layer.weight, bias: nil)),
            ])
            return (model, embeddings)
        }
        let model = try makeModel().model
        var generator = SplitMix64(seed: 410)
        var heldOutputs: [(Tensor, [UInt32])] = []
        for pass in 0..<4 {
            let input = Self.ids([3, 10], below: 17, &generator)
            let dy = Tensor.uniform(shape: [3, 10, 17], low: -1, high: 1, using: &generator)
            model.zeroGradients()
            let y = try model.forward(input, mode: .training)
            try model.accumulateParameterGradients(dy)
            let fresh = try makeModel().model
            #expect(Self.bits(y) == Self.bits(try fresh.forward(input, mode: .training)), "pass \(pass): logits")
            try fresh.accumulateParameterGradients(dy)
            for (name, gradient) in fresh.gradients() {
                #expect(Self.bits(model.gradients()[name]!) == Self.bits(gradient), "pass \(pass): gradient of \(name)")
            }
            if pass % 2 == 0 { heldOutputs.append((y, Self.bits(y))) }
            for (held, bits) in heldOutputs { #expect(Self.bits(held) == bits, "pass \(pass): a held output was overwritten") }
        }
        // One forward, then one backward per output gradient (the exact true Fisher's pattern), accumulating.
        let input = Self.ids([3, 10], below: 17, &generator)
        let gradients = (0..<5).map { _ in Tensor.uniform(shape: [3, 10, 17], low: -1, high: 1, using: &generator) }
        model.zeroGradients()
        _ = try model.forward(input, mode: .evaluation)
        for (index, dy) in gradients.enumerated() {
            if index % 2 == 1 {  // an estimator's observing pass in between: no gradients, no input gradient
                _ = try model.observedBackward(dy, input: input, path: "", accumulateParameterGradients: false, observer: nil, computeInputGradient: false)
            }
            _ = try model.backward(dy, accumulateParameterGradients: true)
        }
        let fresh = try makeModel().model
        _ = try fresh.forward(input, mode: .evaluation)
        for dy in gradients { _ = try fresh.backward(dy, accumulateParameterGradients: true) }
        for (name, gradient) in fresh.gradients() {
            #expect(Self.bits(model.gradients()[name]!) == Self.bits(gradient), "after one forward: gradient of \(name)")
        }
    }
}
