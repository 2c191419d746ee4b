import SquisherTensor

/// A lookup table of learned vectors, as PyTorch's `nn.Embedding(num_embeddings, embedding_dim)`:
/// `y[n, ..., :] = weight[id[n, ...], :]`.
///
/// - Input: a float tensor `[N, ...]` of integer ids in `0..<numEmbeddings` (ids travel as floats
///   because every tensor here is float32; ids up to 2^24 are exact). Output `[N, ..., embeddingDim]`.
/// - `weight`: `[numEmbeddings, embeddingDim]`, initialized N(0, 1) as PyTorch.
/// - Backward: `dweight[k] += sum over positions with id k of dy` (repeated ids accumulate);
///   the returned input gradient is zeros of the input's shape (ids are not differentiable).
/// - The output is written into the memory of an earlier forward's once nothing else holds it
///   (``ReusableTensor``, two slots: a next layer that keeps its input holds the last one until its
///   own next forward); a tensor the caller still holds is never written.
public final class Embedding: Layer, CustomStringConvertible {
    public let typeName = "Embedding"
    /// Rows of the table (the id range).
    public let numEmbeddings: Int
    /// Length of each vector.
    public let embeddingDim: Int
    /// The table, `[numEmbeddings, embeddingDim]`.
    public let weight: Parameter
    /// As PyTorch's `padding_idx`: positions holding this id add nothing to the weight gradient
    /// (and so nothing to any Fisher of the row), as BERT's pad token. nil: every id learns.
    public var paddingIndex: Int?

    private var cachedInputShape: [Int]?
    private var cachedIDs: [Int] = []
    /// Memory of the outputs, reused across passes (two slots).
    private var outputBuffer = ReusableTensor(slots: 2)

    /// Creates the table with N(0, 1) entries drawn from `generator` in row-major order.
    /// - Throws: ``TensorError/invalidArgument(argument:reason:)`` unless both sizes are positive.
    public init(numEmbeddings: Int, embeddingDim: Int, generator: inout SplitMix64) throws(TensorError) {
        guard numEmbeddings > 0, embeddingDim > 0 else {
            throw .invalidArgument(argument: "Embedding(\(numEmbeddings), \(embeddingDim))", reason: "sizes must be positive")
        }
        self.numEmbeddings = numEmbeddings
        self.embeddingDim = embeddingDim
        weight = Parameter(.normal(shape: [numEmbeddings, embeddingDim], using: &generator))
    }

    /// `Embedding(10, 4)`, PyTorch's repr; names the layer in errors.
    public var description: String { "Embedding(\(numEmbeddings), \(embeddingDim))" }

    public var localParameters: [(name: String, parameter: Parameter)] { [("weight", weight)] }

    /// Converts the float ids to integers.
    /// - Throws: ``TensorError/invalidArgument(argument:reason:)`` naming the first id that is not an
    ///   integer in `0..<numEmbeddings`, with its position.
    public func ids(_ input: Tensor) throws(TensorError) -> [Int] {
        guard input.rank >= 1 else {
            throw .shapeMismatch(operation: "\(description) forward", expected: "ids [N, ...] of rank >= 1", actual: input.shape)
        }
        var ids = [Int](repeating: 0, count: input.count)
        for (index, value) in input.scalars.enumerated() {
            guard value.isFinite, value.rounded() == value, value >= 0, value < Float(numEmbeddings) else {
                throw .invalidArgument(
                    argument: "\(description) id \(value) at flat index \(index) of input \(input.shape)",
                    reason: "expected an integer in 0..<\(numEmbeddings)")
            }
            ids[index] = Int(value)
        }
        return ids
    }

    public func forward(_ input: Tensor, mode: LayerMode) throws(TensorError) -> Tensor {
        let ids = try ids(input)
        let d = embeddingDim
        // Every row is copied from the table (one per id), so nothing else needs writing.
        let output = outputBuffer.make(shape: input.shape + [d]) { y in
            weight.value.withUnsafeBufferPointer { w in
                for (position, id) in ids.enumerated() {
                    (y.baseAddress! + position * d).update(from: w.baseAddress! + id * d, count: d)
                }
            }
        }
        cachedInputShape = input.shape
        cachedIDs = ids
        return output
    }

    public func backward(_ outputGradient: Tensor, accumulateParameterGradients: Bool) throws(TensorError) -> Tensor {
        guard let shape = cachedInputShape else {
            throw .invalidArgument(argument: "\(description) backward", reason: "called before forward")
        }
        try outputGradient.checkShape(shape + [embeddingDim], "\(description) backward (output gradient)")
        if accumulateParameterGradients, weight.requiresGradient {
            let d = embeddingDim
            outputGradient.withUnsafeBufferPointer { dy in
                weight.gradient.withUnsafeMutableBufferPointer { dw in
                    cachedIDs.withUnsafeBufferPointer { ids in
                        for (position, id) in ids.enumerated() where id != paddingIndex {
                            axpy(count: d, alpha: 1, x: dy.baseAddress! + position * d, y: dw.baseAddress! + id * d)
                        }
                    }
                }
            }
        }
        return Tensor(zeros: shape)
    }
}
