import SquisherLayers
import SquisherTensor
import Testing

// Test helpers: central finite differences in Double, approximate comparison naming the worst
// element, and a generic gradient check of a Float32 layer against a Double reference forward.

/// Central differences `(f(x + h e_i) - f(x - h e_i)) / 2h` for every coordinate of `point`.
///
/// Error: truncation `h² f'''/6` (about 1e-12 for h = 1e-6 and O(1) derivatives) plus rounding
/// `≈ 1e-16 |f| / h` (about 1e-9 for |f| ≈ 10), far below the float32 tolerances used against it.
func centralDifferences(at point: [Double], step h: Double = 1e-6, _ f: ([Double]) -> Double) -> [Double] {
    var x = point
    var gradient = [Double](repeating: 0, count: point.count)
    for i in point.indices {
        let original = x[i]
        x[i] = original + h
        let plus = f(x)
        x[i] = original - h
        let minus = f(x)
        x[i] = original
        gradient[i] = (plus - minus) / (2 * h)
    }
    return gradient
}

/// Expects `|actual_i - expected_i| <= relative * |expected_i| + absolute` for every element (exact
/// equality first, so matching infinities pass) and records one issue naming the worst element.
func expectClose(
    _ actual: [Double], _ expected: [Double], relative: Double, absolute: Double, _ label: String,
    sourceLocation: SourceLocation = #_sourceLocation
) {
    guard actual.count == expected.count else {
        Issue.record("\(label): \(actual.count) values, expected \(expected.count)", sourceLocation: sourceLocation)
        return
    }
    var worst: (index: Int, excess: Double)? = nil
    for i in actual.indices where actual[i] != expected[i] {
        let allowed = relative * abs(expected[i]) + absolute
        let error = abs(actual[i] - expected[i])
        if !(error <= allowed) {  // NaN fails too
            let excess = error.isNaN ? .infinity : error / allowed
            if worst == nil || excess > worst!.excess { worst = (i, excess) }
        }
    }
    if let worst {
        let i = worst.index
        let message = "\(label): element \(i) of \(actual.count) is \(actual[i]), expected \(expected[i]) "
            + "(error \(abs(actual[i] - expected[i])), allowed \(relative) rel + \(absolute) abs)"
        Issue.record(Comment(rawValue: message), sourceLocation: sourceLocation)
    }
}

/// Float values as Double.
func doubles(_ t: Tensor) -> [Double] { t.scalars.map(Double.init) }

/// Uniform values in `[-1, 1)` pushed at least `margin` away from zero (to avoid ReLU kinks).
func awayFromZero(shape: [Int], margin: Float = 0.1, using generator: inout SplitMix64) -> Tensor {
    Tensor.uniform(shape: shape, low: -1, high: 1, using: &generator).map { $0 < 0 ? $0 - margin : $0 + margin }
}

/// The element-wise kernel levels this CPU runs (`kernelISALevel` of GELU, LayerNorm and attention): the
/// AVX-512 C kernels (3, where the CPU has them) and the portable Swift lanes (0). Tests run both.
let elementwiseKernelLevels = Set([GEMMKernelInfo.cpuISALevel, 0]).sorted()

/// Tolerances of the layer checks.
enum Tolerance {
    /// Float32 forward vs Double reference: float32 has a unit roundoff of 6e-8; the kernels here
    /// sum at most ~60 products of O(1) terms, so errors stay below ~4e-6 absolute in the worst case
    /// and ~1e-6 typically. 1e-5 relative plus 1e-5 absolute leaves margin without hiding a wrong
    /// index (which would give O(0.1) errors).
    static let forwardRelative = 1e-5
    static let forwardAbsolute = 1e-5
    /// Float32 analytic gradient vs Double central differences (h = 1e-6, error ~1e-9, see
    /// ``centralDifferences(at:step:_:)``): the float32 backward accumulates a few hundred O(1)
    /// products at most, giving relative errors ~1e-6 and absolute errors ~1e-6; 1e-4 relative with a
    /// 1e-5 absolute floor (for gradients near zero) bounds that with margin while any wrong term
    /// (O(0.01) or more) fails.
    static let gradientRelative = 1e-4
    static let gradientAbsolute = 1e-5
}

/// Gradient-checks a Float32 layer against a Double reference forward.
///
/// 1. Forward in `mode`, compared with `reference(input, parameters)` (parameters in the order
///    of `layer.namedParameters`).
/// 2. Backward with output gradient `r` (uniform in [-1, 1)), compared with central differences of
///    `L = sum(r * reference(...))` with respect to every input (when `differentiableInput`) and
///    every parameter element.
/// 3. Repeatability: a second backward (without accumulation) gives the identical input gradient
///    and leaves parameter gradients alone; a third (with accumulation) doubles them.
func checkLayer(
    _ layer: any Layer, input: Tensor, mode: LayerMode = .training, differentiableInput: Bool = true,
    generator: inout SplitMix64, _ label: String,
    reference: ([Double], [[Double]]) -> [Double],
    sourceLocation: SourceLocation = #_sourceLocation
) throws {
    layer.zeroGradients()
    let output = try layer.forward(input, mode: mode)
    let x = doubles(input)
    let parameters = layer.namedParameters
    let p = parameters.map { doubles($0.parameter.value) }
    expectClose(
        doubles(output), reference(x, p), relative: Tolerance.forwardRelative, absolute: Tolerance.forwardAbsolute,
        "\(label) forward", sourceLocation: sourceLocation)

    let r = Tensor.uniform(shape: output.shape, low: -1, high: 1, using: &generator)
    let rd = doubles(r)
    func projection(_ y: [Double]) -> Double { zip(rd, y).reduce(0) { $0 + $1.0 * $1.1 } }

    let inputGradient = try layer.backward(r, accumulateParameterGradients: true)
    #expect(inputGradient.shape == input.shape, "\(label): input gradient shape", sourceLocation: sourceLocation)
    if differentiableInput {
        let numeric = centralDifferences(at: x) { projection(reference($0, p)) }
        expectClose(
            doubles(inputGradient), numeric, relative: Tolerance.gradientRelative, absolute: Tolerance.gradientAbsolute,
            "\(label) input gradient", sourceLocation: sourceLocation)
    }
    for (index, (name, parameter)) in parameters.enumerated() {
        let numeric = centralDifferences(at: p[index]) { value in
            var q = p
            q[index] = value
            return projection(reference(x, q))
        }
        expectClose(
            doubles(parameter.gradient), numeric, relative: Tolerance.gradientRelative, absolute: Tolerance.gradientAbsolute,
            "\(label) gradient of \(name)", sourceLocation: sourceLocation)
    }

    // Repeatability after one forward.
    let firstGradients = parameters.map { $0.parameter.gradient }
    let again = try layer.backward(r, accumulateParameterGradients: false)
    #expect(again == inputGradient, "\(label): second backward differs", sourceLocation: sourceLocation)
    #expect(parameters.map { $0.parameter.gradient } == firstGradients, "\(label): backward without accumulation changed gradients", sourceLocation: sourceLocation)
    _ = try layer.backward(r, accumulateParameterGradients: true)
    // Accumulating again doubles the gradients up to float32 summation order (kernels that add
    // straight into the gradient sum in a different order the second time); a kernel that overwrote
    // instead of accumulating would be off by the whole gradient.
    for (index, (name, parameter)) in parameters.enumerated() {
        expectClose(
            doubles(parameter.gradient), doubles(firstGradients[index]).map { 2 * $0 }, relative: 1e-5, absolute: 1e-5,
            "\(label): second accumulating backward of \(name)", sourceLocation: sourceLocation)
    }
}
