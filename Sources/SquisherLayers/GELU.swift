import SquisherTensor

/// The Gaussian error linear unit, element-wise, as PyTorch's `nn.GELU(approximate=...)`:
///
/// - `.none` (PyTorch's default): `gelu(x) = x Φ(x) = 0.5 x (1 + erf(x / √2))`,
///   derivative `Φ(x) + x φ(x)` with `φ(x) = exp(-x²/2) / √(2π)`.
/// - `.tanh`: `0.5 x (1 + tanh(u))`, `u = √(2/π) (x + 0.044715 x³)`, derivative
///   `0.5 (1 + tanh u) + 0.5 x (1 - tanh² u) √(2/π) (1 + 3 · 0.044715 x²)`.
///
/// Any input shape.
public final class GELU: Layer, CustomStringConvertible {
    /// Which formula to evaluate (PyTorch's `approximate` argument).
    public enum Approximation: String, Sendable, Hashable {
        /// The exact erf form (`approximate='none'`).
        case none
        /// The tanh approximation (`approximate='tanh'`).
        case tanh
    }

    public let typeName = "GELU"
    /// The formula in use.
    public let approximate: Approximation
    public var localParameters: [(name: String, parameter: Parameter)] { [] }
    private var cachedInput: Tensor?

    /// Creates the layer; the default is the exact form, as PyTorch.
    public init(approximate: Approximation = .none) { self.approximate = approximate }

    /// `GELU(approximate='none')`, PyTorch's repr.
    public var description: String { "GELU(approximate='\(approximate.rawValue)')" }

    static let inverseSquareRoot2: Float = 0.70710678118654752
    static let inverseSquareRoot2Pi: Float = 0.39894228040143268
    static let squareRoot2OverPi: Float = 0.79788456080286536
    static let cubicCoefficient: Float = 0.044715

    public func forward(_ input: Tensor, mode: LayerMode) throws(TensorError) -> Tensor {
        cachedInput = input
        switch approximate {
        case .none:
            return input.map { x in 0.5 * x * (1 + ScalarMath.erf(x * GELU.inverseSquareRoot2)) }
        case .tanh:
            return input.map { x in
                let u = GELU.squareRoot2OverPi * (x + GELU.cubicCoefficient * x * x * x)
                return 0.5 * x * (1 + ScalarMath.tanh(u))
            }
        }
    }

    public func backward(_ outputGradient: Tensor, accumulateParameterGradients: Bool) throws(TensorError) -> Tensor {
        guard let input = cachedInput else { throw .invalidArgument(argument: "\(description) backward", reason: "called before forward") }
        switch approximate {
        case .none:
            return try outputGradient.zipWith(input, "\(description) backward (output gradient)") { g, x in
                let cdf = 0.5 * (1 + ScalarMath.erf(x * GELU.inverseSquareRoot2))
                let pdf = GELU.inverseSquareRoot2Pi * ScalarMath.exp(-0.5 * x * x)
                return g * (cdf + x * pdf)
            }
        case .tanh:
            return try outputGradient.zipWith(input, "\(description) backward (output gradient)") { g, x in
                let u = GELU.squareRoot2OverPi * (x + GELU.cubicCoefficient * x * x * x)
                let t = ScalarMath.tanh(u)
                let du = GELU.squareRoot2OverPi * (1 + 3 * GELU.cubicCoefficient * x * x)
                return g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * du)
            }
        }
    }
}
