import SquisherTensor

/// The Gaussian error linear unit, element-wise, as PyTorch's `nn.GELU(approximate=...)`:
///
/// - `.none` (PyTorch's default): `gelu(x) = x Φ(x) = 0.5 x (1 + erf(x / √2))`,
///   derivative `Φ(x) + x φ(x)` with `φ(x) = exp(-x²/2) / √(2π)`.
/// - `.tanh`: `0.5 x (1 + tanh(u))`, `u = √(2/π) (x + 0.044715 x³)`, derivative
///   `0.5 (1 + tanh u) + 0.5 x (1 - tanh² u) √(2/π) (1 + 3 · 0.044715 x²)`.
///
/// Any input shape. Evaluated 16 lanes at a time (``VectorMath``: `Φ` from a Chebyshev `erfc` fit
/// with fractional error below 1.2e-7, the tanh form as `x · sigmoid(2u)`, both accurate in relative
/// terms in the negative tail), the elements split over ``GEMMConfiguration/maximumThreads`` threads.
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
        let approximate = approximate
        return Tensor(uninitializedShape: input.shape) { out in
            input.withUnsafeBufferPointer { x in
                let (source, destination) = (SendablePointer(x.baseAddress!), SendablePointer(out.baseAddress!))
                parallelChunks(count: x.count) { start, end in
                    let (x, y) = (source.pointer + start, destination.pointer + start)
                    switch approximate {
                    case .none: VectorMath.map(count: end - start, x, y) { x in x * VectorMath.normalCDF(x) }
                    case .tanh: VectorMath.map(count: end - start, x, y) { x in x * VectorMath.sigmoid(2 * GELU.tanhArgument(x)) }
                    }
                }
            }
        }
    }

    /// `u = √(2/π) (x + 0.044715 x³)`, so that `0.5 (1 + tanh u) = sigmoid(2u)`.
    @inline(__always)
    static func tanhArgument(_ x: VectorMath.Vector) -> VectorMath.Vector {
        squareRoot2OverPi * ((cubicCoefficient * x * x) * x + x)
    }

    public func backward(_ outputGradient: Tensor, accumulateParameterGradients: Bool) throws(TensorError) -> Tensor {
        guard let input = cachedInput else { throw .invalidArgument(argument: "\(description) backward", reason: "called before forward") }
        try outputGradient.checkShape(input.shape, "\(description) backward (output gradient)")
        let approximate = approximate
        return Tensor(uninitializedShape: input.shape) { out in
            input.withUnsafeBufferPointer { x in
                outputGradient.withUnsafeBufferPointer { g in
                    let (inputs, gradients, destination) = (SendablePointer(x.baseAddress!), SendablePointer(g.baseAddress!), SendablePointer(out.baseAddress!))
                    parallelChunks(count: x.count) { start, end in
                        let (g, x, y) = (gradients.pointer + start, inputs.pointer + start, destination.pointer + start)
                        switch approximate {
                        case .none:
                            // Φ(x) + x φ(x)
                            VectorMath.map2(count: end - start, g, x, y) { g, x in
                                let pdf = GELU.inverseSquareRoot2Pi * VectorMath.exp(-0.5 * x * x)
                                return g * (x * pdf + VectorMath.normalCDF(x))
                            }
                        case .tanh:
                            // with s = sigmoid(2u) = 0.5 (1 + tanh u): s + 2 x s (1 - s) du/dx
                            VectorMath.map2(count: end - start, g, x, y) { g, x in
                                let s = VectorMath.sigmoid(2 * GELU.tanhArgument(x))
                                let du = GELU.squareRoot2OverPi * ((3 * GELU.cubicCoefficient) * x * x + 1)
                                return g * ((2 * x * s * (1 - s)) * du + s)
                            }
                        }
                    }
                }
            }
        }
    }
}
