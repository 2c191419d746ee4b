/// Vectorized scans over float32 buffers: validity checks that cost one pass of SIMD compares when
/// every value is valid (the common case), and the float conversions of checkpoint I/O.
public enum FloatScan {
    /// The index of the first NaN or infinity in `values`, or nil.
    public static func firstNonFinite(_ values: UnsafeBufferPointer<Float>) -> Int? {
        // A finite value's magnitude bit pattern is below +infinity's 0x7F800000.
        largestBits(values, clearingSignBit: true) >= 0x7F80_0000 ? values.firstIndex { !$0.isFinite } : nil
    }

    /// The index of the first value that is negative (other than -0.0), infinite or NaN, or nil.
    public static func firstNegativeOrNonFinite(_ values: UnsafeBufferPointer<Float>) -> Int? {
        // Valid bit patterns are below 0x7F800000, or -0.0's 0x80000000 (mapped to 0).
        largestBits(values, clearingSignBit: false) >= 0x7F80_0000 ? values.firstIndex { !($0 >= 0 && $0 < .infinity) } : nil
    }

    /// The largest bit pattern of `values` (magnitudes when `clearingSignBit`; otherwise -0.0 counts as 0).
    static func largestBits(_ values: UnsafeBufferPointer<Float>, clearingSignBit: Bool) -> UInt32 {
        guard let base = values.baseAddress else { return 0 }
        let bits = UnsafeRawPointer(base).assumingMemoryBound(to: UInt32.self)
        let mask: UInt32 = clearingSignBit ? 0x7FFF_FFFF : 0xFFFF_FFFF
        // Eight independent maxima: a plain loop of integer max/select the compiler vectorizes.
        var largest: (UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32) = (0, 0, 0, 0, 0, 0, 0, 0)
        @inline(__always) func clean(_ b: UInt32) -> UInt32 { let m = b & mask; return m == 0x8000_0000 ? 0 : m }
        var i = 0
        while i + 8 <= values.count {
            largest.0 = max(largest.0, clean(bits[i])); largest.1 = max(largest.1, clean(bits[i + 1]))
            largest.2 = max(largest.2, clean(bits[i + 2])); largest.3 = max(largest.3, clean(bits[i + 3]))
            largest.4 = max(largest.4, clean(bits[i + 4])); largest.5 = max(largest.5, clean(bits[i + 5]))
            largest.6 = max(largest.6, clean(bits[i + 6])); largest.7 = max(largest.7, clean(bits[i + 7]))
            i += 8
        }
        var result = max(max(max(largest.0, largest.1), max(largest.2, largest.3)), max(max(largest.4, largest.5), max(largest.6, largest.7)))
        while i < values.count {
            result = max(result, clean(bits[i]))
            i += 1
        }
        return result
    }

    /// Widens `count` little-endian bfloat16 values at `source` (any alignment) to float32 (exact).
    public static func widenBFloat16(_ source: UnsafeRawPointer, count: Int, into out: UnsafeMutablePointer<Float>) {
        var i = 0
        while i + 16 <= count {
            let halves = SIMD16<UInt32>(truncatingIfNeeded: source.loadUnaligned(fromByteOffset: i * 2, as: SIMD16<UInt16>.self))
            UnsafeMutableRawPointer(out + i).storeBytes(of: halves &<< 16, as: SIMD16<UInt32>.self)
            i += 16
        }
        while i < count {
            out[i] = Float(bitPattern: UInt32(UInt16(littleEndian: source.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self))) << 16)
            i += 1
        }
    }

    /// `Σ x` and `Σ x²` of `values`, in Double: blocks of up to 4,096 values are summed in sixteen
    /// float32 lanes (256 values per lane, relative rounding below 2e-5), then added in Double.
    public static func sumAndSquares(_ values: UnsafeBufferPointer<Float>) -> (sum: Double, squares: Double) {
        guard let base = values.baseAddress else { return (0, 0) }
        let raw = UnsafeRawPointer(base)
        var sum = 0.0, squares = 0.0
        var i = 0
        while i + 16 <= values.count {
            let end = min(values.count / 16 * 16, i + 4096)
            var s = SIMD16<Float>(repeating: 0), q = SIMD16<Float>(repeating: 0)
            while i < end {
                let x = raw.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self)
                s += x
                q += x * x
                i += 16
            }
            for lane in 0..<16 {
                sum += Double(s[lane])
                squares += Double(q[lane])
            }
        }
        while i < values.count {
            let x = Double(values[i])
            sum += x
            squares += x * x
            i += 1
        }
        return (sum, squares)
    }
}
