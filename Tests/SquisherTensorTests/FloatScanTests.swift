import Testing
import SquisherTensor

/// The vectorized scans against their one-element-at-a-time definitions: exact (integer and
/// bit-level results), except `sumAndSquares`, whose float32 lanes are bounded by 2e-5 relative.
@Suite("Vectorized float scans")
struct FloatScanTests {
    static let specials: [Float] = [.nan, -.nan, .infinity, -.infinity, -1, -.leastNonzeroMagnitude, -0.0, 0, .greatestFiniteMagnitude]

    /// Every special value at every position of buffers whose lengths straddle the 8/16-wide blocks.
    @Test(arguments: [1, 7, 8, 9, 15, 16, 17, 33, 100])
    func validityScansFindTheFirstOffender(count: Int) {
        var generator = SplitMix64(seed: UInt64(count))
        for special in Self.specials {
            for position in Set([0, count / 2, count - 1]) {
                var values = (0..<count).map { _ in Float(generator.nextUniformDouble()) * 3 }
                values[position] = special
                values.withUnsafeBufferPointer { buffer in
                    #expect(FloatScan.firstNonFinite(buffer) == buffer.firstIndex { !$0.isFinite })
                    #expect(FloatScan.firstNegativeOrNonFinite(buffer) == buffer.firstIndex { !($0 >= 0 && $0 < .infinity) })
                }
            }
        }
    }

    @Test func widenBFloat16IsExactAtAnyAlignment() {
        let patterns: [UInt16] = (0..<83).map { UInt16(truncatingIfNeeded: $0 &* 2_654_435_761 >> 7) } + [0x7F80, 0xFF80, 0x7FC1, 0x8000, 0x0001]
        var bytes = [UInt8](repeating: 0, count: 1 + 2 * patterns.count)
        for (i, p) in patterns.enumerated() { bytes[1 + 2 * i] = UInt8(p & 0xFF); bytes[2 + 2 * i] = UInt8(p >> 8) }
        var out = [Float](repeating: 0, count: patterns.count)
        bytes.withUnsafeBytes { raw in
            out.withUnsafeMutableBufferPointer { FloatScan.widenBFloat16(raw.baseAddress! + 1, count: patterns.count, into: $0.baseAddress!) }
        }
        for (p, x) in zip(patterns, out) { #expect(x.bitPattern == UInt32(p) << 16) }
    }

    @Test func sumAndSquaresMatchDoubleWithinTheStatedBound() {
        var generator = SplitMix64(seed: 7)
        let values = (0..<10_003).map { _ in Float(generator.nextUniformDouble()) * 1e-6 }
        let exact = values.reduce(into: (0.0, 0.0)) { $0.0 += Double($1); $0.1 += Double($1) * Double($1) }
        let (sum, squares) = values.withUnsafeBufferPointer(FloatScan.sumAndSquares)
        #expect(abs(sum - exact.0) <= 2e-5 * exact.0)
        #expect(abs(squares - exact.1) <= 2e-5 * exact.1)
    }
}
