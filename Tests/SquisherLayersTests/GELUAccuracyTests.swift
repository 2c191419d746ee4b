import Foundation
import SquisherLayers
import SquisherTensor
import Testing

/// GELU is evaluated 16 lanes at a time with polynomial `exp` and `erfc` (no libm per element);
/// these tests pin its accuracy against the Double formulas over the whole useful range,
/// including the negative tail where `1 + erf` and `1 + tanh` cancel.
@Suite("GELU: vectorized evaluation against Double formulas")
struct GELUAccuracyTests {
    /// 3,601 inputs in [-9, 9] (step 0.005) plus a tail of 7 lanes that are not a multiple of 16.
    static let inputs: [Float] = (0...3600).map { Float(-9 + 0.005 * Double($0)) } + [0.01, -0.02, 0.5, -0.75, 1e-3, -4, 4]

    static func geluExact(_ x: Double) -> (value: Double, derivative: Double) {
        let cdf = 0.5 * erfc(-x / 2.0.squareRoot())
        return (x * cdf, cdf + x * Foundation.exp(-0.5 * x * x) / (2 * Double.pi).squareRoot())
    }

    static func geluTanh(_ x: Double) -> (value: Double, derivative: Double) {
        let c = (2 / Double.pi).squareRoot(), u = c * (x + 0.044715 * x * x * x)
        // 0.5 (1 + tanh u) = 1 / (1 + e^{-2u}), written without cancellation for the reference too.
        let s = 1 / (1 + Foundation.exp(-2 * u))
        return (x * s, s + 2 * x * s * (1 - s) * c * (1 + 3 * 0.044715 * x * x))
    }

    /// Every formula at every kernel level this CPU runs: the AVX-512 C kernel (3, where available) and
    /// the portable Swift lanes (0).
    static let cases: [(GELU.Approximation, Int)] = [GELU.Approximation.none, .tanh].flatMap { form in
        elementwiseKernelLevels.map { (form, $0) }
    }

    @Test("forward and backward within 1e-5 relative over [-9, 9]", arguments: cases)
    func accuracy(_ approximation: GELU.Approximation, level: Int) throws {
        let layer = GELU(approximate: approximation)
        layer.kernelISALevel = level
        let input = try Tensor(shape: [1, Self.inputs.count], scalars: Self.inputs)
        let output = try layer.forward(input, mode: .training)
        let gradient = try layer.backward(Tensor(repeating: 1, shape: input.shape), accumulateParameterGradients: false)
        var worst = (value: 0.0, at: Float(0)), worstDerivative = (value: 0.0, at: Float(0))
        for (index, x) in Self.inputs.enumerated() {
            let reference = approximation == .none ? Self.geluExact(Double(x)) : Self.geluTanh(Double(x))
            // Relative error of the value: Chebyshev erfc (1.2e-7) and Cephes exp (2 ulp), plus the float
            // rounding of exp's argument, which the result inherits: -x²/2 is up to 40.5 (erf form) and -2u
            // up to 66 (tanh form) at x = -9, so 66 × 6e-8 ≈ 4e-6 at worst. 1e-5 is that bound with margin;
            // a wrong coefficient or a lost tail (1 + erf computed by cancellation) is off by orders more.
            let valueError = abs(Double(output.scalars[index]) - reference.value) / max(abs(reference.value), 1e-37)
            // The derivative Φ + xφ crosses 0 near x = -0.75 (cancellation): a small absolute floor there.
            let derivativeError = abs(Double(gradient.scalars[index]) - reference.derivative) / (abs(reference.derivative) + 0.05)
            if valueError > worst.value { worst = (valueError, x) }
            if derivativeError > worstDerivative.value { worstDerivative = (derivativeError, x) }
        }
        #expect(worst.value < 1e-5, "level \(level): worst forward relative error \(worst.value) at x = \(worst.at)")
        #expect(worstDerivative.value < 1e-5, "level \(level): worst backward error \(worstDerivative.value) at x = \(worstDerivative.at)")
    }

    @Test("saturation: no NaN or infinity for huge inputs; exact limits x and 0")
    func saturation() throws {
        let input = try Tensor(shape: [1, 4], scalars: [-1e4, -100, 100, 1e4])
        for (approximation, level) in Self.cases {
            let layer = GELU(approximate: approximation)
            layer.kernelISALevel = level
            let output = try layer.forward(input, mode: .training)
            #expect(output.isFinite)
            #expect(output.scalars[2] == 100 && output.scalars[3] == 1e4, "\(approximation): gelu(x) = x for large x")
            #expect(output.scalars[0] == 0 && output.scalars[1] == 0, "\(approximation): gelu(x) = 0 in float32 for x ≤ -100")
            let gradient = try layer.backward(Tensor(repeating: 1, shape: input.shape), accumulateParameterGradients: false)
            // Exactly 0 at -1e4: exp underflows to 0 there (never to a tiny or subnormal number).
            #expect(gradient.isFinite && gradient.scalars[3] == 1 && gradient.scalars[0] == 0)
            // A NaN input stays NaN (the clamp of exp's argument must not turn it into a bound).
            let nan = try layer.forward(Tensor(shape: [1, 2], scalars: [.nan, 1]), mode: .training)
            #expect(nan.scalars[0].isNaN && nan.scalars[1].isFinite, "\(approximation), level \(level): NaN must propagate")
        }
    }
}
