import SquisherData
import SquisherLayers
import SquisherTensor

/// A generated next-token task for the causal-LM experiment: sequences of `length` tokens over a
/// shared vocabulary of ``vocabulary`` ids, each task on its own half (task 0 on ids `0..<12`,
/// task 1 on ids `12..<24`), each following a second-order rule with noise.
///
/// Within a task's 12 symbols `s_t` (the id minus the task's offset), the first two symbols are
/// uniform, then `s_{t+1} = rule(s_{t−1}, s_t)` with probability `1 − noise` and uniform otherwise:
/// - task 0 (count by 5): `s_{t+1} = (s_t + 5) mod 12`, a bigram rule;
/// - task 1 (interleaved count): `s_{t+1} = (s_{t−1} + 1) mod 12`, which needs the token two back
///   (attention to the previous position).
/// The best achievable next-token accuracy on the ruled positions is `1 − noise + noise/12`.
public struct TokenTask: Sendable, Hashable {
    /// The task index (0 or 1).
    public var index: Int
    /// Tokens per sequence.
    public var length: Int
    /// Probability that a token is uniform instead of following the rule.
    public var noise: Double

    /// Symbols per task.
    public static let symbols = 12
    /// The shared vocabulary: both tasks' symbols.
    public static let vocabulary = 2 * symbols

    /// Task `index` (0 or 1) with sequences of `length` tokens.
    public init(index: Int, length: Int = 12, noise: Double = 0.1) {
        self.index = index
        self.length = length
        self.noise = noise
    }

    /// The task's display name.
    public var name: String { index == 0 ? "count by 5 mod 12 (ids 0-11)" : "interleaved count mod 12 (ids 12-23)" }

    /// The rule's next symbol.
    func next(_ previous: Int, _ current: Int) -> Int {
        let n = Self.symbols
        return index == 0 ? (current + 5) % n : (previous + 1) % n
    }

    /// `count` sequences drawn with `seed`: inputs `[count, length]` token ids and targets equal to
    /// the inputs (the loss shifts them: position `t` predicts token `t + 1`).
    /// - Throws: ``TensorError`` for a `length` below 3 (no ruled position to predict).
    public func sequences(count: Int, seed: UInt64) throws(TensorError) -> TensorDataset {
        guard length >= 3 else { throw .invalidArgument(argument: "TokenTask length \(length)", reason: "must be at least 3 (two free tokens, then the rule)") }
        var generator = SplitMix64(seed: seed &* 0x9E37_79B9 &+ UInt64(index))
        let n = Self.symbols, offset = index * n
        var ids: [Float] = []
        ids.reserveCapacity(count * length)
        for _ in 0..<count {
            var symbols = [Int(generator.next() % UInt64(n)), Int(generator.next() % UInt64(n))]
            while symbols.count < length {
                let uniform = generator.nextUniformDouble() < noise
                symbols.append(uniform ? Int(generator.next() % UInt64(n)) : next(symbols[symbols.count - 2], symbols[symbols.count - 1]))
            }
            ids += symbols.prefix(length).map { Float($0 + offset) }
        }
        let tensor = Tensor(uncheckedShape: [count, length], scalars: ids)
        return try TensorDataset(inputs: tensor, targets: tensor)
    }
}

/// A tiny GPT for the token tasks, with GPT-2's layout and parameter names (`wte`, `wpe`,
/// `h.{i}.ln_1`, `h.{i}.attn.c_attn`, `h.{i}.attn.c_proj`, `h.{i}.ln_2`, `h.{i}.mlp.c_fc`,
/// `h.{i}.mlp.c_proj`, `ln_f`, `lm_head`): pre-norm blocks, causal multi-head attention, a GELU
/// MLP of width `4·width`, an untied output head. Input ids `[N, T]`, output logits `[N, T, V]`.
/// Embeddings N(0, 0.02²) as GPT-2 (the ``Embedding`` default N(0, 1) would dominate the residual
/// stream); linear layers keep their PyTorch default initialization.
enum TinyGPT {
    static func make(layers: Int, width: Int, heads: Int, length: Int, vocabulary: Int, seed: UInt64) throws -> Sequential {
        var generator = SplitMix64(seed: seed)
        let embeddings = try SequenceEmbedding(
            token: ("wte", Embedding(numEmbeddings: vocabulary, embeddingDim: width, generator: &generator)),
            position: ("wpe", Embedding(numEmbeddings: length, embeddingDim: width, generator: &generator)))
        var children: [(String, any Layer)] = [("transformer", embeddings)]
        for layer in 0..<layers {
            let attention = try MultiHeadSelfAttention(
                heads: heads, causal: true,
                projections: .fused(name: "c_attn", layer: TransposedLinear(inputFeatures: width, outputFeatures: 3 * width, generator: &generator)),
                output: ("c_proj", TransposedLinear(inputFeatures: width, outputFeatures: width, generator: &generator)))
            children.append(("transformer.h.\(layer)", try TransformerBlock(
                arrangement: .preNorm, attention: ("attn", attention), norm1: ("ln_1", LayerNorm(normalizedShape: [width])),
                mlp: [("mlp.c_fc", TransposedLinear(inputFeatures: width, outputFeatures: 4 * width, generator: &generator)), ("mlp.act", GELU(approximate: .tanh)),
                      ("mlp.c_proj", TransposedLinear(inputFeatures: 4 * width, outputFeatures: width, generator: &generator))],
                norm2: ("ln_2", LayerNorm(normalizedShape: [width])))))
        }
        children.append(("transformer.ln_f", try LayerNorm(normalizedShape: [width])))
        children.append(("lm_head", Linear(inputFeatures: width, outputFeatures: vocabulary, bias: false, generator: &generator)))
        let model = try Sequential(named: children)
        var state = model.stateDict()
        for name in ["transformer.wte.weight", "transformer.wpe.weight"] { state[name] = 0.02 * state[name]! }
        try model.load(state)
        return model
    }
}

/// Next-token accuracy and mean per-token negative log-likelihood of a causal LM.
struct TokenScore {
    var accuracy: Double
    var negativeLogLikelihood: Double

    /// Scores `model` on `data` over the positions `t ≥ 1` predicting token `t + 1` (the first
    /// prediction has no rule to follow): argmax and softmax over the whole vocabulary, so a merged
    /// model must also tell the tasks apart.
    static func of(_ model: any Layer, on data: TensorDataset) throws -> TokenScore {
        let logits = try model.forward(data.inputs, mode: .evaluation)
        let (n, t, v) = (logits.shape[0], logits.shape[1], logits.shape[2])
        let logProbabilities = try logits.reshaped([n * t, v]).logSoftmaxRows()
        var correct = 0, total = 0, nll = 0.0
        logProbabilities.withUnsafeBufferPointer { lp in
            for sample in 0..<n {
                for step in 1..<(t - 1) {
                    let row = (sample * t + step) * v
                    let target = Int(data.targets.scalars[sample * t + step + 1])
                    var best = 0
                    for c in 1..<v where lp[row + c] > lp[row + best] { best = c }
                    if best == target { correct += 1 }
                    nll -= Double(lp[row + target])
                    total += 1
                }
            }
        }
        return TokenScore(accuracy: Double(correct) / Double(max(total, 1)), negativeLogLikelihood: nll / Double(max(total, 1)))
    }
}
