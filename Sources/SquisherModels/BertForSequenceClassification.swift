import SquisherLayers
import SquisherTensor

/// Hugging Face's `BertForSequenceClassification` (post-norm encoder, learned positions and token
/// types, pooler, linear classifier) built from layers, with Hugging Face's parameter names
/// (`bert.embeddings.word_embeddings.weight`, `bert.encoder.layer.0.attention.self.query.weight`,
/// `bert.encoder.layer.0.attention.output.LayerNorm.bias`, `bert.pooler.dense.weight`,
/// `classifier.bias`, ...).
///
///     h_0 = LayerNorm(word[ids] + position[0..<T] + token_type[types])   (word row pad_token_id gets no gradient)
///     h_{l+1} = layer_l(h_l)   (bidirectional attention with the padding mask, post-norm)
///     logits = classifier(tanh(pooler.dense(h_L[:, 0])))
///
/// Input: ids `[N, T]`, or `[N, K, T]` with the `attention_mask` and `token_type_ids`
/// (``SequenceModelInput``). Output: logits `[N, num_labels]`. Evaluation only (no dropout).
/// The loss is ``loss``: per-sample cross-entropy on one label per sequence.
public final class BertForSequenceClassification: ObservedLayerContainer {
    public let typeName = "BertForSequenceClassification"
    /// `bert.embeddings`.
    public let embeddings: SequenceEmbedding
    /// `bert.encoder.layer.{i}`.
    public let layers: [TransformerBlock]
    /// `bert.pooler`.
    public let pooler: FirstTokenPooler
    /// `classifier`.
    public let classifier: Linear
    private let stack: Sequential
    public var localParameters: [(name: String, parameter: Parameter)] { [] }
    private var cache: (inputShape: [Int], hidden: Tensor, pooled: Tensor)?

    /// The loss Hugging Face applies to single-label classification: per-sample cross-entropy.
    public var loss: CrossEntropyLikelihood { CrossEntropyLikelihood(layout: .perSample) }

    /// Builds the architecture of `config` (weights N(0, 0.02²) until loaded).
    /// - Throws: ``ModelLoadingError`` naming the config key that is missing or unsupported.
    public init(config: HuggingFaceConfig, generator: inout SplitMix64) throws(ModelLoadingError) {
        let vocabulary = try config.integer("vocab_size"), d = try config.integer("hidden_size")
        let depth = try config.integer("num_hidden_layers", range: 0...10_000), heads = try config.integer("num_attention_heads")
        let inner = try config.integer("intermediate_size"), positions = try config.integer("max_position_embeddings", default: 512)
        let types = try config.integer("type_vocab_size", default: 2)
        let labels = try config.integer("num_labels", default: config.objectCount("id2label") ?? 2)
        let eps = Float(try config.number("layer_norm_eps", default: 1e-12))
        let gelu: GELU.Approximation = try config.gelu("hidden_act", default: "gelu") == .tanh ? .tanh : .none
        let positionType = try config.string("position_embedding_type", default: "absolute")
        guard positionType == "absolute" else { throw ModelLoadingError(file: config.path, problem: "position_embedding_type \"\(positionType)\" is not supported (only \"absolute\")") }
        let padding = try config.integer("pad_token_id", default: 0, range: 0...(vocabulary - 1))
        guard d % heads == 0 else { throw ModelLoadingError(file: config.path, problem: "hidden_size \(d) is not divisible by num_attention_heads \(heads)") }
        do {
            embeddings = try SequenceEmbedding(
                token: ("word_embeddings", Embedding(numEmbeddings: vocabulary, embeddingDim: d, generator: &generator)),
                position: ("position_embeddings", Embedding(numEmbeddings: positions, embeddingDim: d, generator: &generator)),
                tokenType: ("token_type_embeddings", Embedding(numEmbeddings: types, embeddingDim: d, generator: &generator)),
                norm: ("LayerNorm", LayerNorm(normalizedShape: [d], eps: eps)))
            embeddings.token.layer.paddingIndex = padding  // nn.Embedding(padding_idx=pad_token_id): no gradient
            var layers: [TransformerBlock] = []
            for _ in 0..<depth {
                func linear(_ input: Int, _ output: Int) -> Linear { Linear(inputFeatures: input, outputFeatures: output, generator: &generator) }
                let attention = try MultiHeadSelfAttention(
                    heads: heads, causal: false,
                    projections: .separate(query: ("self.query", linear(d, d)), key: ("self.key", linear(d, d)), value: ("self.value", linear(d, d))),
                    output: ("output.dense", linear(d, d)))
                layers.append(try TransformerBlock(
                    arrangement: .postNorm, attention: ("attention", attention), norm1: ("attention.output.LayerNorm", LayerNorm(normalizedShape: [d], eps: eps)),
                    mlp: [("intermediate.dense", linear(d, inner)), ("intermediate.act", GELU(approximate: gelu)), ("output.dense", linear(inner, d))],
                    norm2: ("output.LayerNorm", LayerNorm(normalizedShape: [d], eps: eps))))
            }
            self.layers = layers
            stack = Sequential(layers)
            pooler = FirstTokenPooler(dense: Linear(inputFeatures: d, outputFeatures: d, generator: &generator))
            classifier = Linear(inputFeatures: d, outputFeatures: labels, generator: &generator)
        } catch {
            throw ModelLoadingError(file: config.path, problem: "cannot build BERT: \(error)")
        }
    }

    public var children: [(name: String, layer: any Layer)] {
        [("bert.embeddings", embeddings), ("bert.encoder.layer", stack), ("bert.pooler", pooler), ("classifier", classifier)]
    }

    public func forward(_ input: Tensor, mode: LayerMode) throws(TensorError) -> Tensor {
        let (ids, mask, types) = try SequenceModelInput.unpack(input, model: typeName, maximumChannels: 3)
        for layer in layers { layer.attentionMask = mask }
        embeddings.tokenTypeIDs = types
        let hidden = try stack.forward(embeddings.forward(ids, mode: mode), mode: mode)
        let pooled = try pooler.forward(hidden, mode: mode)
        cache = (input.shape, hidden, pooled)
        return try classifier.forward(pooled, mode: mode)
    }

    public func backward(
        _ outputGradient: Tensor, accumulateParameterGradients accumulate: Bool,
        observer: (any BackwardObserver)?, computeInputGradient: Bool, pathPrefix: String
    ) throws -> Tensor {
        guard let cache else { throw TensorError.invalidArgument(argument: "\(typeName) backward", reason: "called before forward") }
        var g = try classifier.observedBackward(outputGradient, input: cache.pooled, path: pathPrefix + "classifier", accumulateParameterGradients: accumulate, observer: observer)
        g = try pooler.backward(g, accumulateParameterGradients: accumulate, observer: observer, computeInputGradient: true, pathPrefix: pathPrefix + "bert.pooler.")
        g = try stack.backward(g, accumulateParameterGradients: accumulate, observer: observer, computeInputGradient: true, pathPrefix: pathPrefix + "bert.encoder.layer.")
        _ = try embeddings.backward(g, accumulateParameterGradients: accumulate, observer: observer, computeInputGradient: false, pathPrefix: pathPrefix + "bert.embeddings.")
        return computeInputGradient ? Tensor(zeros: cache.inputShape) : Tensor(zeros: [0])
    }
}
