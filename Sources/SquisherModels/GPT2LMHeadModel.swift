import SquisherLayers
import SquisherTensor

/// Hugging Face's `GPT2LMHeadModel` (pre-norm decoder, learned positions, tied output embedding)
/// built from layers, with Hugging Face's parameter names (`transformer.wte.weight`,
/// `transformer.h.0.attn.c_attn.weight`, ..., `transformer.ln_f.bias`; the tied `lm_head.weight`
/// is the same parameter as `transformer.wte.weight` and listed once under that name).
///
///     h_0 = wte[ids] + wpe[0..<T]
///     h_{l+1} = block_l(h_l)    (ln_1 -> causal attention (c_attn, c_proj) -> +, ln_2 -> MLP (c_fc, GELU, c_proj) -> +)
///     logits = ln_f(h_L) · wteᵀ
///
/// Input: ids `[N, T]` or ids with `attention_mask` `[N, 2, T]` (``SequenceModelInput``). Output:
/// logits `[N, T, vocabulary]`. Evaluation only (no dropout). The loss is ``loss``: per-token
/// cross-entropy, shifted inside (labels are the input ids, `-100` ignored), each sequence's loss
/// the sum over its predicted tokens.
public final class GPT2LMHeadModel: ObservedLayerContainer {
    public let typeName = "GPT2LMHeadModel"
    /// `wte` and `wpe`.
    public let embeddings: SequenceEmbedding
    /// The blocks `transformer.h.{i}`.
    public let blocks: [TransformerBlock]
    /// `transformer.ln_f`.
    public let finalNorm: LayerNorm
    /// `lm_head` (shares `wte`'s weight when tied).
    public let head: Linear
    private let stack: Sequential
    public var localParameters: [(name: String, parameter: Parameter)] { [] }
    private var cache: (inputShape: [Int], hidden: Tensor, normed: Tensor)?

    /// The loss Hugging Face applies with `labels`: per-token cross-entropy, shifted inside.
    public var loss: CrossEntropyLikelihood { CrossEntropyLikelihood(layout: .perToken(shifted: true)) }

    /// Builds the architecture of `config` with Hugging Face's initialization (N(0, 0.02²) weights).
    /// - Throws: ``ModelLoadingError`` naming the config key that is missing or unsupported.
    public init(config: HuggingFaceConfig, generator: inout SplitMix64) throws(ModelLoadingError) {
        let vocabulary = try config.integer("vocab_size"), positions = try config.integer("n_positions", default: 1024)
        let d = try config.integer("n_embd"), layers = try config.integer("n_layer", range: 0...10_000), heads = try config.integer("n_head")
        let inner = try config.integer("n_inner", default: 4 * d)
        let eps = Float(try config.number("layer_norm_epsilon", default: 1e-5))
        let gelu: GELU.Approximation = try config.gelu("activation_function", default: "gelu_new") == .tanh ? .tanh : .none
        let tied = try config.flag("tie_word_embeddings", default: true)
        for (key, supported) in [("scale_attn_weights", true), ("scale_attn_by_inverse_layer_idx", false), ("reorder_and_upcast_attn", false)] {
            guard try config.flag(key, default: supported) == supported else {
                throw ModelLoadingError(file: config.path, problem: "\"\(key)\": \(!supported) is not supported (only \(supported))")
            }
        }
        guard d % heads == 0 else { throw ModelLoadingError(file: config.path, problem: "n_embd \(d) is not divisible by n_head \(heads)") }
        do {
            embeddings = try SequenceEmbedding(
                token: ("wte", Embedding(numEmbeddings: vocabulary, embeddingDim: d, generator: &generator)),
                position: ("wpe", Embedding(numEmbeddings: positions, embeddingDim: d, generator: &generator)))
            var blocks: [TransformerBlock] = []
            for _ in 0..<layers {
                let attention = try MultiHeadSelfAttention(
                    heads: heads, causal: true,
                    projections: .fused(name: "c_attn", layer: TransposedLinear(inputFeatures: d, outputFeatures: 3 * d, generator: &generator)),
                    output: ("c_proj", TransposedLinear(inputFeatures: d, outputFeatures: d, generator: &generator)))
                blocks.append(try TransformerBlock(
                    arrangement: .preNorm, attention: ("attn", attention), norm1: ("ln_1", LayerNorm(normalizedShape: [d], eps: eps)),
                    mlp: [("mlp.c_fc", TransposedLinear(inputFeatures: d, outputFeatures: inner, generator: &generator)), ("mlp.act", GELU(approximate: gelu)),
                          ("mlp.c_proj", TransposedLinear(inputFeatures: inner, outputFeatures: d, generator: &generator))],
                    norm2: ("ln_2", LayerNorm(normalizedShape: [d], eps: eps))))
            }
            self.blocks = blocks
            stack = Sequential(blocks)
            finalNorm = try LayerNorm(normalizedShape: [d], eps: eps)
            head = tied
                ? try Linear(weight: embeddings.token.layer.weight, bias: nil)
                : Linear(inputFeatures: d, outputFeatures: vocabulary, bias: false, generator: &generator)
        } catch {
            throw ModelLoadingError(file: config.path, problem: "cannot build GPT-2: \(error)")
        }
    }

    public var children: [(name: String, layer: any Layer)] {
        [("transformer", embeddings), ("transformer.h", stack), ("transformer.ln_f", finalNorm), ("lm_head", head)]
    }

    public func forward(_ input: Tensor, mode: LayerMode) throws(TensorError) -> Tensor {
        let (ids, mask, _) = try SequenceModelInput.unpack(input, model: typeName, maximumChannels: 2)
        for block in blocks { block.attentionMask = mask }
        let hidden = try stack.forward(embeddings.forward(ids, mode: mode), mode: mode)
        let normed = try finalNorm.forward(hidden, mode: mode)
        cache = (input.shape, hidden, normed)
        return try head.forward(normed, mode: mode)
    }

    public func backward(
        _ outputGradient: Tensor, accumulateParameterGradients accumulate: Bool,
        observer: (any BackwardObserver)?, computeInputGradient: Bool, pathPrefix: String
    ) throws -> Tensor {
        guard let cache else { throw TensorError.invalidArgument(argument: "\(typeName) backward", reason: "called before forward") }
        var g = try head.observedBackward(outputGradient, input: cache.normed, path: pathPrefix + "lm_head", accumulateParameterGradients: accumulate, observer: observer)
        g = try finalNorm.observedBackward(g, input: cache.hidden, path: pathPrefix + "transformer.ln_f", accumulateParameterGradients: accumulate, observer: observer)
        g = try stack.backward(g, accumulateParameterGradients: accumulate, observer: observer, computeInputGradient: true, pathPrefix: pathPrefix + "transformer.h.")
        _ = try embeddings.backward(g, accumulateParameterGradients: accumulate, observer: observer, computeInputGradient: false, pathPrefix: pathPrefix + "transformer.")
        return computeInputGradient ? Tensor(zeros: cache.inputShape) : Tensor(zeros: [0])
    }
}
