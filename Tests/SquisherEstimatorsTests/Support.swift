import Foundation
import Squisher
import Testing

/// Loads a test resource copied from ../shared/oracles (see Resources/README.md).
func resource(_ name: String) throws -> SafeTensorsFile {
    guard let url = Bundle.module.url(forResource: name, withExtension: "safetensors", subdirectory: "Resources") else {
        throw EstimatorError(estimator: "test", problem: "missing test resource \(name).safetensors")
    }
    return try SafeTensorsFile(contentsOf: url)
}

/// Worst normwise relative difference of a float32 tensor against a float64 reference:
/// `max|ours − ref| / max|ref|`, and the element-wise worst `|ours − ref| / |ref|` over entries
/// with `|ref| > floor·max|ref|` (entries near zero carry only rounding noise).
struct Deviation: CustomStringConvertible {
    var normwise: Double
    var elementwise: Double
    var worstIndex: Int

    init(_ ours: [Float], _ reference: [Double], floor: Double = 1e-3) {
        let scale = reference.map(abs).max() ?? 0
        var worstAbs = 0.0, worstRel = 0.0, worst = -1
        for i in reference.indices {
            let diff = abs(Double(ours[i]) - reference[i])
            worstAbs = max(worstAbs, diff)
            if abs(reference[i]) > floor * scale, diff / abs(reference[i]) > worstRel {
                worstRel = diff / abs(reference[i])
                worst = i
            }
        }
        normwise = scale > 0 ? worstAbs / scale : worstAbs
        elementwise = worstRel
        worstIndex = worst
    }

    var description: String { String(format: "normwise %.2e, element-wise %.2e (worst entry %d)", normwise, elementwise, worstIndex) }
}
