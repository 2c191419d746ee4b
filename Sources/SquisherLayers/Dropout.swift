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
        var multipliers = Tensor(zeros: input.shape)
        multipliers.withUnsafeMutableBufferPointer { m in
            for i in m.indices { m[i] = generator.nextUniformFloat() >= probability ? keepScale : 0 }
        }
        mask = multipliers
        return try input * multipliers
    }

    public func backward(_ outputGradient: Tensor, accumulateParameterGradients: Bool) throws(TensorError) -> Tensor {
        guard let shape = lastInputShape else {
            throw .invalidArgument(argument: "\(description) backward", reason: "called before forward")
        }
        try outputGradient.checkShape(shape, "\(description) backward (output gradient)")
        guard let mask else { return outputGradient }
        return try outputGradient * mask
    }
}
