import SquisherTensor

/// The hyperbolic tangent, element-wise (PyTorch's `nn.Tanh`); derivative `1 - tanh(x)^2`,
/// computed from the cached output. Any input shape.
public final class Tanh: Layer {
    public let typeName = "Tanh"
    public var localParameters: [(name: String, parameter: Parameter)] { [] }
    private var cachedOutput: Tensor?

    /// Creates the layer.
    public init() {}

    public func forward(_ input: Tensor, mode: LayerMode) throws(TensorError) -> Tensor {
        let output = input.map { ScalarMath.tanh($0) }
        cachedOutput = output
        return output
    }

    public func backward(_ outputGradient: Tensor, accumulateParameterGradients: Bool) throws(TensorError) -> Tensor {
        guard let output = cachedOutput else { throw .invalidArgument(argument: "Tanh backward", reason: "called before forward") }
        return try outputGradient.zipWith(output, "Tanh backward (output gradient)") { g, y in g * (1 - y * y) }
    }
}
