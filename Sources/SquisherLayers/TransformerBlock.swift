import SquisherTensor

/// A transformer layer: self-attention and a position-wise MLP, each with a residual connection
/// and a layer normalization, in either arrangement:
///
/// - ``Arrangement/preNorm`` (GPT-2): `h = x + attention(norm1(x))`, `y = h + mlp(norm2(h))`;
/// - ``Arrangement/postNorm`` (BERT): `h = norm1(x + attention(x))`, `y = norm2(h + mlp(h))`.
///
/// Input and output `[N, T, D]`. Children (in this order, which is Hugging Face's registration
/// order for both models): pre-norm `norm1, attention, norm2, mlp...`; post-norm
/// `attention, norm1, mlp..., norm2`. The MLP's layers are children of the block itself under
/// their own (possibly dotted) names: GPT-2's `mlp.c_fc`, `mlp.act`, `mlp.c_proj`; BERT's
/// `intermediate.dense`, `intermediate.act`, `output.dense`. Every child is observed.
///
/// The block's own residual sums are written into the memory of earlier passes once nothing else
/// holds it (``ReusableTensor``): each of the two forward sums with two slots (a norm or the next
/// layer keeps the last one as its input until its own next forward), each of the two backward sums
/// with one (let go before the next backward). A forward lets go of the last pass's cache first. A
/// tensor the caller still holds is never written.
public final class TransformerBlock: ObservedLayerContainer {
    /// Where the normalizations sit relative to the residual additions.
    public enum Arrangement: String, Sendable, Hashable {
        /// Normalize each sublayer's input (GPT-2).
        case preNorm
        /// Normalize after each residual addition (BERT).
        case postNorm
    }

    public let typeName = "TransformerBlock"
    /// The arrangement.
    public let arrangement: Arrangement
    /// The attention sublayer and its name.
    public let attention: (name: String, layer: MultiHeadSelfAttention)
    /// The normalization of the attention sublayer.
    public let norm1: (name: String, layer: LayerNorm)
    /// The normalization of the MLP sublayer.
    public let norm2: (name: String, layer: LayerNorm)
    /// The MLP layers applied in order.
    public let mlp: Sequential
    public var localParameters: [(name: String, parameter: Parameter)] { [] }

    private var cache: (x: Tensor, attentionInput: Tensor, h: Tensor, mlpInput: Tensor, norm2Input: Tensor)?
    /// Memory of the forward's first and second residual sums (two slots each) and of the backward's
    /// inner and returned sums (one slot each), reused across passes.
    private var firstSumBuffer = ReusableTensor(slots: 2), secondSumBuffer = ReusableTensor(slots: 2)
    private var innerGradientBuffer = ReusableTensor(), inputGradientBuffer = ReusableTensor()

    /// Creates a block.
    /// - Parameter mlp: the MLP layers with their names (dots allowed), applied in order.
    /// - Throws: ``TensorError/invalidArgument(argument:reason:)`` on an empty MLP or repeated names.
    public init(
        arrangement: Arrangement, attention: (name: String, layer: MultiHeadSelfAttention), norm1: (name: String, layer: LayerNorm),
        mlp: [(String, any Layer)], norm2: (name: String, layer: LayerNorm)
    ) throws(TensorError) {
        guard !mlp.isEmpty else { throw .invalidArgument(argument: "TransformerBlock mlp", reason: "needs at least one layer") }
        self.arrangement = arrangement
        self.attention = attention
        self.norm1 = norm1
        self.norm2 = norm2
        self.mlp = try Sequential(named: mlp)
        let names = [attention.name, norm1.name, norm2.name] + mlp.map(\.0)
        guard Set(names).count == names.count else {
            throw .invalidArgument(argument: "TransformerBlock child names \(names)", reason: "must be unique")
        }
    }

    public var children: [(name: String, layer: any Layer)] {
        switch arrangement {
        case .preNorm: return [(norm1.name, norm1.layer), (attention.name, attention.layer), (norm2.name, norm2.layer)] + mlp.children
        case .postNorm: return [(attention.name, attention.layer), (norm1.name, norm1.layer)] + mlp.children + [(norm2.name, norm2.layer)]
        }
    }

    /// Sets the padding mask `[N, T]` of the attention for the next forward.
    public var attentionMask: Tensor? {
        get { attention.layer.attentionMask }
        set { attention.layer.attentionMask = newValue }
    }

    public func forward(_ x: Tensor, mode: LayerMode) throws(TensorError) -> Tensor {
        cache = nil  // let go of the last pass's tensors first, so that their memory can be reused
        switch arrangement {
        case .preNorm:
            let attentionInput = try norm1.layer.forward(x, mode: mode)
            let h = try firstSumBuffer.sum(x, attention.layer.forward(attentionInput, mode: mode))
            let mlpInput = try norm2.layer.forward(h, mode: mode)
            cache = (x, attentionInput, h, mlpInput, h)
            return try secondSumBuffer.sum(h, mlp.forward(mlpInput, mode: mode))
        case .postNorm:
            let residual1 = try firstSumBuffer.sum(x, attention.layer.forward(x, mode: mode))
            let h = try norm1.layer.forward(residual1, mode: mode)
            let residual2 = try secondSumBuffer.sum(h, mlp.forward(h, mode: mode))
            cache = (x, residual1, h, h, residual2)
            return try norm2.layer.forward(residual2, mode: mode)
        }
    }

    public func backward(
        _ outputGradient: Tensor, accumulateParameterGradients accumulate: Bool,
        observer: (any BackwardObserver)?, computeInputGradient: Bool, pathPrefix: String
    ) throws -> Tensor {
        guard let cache else { throw TensorError.invalidArgument(argument: "\(typeName) backward", reason: "called before forward") }
        func child(_ layer: any Layer, _ name: String, _ g: Tensor, _ input: Tensor) throws -> Tensor {
            try layer.observedBackward(g, input: input, path: pathPrefix + name, accumulateParameterGradients: accumulate, observer: observer)
        }
        func throughMLP(_ g: Tensor) throws -> Tensor {
            try mlp.backward(g, accumulateParameterGradients: accumulate, observer: observer, computeInputGradient: true, pathPrefix: pathPrefix)
        }
        switch arrangement {
        case .preNorm:
            let dh = try innerGradientBuffer.sum(outputGradient, child(norm2.layer, norm2.name, throughMLP(outputGradient), cache.h))
            let dNormed = try child(attention.layer, attention.name, dh, cache.attentionInput)
            return try inputGradientBuffer.sum(dh, child(norm1.layer, norm1.name, dNormed, cache.x))
        case .postNorm:
            let dResidual2 = try child(norm2.layer, norm2.name, outputGradient, cache.norm2Input)
            let dh = try innerGradientBuffer.sum(dResidual2, throughMLP(dResidual2))
            let dResidual1 = try child(norm1.layer, norm1.name, dh, cache.attentionInput)
            return try inputGradientBuffer.sum(dResidual1, child(attention.layer, attention.name, dResidual1, cache.x))
        }
    }
}
