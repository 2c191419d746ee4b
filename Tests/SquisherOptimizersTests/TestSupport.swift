import Foundation
import SquisherIO
import SquisherLayers
import SquisherOptimizers
import SquisherTensor
import Testing

/// Loads a bundled test resource (copied from the shared oracles; never read from ../shared).
func resource(_ name: String) throws -> SafeTensorsFile {
    guard let url = Bundle.module.url(forResource: name, withExtension: "safetensors", subdirectory: "Resources") else {
        throw TensorError.invalidArgument(argument: "test resource '\(name).safetensors'", reason: "not bundled")
    }
    return try SafeTensorsFile(contentsOf: url)
}

/// The worst element of an element-wise comparison, for failure messages.
struct Deviation: CustomStringConvertible {
    var index = -1
    var actual = 0.0
    var expected = 0.0
    /// The largest |actual − expected| / max(|expected|, floor) over the elements.
    var worstScaled = 0.0
    var maxAbsolute = 0.0
    var maxRelative = 0.0
    var description: String {
        "worst index \(index): got \(actual), expected \(expected); max abs \(maxAbsolute), max rel \(maxRelative)"
    }
}

/// Element-wise approximate equality in the manner of swift-numerics' `isApproximatelyEqual`:
/// exact equality first, then `|a − e| <= relative · max(|e|, absoluteFloor / relative)`, i.e. the
/// relative tolerance with an absolute floor. Returns the worst offender.
func compare(_ actual: [Double], _ expected: [Double], relative: Double, absoluteFloor: Double) -> (ok: Bool, deviation: Deviation) {
    guard actual.count == expected.count else {
        return (false, Deviation(index: -1, actual: Double(actual.count), expected: Double(expected.count), worstScaled: .infinity))
    }
    var deviation = Deviation()
    var ok = true
    for i in actual.indices {
        let a = actual[i], e = expected[i]
        if a == e { continue }
        let difference = abs(a - e)
        let allowed = max(relative * abs(e), absoluteFloor)
        let scaled = difference / allowed
        deviation.maxAbsolute = max(deviation.maxAbsolute, difference)
        if e != 0 { deviation.maxRelative = max(deviation.maxRelative, difference / abs(e)) }
        if !(difference <= allowed) { ok = false }
        if !(scaled <= deviation.worstScaled) {
            deviation.worstScaled = scaled.isNaN ? .infinity : scaled
            deviation.index = i
            deviation.actual = a
            deviation.expected = e
        }
    }
    return (ok, deviation)
}

/// Expects two tensors of one shape to agree element-wise (see ``compare(_:_:relative:absoluteFloor:)``).
func expectClose(
    _ actual: Tensor, _ expected: Tensor, relative: Double, absoluteFloor: Double, _ what: String,
    sourceLocation: SourceLocation = #_sourceLocation
) {
    #expect(actual.shape == expected.shape, "\(what): shape \(actual.shape) vs \(expected.shape)", sourceLocation: sourceLocation)
    let (ok, deviation) = compare(actual.doubles, expected.doubles, relative: relative, absoluteFloor: absoluteFloor)
    #expect(ok, "\(what): \(deviation)", sourceLocation: sourceLocation)
}

/// The largest distance in units in the last place between two float32 tensors (0: bit-identical).
func maxULPDistance(_ a: Tensor, _ b: Tensor) -> Int {
    precondition(a.count == b.count)
    func ordered(_ x: Float) -> Int64 {
        let bits = Int64(Int32(bitPattern: x.bitPattern))
        return bits < 0 ? Int64(Int32.min) - bits : bits
    }
    var worst: Int64 = 0
    for i in 0..<a.count { worst = max(worst, abs(ordered(a.scalars[i]) - ordered(b.scalars[i]))) }
    return Int(worst)
}

/// Row `row` of a stacked tensor `[rows, *shape]`, reshaped to `shape`.
func row(_ stacked: Tensor, _ row: Int) -> Tensor {
    let shape = Array(stacked.shape.dropFirst())
    let size = shape.reduce(1, *)
    return Tensor(uncheckedShape: shape, scalars: Array(stacked.scalars[(row * size)..<((row + 1) * size)]))
}

/// Fresh named parameters with the given values.
func makeParameters(_ values: [(String, Tensor)]) -> [(name: String, parameter: Parameter)] {
    values.map { ($0.0, Parameter($0.1)) }
}

/// Sets every parameter's gradient to `gradients[name]`.
func setGradients(_ parameters: [(name: String, parameter: Parameter)], _ gradients: NamedTensors) throws {
    for (name, parameter) in parameters { parameter.gradient = try gradients.tensor(named: name) }
}

/// Deterministic pseudo-random gradients for `parameters` from `generator`.
func randomGradients(for parameters: [(name: String, parameter: Parameter)], using generator: inout SplitMix64) -> NamedTensors {
    var result = NamedTensors()
    for (name, parameter) in parameters { result[name] = Tensor.normal(shape: parameter.value.shape, using: &generator) }
    return result
}

/// The `TensorError.invalidArgument` argument name thrown by `body`, or nil.
func invalidArgumentName(_ body: () throws -> Void) -> String? {
    do {
        try body()
        return nil
    } catch let TensorError.invalidArgument(argument, _) {
        return argument
    } catch let TensorError.shapeMismatch(operation, _, _) {
        return operation
    } catch {
        return "\(error)"
    }
}
