import SquisherTensor

/// BERT's pooler: the first token's hidden state through a dense layer and tanh,
/// `y_n = tanh(W h_n[0] + b)`. Input `[N, T, D]`, output `[N, D']`.
///
/// Child `"dense"` (a ``Linear``, Hugging Face's `pooler.dense`) and the parameterless
/// `"activation"`. Backward puts the gradient at position 0 and zeros elsewhere, into the last
/// backward's memory once the caller has let go of it (``ReusableTensor``, one slot).
public final class FirstTokenPooler: ObservedLayerContainer {
    public let typeName = "FirstTokenPooler"
    /// The dense layer `D -> D'`.
    public let dense: Linear
    /// The tanh.
    public let activation = Tanh()
    public var localParameters: [(name: String, parameter: Parameter)] { [] }
    public var children: [(name: String, layer: any Layer)] { [("dense", dense), ("activation", activation)] }
    private var cache: (shape: [Int], first: Tensor, dense: Tensor)?
    /// Memory of the input gradients `[N, T, D]`, reused across passes (one slot).
    private var gradientBuffer = ReusableTensor()

    /// Wraps `dense`.
    public init(dense: Linear) { self.dense = dense }

    public func forward(_ input: Tensor, mode: LayerMode) throws(TensorError) -> Tensor {
        guard input.rank == 3, input.shape[1] >= 1 else {
            throw .shapeMismatch(operation: "\(typeName) forward", expected: "hidden states [N, T >= 1, D]", actual: input.shape)
        }
        let (n, t, d) = (input.shape[0], input.shape[1], input.shape[2])
        let first = Tensor(uninitializedShape: [n, d]) { out in
            input.withUnsafeBufferPointer { x in
                for sample in 0..<n { (out.baseAddress! + sample * d).update(from: x.baseAddress! + sample * t * d, count: d) }
            }
        }
        let projected = try dense.forward(first, mode: mode)
        cache = (input.shape, first, projected)
        return try activation.forward(projected, mode: mode)
    }

    public func backward(
        _ outputGradient: Tensor, accumulateParameterGradients accumulate: Bool,
        observer: (any BackwardObserver)?, computeInputGradient: Bool, pathPrefix: String
    ) throws -> Tensor {
        guard let cache else { throw TensorError.invalidArgument(argument: "\(typeName) backward", reason: "called before forward") }
        let dProjected = try activation.observedBackward(outputGradient, input: cache.dense, path: pathPrefix + "activation", accumulateParameterGradients: accumulate, observer: observer)
        let dFirst = try dense.observedBackward(
            dProjected, input: cache.first, path: pathPrefix + "dense", accumulateParameterGradients: accumulate, observer: observer,
            computeInputGradient: computeInputGradient)
        guard computeInputGradient else { return Tensor(zeros: [0]) }
        let (n, t, d) = (cache.shape[0], cache.shape[1], cache.shape[2])
        return gradientBuffer.make(shape: cache.shape) { dx in
            guard let base = dx.baseAddress else { return }
            dx.update(repeating: 0)
            dFirst.withUnsafeBufferPointer { g in
                for sample in 0..<n { (base + sample * t * d).update(from: g.baseAddress! + sample * d, count: d) }
            }
        }
    }
}
