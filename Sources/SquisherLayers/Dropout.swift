import SquisherTensor

/// Inverted dropout, as PyTorch's `nn.Dropout(p)`: in training mode each element is zeroed with
/// probability `p` and the survivors are scaled by `1/(1-p)`, so the expectation is unchanged;
/// in evaluation mode the layer is the identity.
///
/// The layer owns its random stream (a ``SplitMix64`` forked from the generator passed at
/// creation), so a model built from one seed drops the same elements bit for bit on every run.
/// Element `i` is kept when the `i`-th uniform draw (row-major, ``SplitMix64/nextUniformFloat()``)
/// is `>= p`. Each training forward draws a fresh mask; backward reuses the cached mask
/// (`dx = dy * mask / (1 - p)`), so it is repeatable. With `p = 1` everything is zeroed.
///
/// In training mode the mask, the output and the input gradient are written into the memory of earlier
/// passes once nothing else holds it (``ReusableTensor``): the mask with one slot (only this layer keeps
/// it, unless the caller holds it from ``mask``; a training forward lets go of the last one first), the
/// output with two (the next layer keeps the last one as its input until its own next forward), the
/// gradient with one. A tensor the caller still holds is never written.
public final class Dropout: Layer, CustomStringConvertible {
    public let typeName = "Dropout"
    /// The probability of zeroing an element, in `[0, 1]`.
    public let probability: Float
    /// The layer's own random stream (advances on every training forward).
    public var generator: SplitMix64
    public var localParameters: [(name: String, parameter: Parameter)] { [] }

    /// The multipliers of the last forward (`0` or `1/(1-p)` per element; nil after an evaluation forward).
    public private(set) var mask: Tensor?
    private var lastInputShape: [Int]?
    /// Memory of the masks (one slot), outputs (two slots) and input gradients (one slot), reused across passes.
    private var maskBuffer = ReusableTensor(), outputBuffer = ReusableTensor(slots: 2), gradientBuffer = ReusableTensor()

    /// Creates the layer, forking its random stream from `generator`.
    /// - Throws: ``TensorError/invalidArgument(argument:reason:)`` unless `0 <= probability <= 1`.
    public init(probability: Float = 0.5, generator: inout SplitMix64) throws(TensorError) {
        guard probability >= 0, probability <= 1 else {
            throw .invalidArgument(argument: "Dropout(p=\(probability))", reason: "the probability must be in [0, 1]")
        }
        self.probability = probability
        self.generator = generator.fork()
    }

    /// `Dropout(p=0.5, inplace=False)`, PyTorch's repr; names the layer in errors.
    public var description: String { "Dropout(p=\(probability), inplace=False)" }

    public func forward(_ input: Tensor, mode: LayerMode) throws(TensorError) -> Tensor {
        lastInputShape = input.shape
        guard mode == .training, probability > 0 else {
            mask = nil
            return input
        }
        let keepScale: Float = probability < 1 ? 1 / (1 - probability) : 0
        mask = nil  // only this layer holds the last mask: its memory can then be reused
        let multipliers = maskBuffer.make(shape: input.shape) { m in
            for i in m.indices { m[i] = generator.nextUniformFloat() >= probability ? keepScale : 0 }
        }
        mask = multipliers
        return try outputBuffer.product(input, multipliers)
    }

    public func backward(_ outputGradient: Tensor, accumulateParameterGradients: Bool) throws(TensorError) -> Tensor {
        guard let shape = lastInputShape else {
            throw .invalidArgument(argument: "\(description) backward", reason: "called before forward")
        }
        try outputGradient.checkShape(shape, "\(description) backward (output gradient)")
        guard let mask else { return outputGradient }
        return try gradientBuffer.product(outputGradient, mask)
    }
}
