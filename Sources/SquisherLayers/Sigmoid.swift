import SquisherTensor

/// The logistic function `1 / (1 + exp(-x))`, element-wise (PyTorch's `nn.Sigmoid`); derivative
/// `s (1 - s)`, computed from the cached output. Any input shape; no overflow for large `|x|`.
public final class Sigmoid: Layer {
    public let typeName = "Sigmoid"
    public var localParameters: [(name: String, parameter: Parameter)] { [] }
    private var cachedOutput: Tensor?

    /// Creates the layer.
    public init() {}

    /// The logistic function in float32, evaluated without overflow on either side.
    @inlinable
    static func logistic(_ x: Float) -> Float {
        if x >= 0 { return 1 / (1 + ScalarMath.exp(-x)) }
        let e = ScalarMath.exp(x)
        return e / (1 + e)
    }

    public func forward(_ input: Tensor, mode: LayerMode) throws(TensorError) -> Tensor {
        let output = input.map(Sigmoid.logistic)
        cachedOutput = output
        return output
    }

    public func backward(_ outputGradient: Tensor, accumulateParameterGradients: Bool) throws(TensorError) -> Tensor {
        guard let output = cachedOutput else { throw .invalidArgument(argument: "Sigmoid backward", reason: "called before forward") }
        return try outputGradient.zipWith(output, "Sigmoid backward (output gradient)") { g, s in g * s * (1 - s) }
    }
}
