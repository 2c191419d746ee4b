import SquisherTensor

/// Token and position embeddings of a sequence model: `y[n, t] = E_tok[id[n, t]] + E_pos[t]`
/// (+ `E_type[type[n, t]]` when a token-type table is given), then an optional ``LayerNorm``:
/// GPT-2's `wte + wpe`, BERT's `embeddings` (word, position, token type, LayerNorm).
///
/// - Input: token ids `[N, T]` as floats (integers in `0..<vocabulary`); positions are `0..<T`
///   (`T` at most the position table's rows). Output `[N, T, D]`.
/// - ``tokenTypeIDs`` `[N, T]` apply to the next forward (nil: all type 0).
/// - Children are the tables (each an ``Embedding``, observed with its own ids, so the per-sample
///   rule sums a sample's rows over the positions where they occur) and the norm, under free names
///   (`"wte"`, `"wpe"`; `"word_embeddings"`, `"position_embeddings"`, `"token_type_embeddings"`, `"LayerNorm"`).
/// The ids are data: the input gradient is zeros. The sum of the tables' rows is written into the
/// memory of an earlier forward's once nothing else holds it (``ReusableTensor``, two slots: the norm,
/// or the first block, keeps the last one as its input until its own next forward); a forward lets go
/// of the last pass's cache first.
public final class SequenceEmbedding: ObservedLayerContainer {
    public let typeName = "SequenceEmbedding"
    /// The token table `[vocabulary, D]`.
    public let token: (name: String, layer: Embedding)
    /// The position table `[maximum positions, D]`.
    public let position: (name: String, layer: Embedding)
    /// The token-type table `[types, D]` (BERT), or nil.
    public let tokenType: (name: String, layer: Embedding)?
    /// The normalization after the sum (BERT), or nil.
    public let norm: (name: String, layer: LayerNorm)?
    /// Token types `[N, T]` for the next forward (nil: zeros).
    public var tokenTypeIDs: Tensor?
    public var localParameters: [(name: String, parameter: Parameter)] { [] }
    private var cache: (ids: Tensor, positions: Tensor, types: Tensor?, sum: Tensor)?
    /// Memory of the sums, reused across passes (two slots).
    private var sumBuffer = ReusableTensor(slots: 2)

    /// Creates the embeddings.
    /// - Throws: ``TensorError/invalidArgument(argument:reason:)`` unless the tables share one width.
    public init(
        token: (name: String, layer: Embedding), position: (name: String, layer: Embedding),
        tokenType: (name: String, layer: Embedding)? = nil, norm: (name: String, layer: LayerNorm)? = nil
    ) throws(TensorError) {
        let widths = [token.layer.embeddingDim, position.layer.embeddingDim] + (tokenType.map { [$0.layer.embeddingDim] } ?? [])
        guard Set(widths).count == 1 else {
            throw .invalidArgument(argument: "SequenceEmbedding table widths \(widths)", reason: "token, position and type tables must have one width")
        }
        self.token = token
        self.position = position
        self.tokenType = tokenType
        self.norm = norm
    }

    public var children: [(name: String, layer: any Layer)] {
        var result: [(name: String, layer: any Layer)] = [(token.name, token.layer), (position.name, position.layer)]
        if let tokenType { result.append((tokenType.name, tokenType.layer)) }
        if let norm { result.append((norm.name, norm.layer)) }
        return result
    }

    public func forward(_ input: Tensor, mode: LayerMode) throws(TensorError) -> Tensor {
        guard input.rank == 2 else { throw .shapeMismatch(operation: "\(typeName) forward", expected: "token ids [N, T]", actual: input.shape) }
        let (n, t) = (input.shape[0], input.shape[1])
        guard t <= position.layer.numEmbeddings else {
            throw .invalidArgument(argument: "\(typeName) sequence length \(t)", reason: "the position table '\(position.name)' has \(position.layer.numEmbeddings) rows")
        }
        cache = nil  // the last sum can then be reused
        let positions = Tensor(uninitializedShape: [n, t]) { p in
            for sample in 0..<n { for step in 0..<t { p[sample * t + step] = Float(step) } }
        }
        let (tokens, places) = (try token.layer.forward(input, mode: mode), try position.layer.forward(positions, mode: mode))
        var types: Tensor?, typeRows: Tensor?
        if let tokenType {
            let ids = tokenTypeIDs ?? Tensor(zeros: [n, t])
            try ids.checkShape([n, t], "\(typeName) token type ids (one per token)")
            typeRows = try tokenType.layer.forward(ids, mode: mode)
            types = ids
        }
        // tokens + positions, then + types as `addScaled` (one axpy), into reused memory.
        try places.checkShape(tokens.shape, "+")
        if let typeRows { try typeRows.checkShape(tokens.shape, "addScaled") }
        let sum = sumBuffer.make(shape: tokens.shape) { out in
            tokens.withUnsafeBufferPointer { a in
                places.withUnsafeBufferPointer { b in
                    for i in 0..<out.count { out[i] = a[i] + b[i] }
                }
            }
            guard let typeRows, let y = out.baseAddress else { return }
            typeRows.withUnsafeBufferPointer { axpy(count: out.count, alpha: 1, x: $0.baseAddress!, y: y) }
        }
        cache = (input, positions, types, sum)
        guard let norm else { return sum }
        return try norm.layer.forward(sum, mode: mode)
    }

    public func backward(
        _ outputGradient: Tensor, accumulateParameterGradients accumulate: Bool,
        observer: (any BackwardObserver)?, computeInputGradient: Bool, pathPrefix: String
    ) throws -> Tensor {
        guard let cache else { throw TensorError.invalidArgument(argument: "\(typeName) backward", reason: "called before forward") }
        var gradient = outputGradient
        if let norm {
            gradient = try norm.layer.observedBackward(gradient, input: cache.sum, path: pathPrefix + norm.name, accumulateParameterGradients: accumulate, observer: observer)
        }
        var tables: [(String, Embedding, Tensor)] = [(token.name, token.layer, cache.ids), (position.name, position.layer, cache.positions)]
        if let tokenType, let types = cache.types { tables.append((tokenType.name, tokenType.layer, types)) }
        for (name, table, ids) in tables {
            _ = try table.observedBackward(gradient, input: ids, path: pathPrefix + name, accumulateParameterGradients: accumulate, observer: observer, computeInputGradient: false)
        }
        return computeInputGradient ? Tensor(zeros: cache.ids.shape) : Tensor(zeros: [0])
    }
}
