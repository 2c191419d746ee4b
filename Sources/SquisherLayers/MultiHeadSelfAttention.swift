import SquisherTensor

/// Multi-head self-attention: input projections, ``ScaledDotProductAttention``, an optional output
/// projection. Input and output `[N, T, D]`.
///
/// Projections are ordinary child layers (observed like any other, so per-sample estimators square
/// each sample's **summed over positions** gradient `Σ_t δ_t x_tᵀ` of every projection):
/// - ``Projections/fused(name:layer:)``: one layer `D -> 3D` producing queries, keys and values
///   side by side (GPT-2's `c_attn`, a ``TransposedLinear``);
/// - ``Projections/separate(query:key:value:)``: three layers `D -> D` (BERT's `query`, `key`, `value`).
///
/// Child names are free (dotted names flatten a deeper PyTorch path: BERT's `self.query` and
/// `output.dense` under `attention`). The core is the child `"core"` (no parameters).
/// ``attentionMask`` `[N, T]` (1 = token, 0 = padding) applies to the next forward.
///
/// With separate projections, the tensors this container makes itself reuse the memory of earlier
/// passes once nothing else holds it (``ReusableTensor``): the concatenated queries, keys and values
/// (two slots: the core keeps the last one as its input until its own next forward), the three parts
/// of the core's input gradient and the input gradient, the sum of the projections' (one slot each: let
/// go by the caller before the next backward). A forward lets go of the last pass's cached tensors
/// first, so that the children can reuse their memory.
public final class MultiHeadSelfAttention: ObservedLayerContainer {
    /// Where queries, keys and values come from.
    public enum Projections {
        /// One layer `D -> 3D` (queries, keys, values side by side).
        case fused(name: String, layer: any Layer)
        /// Three layers `D -> D`.
        case separate(query: (name: String, layer: any Layer), key: (name: String, layer: any Layer), value: (name: String, layer: any Layer))
    }

    public let typeName = "MultiHeadSelfAttention"
    /// The input projections.
    public let projections: Projections
    /// The attention core.
    public let core: ScaledDotProductAttention
    /// The output projection `D -> D` (nil: the caller applies its own, as BERT's `attention.output`).
    public let output: (name: String, layer: any Layer)?
    public var localParameters: [(name: String, parameter: Parameter)] { [] }

    private var cachedInput: Tensor?
    private var cachedProjected: Tensor?
    private var cachedAttended: Tensor?
    /// Memory of the concatenated projections (two slots), of the three parts of the core's input
    /// gradient and of the input gradient (one slot each), reused across passes.
    private var projectedBuffer = ReusableTensor(slots: 2), inputGradientBuffer = ReusableTensor()
    private var gradientPartBuffers = [ReusableTensor](repeating: ReusableTensor(), count: 3)

    /// Creates the layer around `heads` heads.
    /// - Throws: ``TensorError/invalidArgument(argument:reason:)`` unless `heads >= 1`.
    public init(heads: Int, causal: Bool, projections: Projections, output: (name: String, layer: any Layer)?) throws(TensorError) {
        self.projections = projections
        self.output = output
        core = try ScaledDotProductAttention(heads: heads, causal: causal)
    }

    /// Padding mask `[N, T]` for the next forward (nil: every position is a token).
    public var attentionMask: Tensor? {
        get { core.attentionMask }
        set { core.attentionMask = newValue }
    }

    private var projectionChildren: [(name: String, layer: any Layer)] {
        switch projections {
        case .fused(let name, let layer): return [(name, layer)]
        case .separate(let query, let key, let value): return [query, key, value]
        }
    }

    public var children: [(name: String, layer: any Layer)] {
        projectionChildren + [("core", core)] + (output.map { [$0] } ?? [])
    }

    public func forward(_ input: Tensor, mode: LayerMode) throws(TensorError) -> Tensor {
        guard input.rank == 3 else {
            throw .shapeMismatch(operation: "\(typeName) forward", expected: "input [N, T, D]", actual: input.shape)
        }
        // Let go of the last pass's tensors first, so that the children can reuse their memory.
        (cachedInput, cachedProjected, cachedAttended) = (nil, nil, nil)
        let projected: Tensor
        switch projections {
        case .fused(_, let layer):
            projected = try layer.forward(input, mode: mode)
        case .separate(let query, let key, let value):
            projected = try Self.concatenateLastAxis(
                [query.layer.forward(input, mode: mode), key.layer.forward(input, mode: mode), value.layer.forward(input, mode: mode)],
                into: &projectedBuffer)
        }
        let attended = try core.forward(projected, mode: mode)
        (cachedInput, cachedProjected, cachedAttended) = (input, projected, attended)
        guard let output else { return attended }
        return try output.layer.forward(attended, mode: mode)
    }

