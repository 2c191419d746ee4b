import SquisherTensor

/// Flattens every axis but the leading (sample) one, as PyTorch's `nn.Flatten()` (`start_dim=1`):
/// `[N, d1, d2, ...] -> [N, d1 * d2 * ...]` in row-major order (for NCHW: C, then H, then W).
/// The backward reshapes the gradient back; no copy of the scalars is made.
public final class Flatten: Layer, CustomStringConvertible {
    public let typeName = "Flatten"
    public var localParameters: [(name: String, parameter: Parameter)] { [] }
    private var cachedInputShape: [Int]?

    /// Creates the layer.
    public init() {}

    /// `Flatten(start_dim=1, end_dim=-1)`, PyTorch's repr; names the layer in errors.
    public var description: String { "Flatten(start_dim=1, end_dim=-1)" }

    public func forward(_ input: Tensor, mode: LayerMode) throws(TensorError) -> Tensor {
        guard input.rank >= 2 else {
            throw .shapeMismatch(operation: "\(description) forward", expected: "input [N, d1, ...] of rank >= 2", actual: input.shape)
        }
        cachedInputShape = input.shape
        return try input.reshaped([input.shape[0], input.shape.dropFirst().reduce(1, *)])
    }

    public func backward(_ outputGradient: Tensor, accumulateParameterGradients: Bool) throws(TensorError) -> Tensor {
        guard let shape = cachedInputShape else {
            throw .invalidArgument(argument: "\(description) backward", reason: "called before forward")
        }
        try outputGradient.checkShape([shape[0], shape.dropFirst().reduce(1, *)], "\(description) backward (output gradient)")
        return try outputGradient.reshaped(shape)
    }
}
