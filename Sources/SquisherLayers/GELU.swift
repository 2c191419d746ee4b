import CSquisherKernels
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
/// terms in the negative tail; the same formulas in one AVX-512 register with fused multiply-adds on
/// CPUs that have it, ``kernelISALevel``), the elements split over ``GEMMConfiguration/maximumThreads`` threads.
/// The forward keeps `gelu'(x)` (one tensor of the input's size), so each backward is one product. Outputs,
/// derivatives and input gradients reuse the memory of earlier passes once nothing else holds it.
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
    /// The input shape and `gelu'(x)` of the last forward.
    private var cached: (shape: [Int], derivative: Tensor)?
    /// Memory of the outputs, derivatives and input gradients, reused across passes (``ReusableTensor``;
    /// two slots for the output, which the next layer keeps as its input until its own next forward).
    private var outputBuffer = ReusableTensor(slots: 2), derivativeBuffer = ReusableTensor(), gradientBuffer = ReusableTensor()

    /// Instruction-set level of the forward's kernel: 3 (the default where the CPU has AVX-512F) runs the
    /// C kernel `csq_gelu_avx512`, lower levels the portable Swift lanes (0 = portable, as
    /// ``GEMMConfiguration/isaLevel``). Lowering it is for tests and benchmarks; the two agree to a few ulp.
    public var kernelISALevel: Int = GEMMKernelInfo.cpuISALevel

    /// Creates the layer; the default is the exact form, as PyTorch.
    public init(approximate: Approximation = .none) { self.approximate = approximate }

    /// `GELU(approximate='none')`, PyTorch's repr.
    public var description: String { "GELU(approximate='\(approximate.rawValue)')" }

    static let inverseSquareRoot2: Float = 0.70710678118654752
    static let inverseSquareRoot2Pi: Float = 0.39894228040143268
    static let squareRoot2OverPi: Float = 0.79788456080286536
    static let cubicCoefficient: Float = 0.044715

    public func forward(_ input: Tensor, mode: LayerMode) throws(TensorError) -> Tensor {
        guard input.count > 0 else {
            cached = (input.shape, input)
            return input
        }
        let approximate = approximate
        let vectorKernel = VectorMath.usesAVX512Kernels(level: kernelISALevel)
        var derivative = Tensor(zeros: [0])
        cached = nil  // the last derivative's memory can then be reused
        let output = outputBuffer.make(shape: input.shape) { out in
            derivative = derivativeBuffer.make(shape: input.shape) { slope in
                input.withUnsafeBufferPointer { x in
                    let (source, values, slopes) = (SendablePointer(x.baseAddress!), SendablePointer(out.baseAddress!), SendablePointer(slope.baseAddress!))
                    parallelChunks(count: x.count) { start, end in
                        let (x, y, dy) = (source.pointer + start, values.pointer + start, slopes.pointer + start)
                        if vectorKernel {
                            csq_gelu_avx512(end - start, x, y, dy, approximate == .tanh ? 1 : 0)
                            return
                        }
                        switch approximate {
                        case .none: VectorMath.mapWithDerivative(count: end - start, x, y, dy, GELU.exact)
                        case .tanh: VectorMath.mapWithDerivative(count: end - start, x, y, dy, GELU.tanhForm)
                        }
                    }
                }
            }
        }
        cached = (input.shape, derivative)
        return output
    }

    /// `(x Φ(x), Φ(x) + x φ(x))`.
    @inline(__always)
    static func exact(_ x: VectorMath.Vector) -> (VectorMath.Vector, VectorMath.Vector) {
        let cdf = VectorMath.normalCDF(x), pdf = inverseSquareRoot2Pi * VectorMath.exp(-0.5 * x * x)
        return (x * cdf, x * pdf + cdf)
    }

    /// With `u = √(2/π) (x + 0.044715 x³)` and `s = sigmoid(2u) = 0.5 (1 + tanh u)`:
    /// `(x s, s + 2 x s (1 − s) du/dx)`.
    @inline(__always)
    static func tanhForm(_ x: VectorMath.Vector) -> (VectorMath.Vector, VectorMath.Vector) {
        let u = squareRoot2OverPi * ((cubicCoefficient * x * x) * x + x)
        let s = VectorMath.sigmoid(2 * u)
        let du = squareRoot2OverPi * ((3 * cubicCoefficient) * x * x + 1)
        return (x * s, (2 * x * s * (1 - s)) * du + s)
    }

    /// `outputGradient ⊙ gelu'(x)`, the derivative kept from the forward (the true Fisher runs many
    /// backward passes after one forward).
    public func backward(_ outputGradient: Tensor, accumulateParameterGradients: Bool) throws(TensorError) -> Tensor {
        guard let (shape, derivative) = cached else { throw .invalidArgument(argument: "\(description) backward", reason: "called before forward") }
        try outputGradient.checkShape(shape, "\(description) backward (output gradient)")
        guard derivative.count > 0 else { return outputGradient }
        return gradientBuffer.make(shape: shape) { out in
            derivative.withUnsafeBufferPointer { d in
                outputGradient.withUnsafeBufferPointer { g in
                    let (slopes, gradients, destination) = (SendablePointer(d.baseAddress!), SendablePointer(g.baseAddress!), SendablePointer(out.baseAddress!))
                    parallelChunks(count: d.count) { start, end in
                        VectorMath.map2(count: end - start, gradients.pointer + start, slopes.pointer + start, destination.pointer + start) { g, d in g * d }
                    }
                }
            }
        }
    }
}
