import SquisherTensor

/// The rectifier `max(0, x)`, element-wise (PyTorch's `nn.ReLU`); the derivative at 0 is taken as 0.
/// A NaN input stays NaN (as PyTorch), so a diverged model is not silently masked; its gradient is 0.
public final class ReLU: Layer {
    public let typeName = "ReLU"
    public var localParameters: [(name: String, parameter: Parameter)] { [] }
    private var cachedInput: Tensor?

    /// Creates the layer.
    public init() {}

    public func forward(_ input: Tensor, mode: LayerMode) throws(TensorError) -> Tensor {
        cachedInput = input
        return input.map { $0 > 0 || $0.isNaN ? $0 : 0 }
    }

    public func backward(_ outputGradient: Tensor, accumulateParameterGradients: Bool) throws(TensorError) -> Tensor {
        guard let input = cachedInput else { throw .invalidArgument(argument: "ReLU backward", reason: "called before forward") }
        return try outputGradient.zipWith(input, "ReLU backward (output gradient)") { g, x in x > 0 ? g : 0 }
    }
}