    public func backward(
        _ outputGradient: Tensor, accumulateParameterGradients accumulate: Bool,
        observer: (any BackwardObserver)?, computeInputGradient: Bool, pathPrefix: String
    ) throws -> Tensor {
        guard let input = cachedInput, let projected = cachedProjected, let attended = cachedAttended else {
            throw TensorError.invalidArgument(argument: "\(typeName) backward", reason: "called before forward")
        }
        var gradient = outputGradient
        if let output {
            gradient = try output.layer.observedBackward(
                gradient, input: attended, path: pathPrefix + output.name, accumulateParameterGradients: accumulate, observer: observer)
        }
        gradient = try core.observedBackward(gradient, input: projected, path: pathPrefix + "core", accumulateParameterGradients: accumulate, observer: observer)
        switch projections {
        case .fused(let name, let layer):
            return try layer.observedBackward(
                gradient, input: input, path: pathPrefix + name, accumulateParameterGradients: accumulate, observer: observer,
                computeInputGradient: computeInputGradient)
        case .separate(let query, let key, let value):
            let parts = try Self.splitLastAxis(gradient, parts: 3, into: &gradientPartBuffers)
            var childGradients: [Tensor] = []
            for (index, child) in [query, key, value].enumerated() {
                let g = try child.layer.observedBackward(
                    parts[index], input: input, path: pathPrefix + child.name, accumulateParameterGradients: accumulate,
                    observer: observer, computeInputGradient: computeInputGradient)
                if computeInputGradient { childGradients.append(g) }
            }
            guard let first = childGradients.first else { return Tensor(zeros: [0]) }
            // The children's gradients summed in order, as `addScaled` would (one axpy each), into reused memory.
            for g in childGradients.dropFirst() { try g.checkShape(first.shape, "addScaled") }
            return inputGradientBuffer.make(shape: first.shape) { sum in
                guard let out = sum.baseAddress else { return }
                first.withUnsafeBufferPointer { out.update(from: $0.baseAddress!, count: sum.count) }
                for g in childGradients.dropFirst() {
                    g.withUnsafeBufferPointer { axpy(count: sum.count, alpha: 1, x: $0.baseAddress!, y: out) }
                }
            }
        }
    }

    /// `[..., a] ++ [..., b] ++ ... -> [..., a + b + ...]`, into `buffer`'s reused memory.
    static func concatenateLastAxis(_ tensors: [Tensor], into buffer: inout ReusableTensor) throws(TensorError) -> Tensor {
        let leading = Array(tensors[0].shape.dropLast())
        let widths = tensors.map { $0.shape.last ?? 0 }
        for tensor in tensors { try tensor.checkShape(leading + [tensor.shape.last ?? 0], "concatenating projections") }
        let total = widths.reduce(0, +), rows = leading.reduce(1, *)
        return buffer.make(shape: leading + [total]) { out in
            var column = 0
            for (tensor, width) in zip(tensors, widths) {
                tensor.withUnsafeBufferPointer { x in
                    for row in 0..<rows { (out.baseAddress! + row * total + column).update(from: x.baseAddress! + row * width, count: width) }
                }
                column += width
            }
        }
    }

    /// `[..., parts·w] -> parts × [..., w]`, part `i` into `buffers[i]`'s reused memory.
    static func splitLastAxis(_ tensor: Tensor, parts: Int, into buffers: inout [ReusableTensor]) throws(TensorError) -> [Tensor] {
        let total = tensor.shape.last ?? 0, width = total / parts, rows = tensor.count / max(total, 1)
        guard width * parts == total, total > 0 else {
            throw .shapeMismatch(operation: "splitting the attention input gradient", expected: "last axis divisible by \(parts)", actual: tensor.shape)
        }
        let leading = Array(tensor.shape.dropLast())
        return (0..<parts).map { part in
            buffers[part].make(shape: leading + [width]) { out in
                tensor.withUnsafeBufferPointer { x in
                    for row in 0..<rows { (out.baseAddress! + row * width).update(from: x.baseAddress! + row * total + part * width, count: width) }
                }
            }
        }
    }
}
