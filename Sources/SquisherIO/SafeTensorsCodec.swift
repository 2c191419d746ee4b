/// Conversions between safetensors element bytes (little-endian) and Swift numbers.
///
/// Decoding widens exactly where it can (F16/BF16/F32 to `Float` or `Double`, F64 to `Double`);
/// F64 to `Float` rounds to nearest even. Encoding rounds to nearest even (IEEE 754 default).
enum SafeTensorsCodec {
    // MARK: Decoding

    /// IEEE binary16 bits to `Float` (exact: every half value is a float).
    @inline(__always)
    static func float(fromHalfBits bits: UInt16) -> Float {
        let sign = UInt32(bits >> 15) << 31
        let exponent = UInt32((bits >> 10) & 0x1F)
        let mantissa = UInt32(bits & 0x3FF)
        if exponent == 0 {
            // Zero or subnormal: mantissa × 2⁻²⁴ (exact in float32).
            let magnitude = Float(mantissa) * 0x1p-24
            return sign != 0 ? -magnitude : magnitude
        }
        if exponent == 31 { return Float(bitPattern: sign | 0x7F80_0000 | (mantissa << 13)) }
        return Float(bitPattern: sign | ((exponent + 112) << 23) | (mantissa << 13))
    }

    /// bfloat16 bits to `Float` (exact: bfloat16 is the top half of a float32).
    @inline(__always)
    static func float(fromBFloat16Bits bits: UInt16) -> Float { Float(bitPattern: UInt32(bits) << 16) }

    /// Decodes `count` elements of `dtype` from `raw` into `out` as `Float`.
    static func decode(_ raw: UnsafeRawBufferPointer, dtype: SafeTensorsDType, into out: UnsafeMutableBufferPointer<Float>) {
        let n = out.count
        switch dtype {
        case .float32:
            #if _endian(little)
            if n > 0, let src = raw.baseAddress, let dst = out.baseAddress {
                UnsafeMutableRawPointer(dst).copyMemory(from: src, byteCount: n * 4)
            }
            #else
            for i in 0..<n { out[i] = Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))) }
            #endif
        case .float64:
            for i in 0..<n { out[i] = Float(Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self)))) }
        case .float16:
            for i in 0..<n { out[i] = float(fromHalfBits: UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) }
        case .bfloat16:
            for i in 0..<n { out[i] = float(fromBFloat16Bits: UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) }
        case .int64:
            for i in 0..<n { out[i] = Float(Int64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self))) }
        case .int32:
            for i in 0..<n { out[i] = Float(Int32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self))) }
        case .int16:
            for i in 0..<n { out[i] = Float(Int16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * i, as: Int16.self))) }
        case .int8:
            for i in 0..<n { out[i] = Float(raw.loadUnaligned(fromByteOffset: i, as: Int8.self)) }
        case .uint8, .bool:
            for i in 0..<n { out[i] = Float(raw[i]) }
        }
    }

    /// Decodes `count` elements of `dtype` from `raw` into `out` as `Double` (exact except
    /// integers beyond 2⁵³ in I64).
    static func decode(_ raw: UnsafeRawBufferPointer, dtype: SafeTensorsDType, into out: UnsafeMutableBufferPointer<Double>) {
        let n = out.count
        switch dtype {
        case .float64:
            for i in 0..<n { out[i] = Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self))) }
        case .float32:
            for i in 0..<n { out[i] = Double(Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)))) }
        case .float16:
            for i in 0..<n { out[i] = Double(float(fromHalfBits: UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))) }
        case .bfloat16:
            for i in 0..<n { out[i] = Double(float(fromBFloat16Bits: UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))) }
        case .int64:
            for i in 0..<n { out[i] = Double(Int64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self))) }
        case .int32:
            for i in 0..<n { out[i] = Double(Int32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self))) }
        case .int16:
            for i in 0..<n { out[i] = Double(Int16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * i, as: Int16.self))) }
        case .int8:
            for i in 0..<n { out[i] = Double(raw.loadUnaligned(fromByteOffset: i, as: Int8.self)) }
        case .uint8, .bool:
            for i in 0..<n { out[i] = Double(raw[i]) }
        }
    }

    /// Decodes integer elements (caller checked the dtype is an integer dtype).
    static func decodeIntegers(_ raw: UnsafeRawBufferPointer, dtype: SafeTensorsDType, into out: UnsafeMutableBufferPointer<Int>) {
        let n = out.count
        switch dtype {
        case .int64: for i in 0..<n { out[i] = Int(Int64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self))) }
        case .int32: for i in 0..<n { out[i] = Int(Int32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self))) }
        case .int16: for i in 0..<n { out[i] = Int(Int16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * i, as: Int16.self))) }
        case .int8: for i in 0..<n { out[i] = Int(raw.loadUnaligned(fromByteOffset: i, as: Int8.self)) }
        case .uint8, .bool: for i in 0..<n { out[i] = Int(raw[i]) }
        case .float64, .float32, .float16, .bfloat16: break
        }
    }

    // MARK: Encoding

    /// Rounds `x` to nearest even in a binary format with `exponentBits` and `mantissaBits`
    /// (fraction bits without the hidden bit) and returns its bit pattern, or nil when a finite
    /// `x` overflows to infinity. NaN becomes the quiet NaN, infinities stay infinite.
    ///
    /// Method: with `q` the spacing of the target format at `|x|` (a power of two, `2^(e-m)` in
    /// the normal range, `2^(emin-m)` for subnormals), `(|x|/q).rounded(.toNearestOrEven) * q`
    /// is exact in `Double` (a division by a power of two and an integer below 2⁵⁴), so rounding
    /// happens once, straight from `Double` (no double rounding through float32).
    static func roundedBits(_ x: Double, exponentBits: Int, mantissaBits: Int) -> UInt64? {
        let signBit: UInt64 = x.sign == .minus ? 1 << UInt64(exponentBits + mantissaBits) : 0
        let allOnesExponent = (UInt64(1) << UInt64(exponentBits)) - 1
        if x.isNaN { return (allOnesExponent << UInt64(mantissaBits)) | (1 << UInt64(mantissaBits - 1)) }
        if x.isInfinite { return signBit | (allOnesExponent << UInt64(mantissaBits)) }
        let a = x.magnitude
        if a == 0 { return signBit }
        let bias = (1 << (exponentBits - 1)) - 1
        let minExponent = 1 - bias
        let exponent = max(Int(a.exponent), minExponent)
        let quantum = Double(sign: .plus, exponent: exponent - mantissaBits, significand: 1)
        let r = (a / quantum).rounded(.toNearestOrEven) * quantum
        if r == 0 { return signBit }
        let e = Int(r.exponent)
        guard e <= bias else { return nil }  // rounded past the largest finite value
        if e < minExponent {
            let fraction = UInt64(r / Double(sign: .plus, exponent: minExponent - mantissaBits, significand: 1))
            return signBit | fraction
        }
        let significand = UInt64(r / Double(sign: .plus, exponent: e - mantissaBits, significand: 1))
        let fraction = significand - (1 << UInt64(mantissaBits))
        return signBit | (UInt64(e + bias) << UInt64(mantissaBits)) | fraction
    }

    /// Why a value could not be encoded: its index and a description.
    struct EncodeFailure: Error {
        var index: Int
        var reason: String
    }

    /// Encodes `source` (as `Double`) into `dtype` little-endian bytes at `out`.
    static func encode(_ source: UnsafeBufferPointer<Double>, as dtype: SafeTensorsDType, startIndex: Int, into out: UnsafeMutableRawPointer) throws(EncodeFailure) {
        func store<T: FixedWidthInteger>(_ value: T, at i: Int) {
            out.storeBytes(of: value.littleEndian, toByteOffset: i * MemoryLayout<T>.size, as: T.self)
        }
        switch dtype {
        case .float64:
            for (i, x) in source.enumerated() { store(x.bitPattern, at: i) }
        case .float32:
            for (i, x) in source.enumerated() {
                let f = Float(x)
                if f.isInfinite && x.isFinite { throw EncodeFailure(index: startIndex + i, reason: "\(x) overflows F32 (largest finite \(Float.greatestFiniteMagnitude))") }
                store(f.bitPattern, at: i)
            }
        case .float16, .bfloat16:
            let (e, m, largest) = dtype == .float16 ? (5, 10, "65504") : (8, 7, "3.3895314e38")
            for (i, x) in source.enumerated() {
                guard let bits = roundedBits(x, exponentBits: e, mantissaBits: m) else {
                    throw EncodeFailure(index: startIndex + i, reason: "\(x) overflows \(dtype.rawValue) (largest finite \(largest))")
                }
                store(UInt16(truncatingIfNeeded: bits), at: i)
            }
        case .int64, .int32, .int16, .int8, .uint8, .bool:
            let range = dtype.integerRange ?? 0...0
            for (i, x) in source.enumerated() {
                guard x.isFinite, x == x.rounded(), x >= Double(range.lowerBound), x <= Double(range.upperBound),
                      let v = Int(exactly: x), range.contains(v)
                else {
                    throw EncodeFailure(index: startIndex + i, reason: "\(x) is not an integer in \(range.lowerBound)...\(range.upperBound) as \(dtype.rawValue) needs")
                }
                storeInteger(v, as: dtype, at: i, into: out)
            }
        }
    }

    /// Float32 to IEEE binary16 bits with round-to-nearest-even, or nil when a finite `x` rounds
    /// past 65504 (|x| >= 65520). Integer-only fast path for float32 sources (one rounding).
    @inline(__always)
    static func halfBits(_ x: Float) -> UInt16? {
        let f = x.bitPattern
        let sign = UInt16(truncatingIfNeeded: (f >> 16) & 0x8000)
        let a = f & 0x7FFF_FFFF
        if a >= 0x7F80_0000 { return sign | (a > 0x7F80_0000 ? 0x7E00 : 0x7C00) }  // NaN (quiet) or infinity
        if a >= 0x477F_F000 { return nil }  // >= 65520: rounds to infinity
        if a < 0x3880_0000 {
            // Below 2⁻¹⁴: subnormal half (or zero). |x|·2²⁴ is exact; rounding it to an integer is
            // the RNE rounding to the subnormal grid; 1024 carries into the smallest normal.
            let scaled = (Float(bitPattern: a) * 0x1p24).rounded(.toNearestOrEven)
            return sign | UInt16(scaled)
        }
        let mantissa = a & 0x7F_FFFF
        var h = ((a >> 23) - 112) << 10 | (mantissa >> 13)  // rebias 127 -> 15
        let rest = mantissa & 0x1FFF
        if rest > 0x1000 || (rest == 0x1000 && h & 1 == 1) { h += 1 }  // a carry may bump the exponent
        return sign | UInt16(h)
    }

    /// Float32 to bfloat16 bits with round-to-nearest-even, or nil when a finite `x` rounds past
    /// the largest bfloat16.
    @inline(__always)
    static func bfloat16Bits(_ x: Float) -> UInt16? {
        let f = x.bitPattern
        if x.isNaN { return UInt16(truncatingIfNeeded: f >> 16) | 0x0040 }  // keep sign, force quiet
        let rounded = UInt16(truncatingIfNeeded: (f &+ 0x7FFF &+ ((f >> 16) & 1)) >> 16)
        if rounded & 0x7F80 == 0x7F80 && x.isFinite { return nil }
        return rounded
    }

    /// Encodes float32 `source` into `dtype` little-endian bytes at `out` (F32, F16 and BF16 on
    /// fast paths; other dtypes through `Double`, exactly as the `Double` encoder).
    static func encode(_ source: UnsafeBufferPointer<Float>, as dtype: SafeTensorsDType, startIndex: Int, into out: UnsafeMutableRawPointer) throws(EncodeFailure) {
        switch dtype {
        case .float32:
            for (i, x) in source.enumerated() { out.storeBytes(of: x.bitPattern.littleEndian, toByteOffset: 4 * i, as: UInt32.self) }
        case .bfloat16:
            // Branch-free rounding (vectorized); an overflow is looked for only when one happened.
            var overflow: UInt16 = 0
            for i in source.indices {
                let f = source[i].bitPattern
                let magnitude = f & 0x7FFF_FFFF
                let rounded = UInt16(truncatingIfNeeded: (f &+ 0x7FFF &+ ((f >> 16) & 1)) >> 16)
                let bits = magnitude > 0x7F80_0000 ? UInt16(truncatingIfNeeded: f >> 16) | 0x0040 : rounded
                let finite: UInt16 = magnitude < 0x7F80_0000 ? 1 : 0
                overflow |= finite & (rounded & 0x7F80 == 0x7F80 ? 1 : 0)
                out.storeBytes(of: bits.littleEndian, toByteOffset: 2 * i, as: UInt16.self)
            }
            if overflow != 0, let i = source.firstIndex(where: { bfloat16Bits($0) == nil }) {
                throw EncodeFailure(index: startIndex + i, reason: "\(source[i]) overflows \(dtype.rawValue) (largest finite 3.3895314e38)")
            }
        case .float16:
            for (i, x) in source.enumerated() {
                guard let bits = halfBits(x) else {
                    throw EncodeFailure(index: startIndex + i, reason: "\(x) overflows \(dtype.rawValue) (largest finite 65504)")
                }
                out.storeBytes(of: bits.littleEndian, toByteOffset: 2 * i, as: UInt16.self)
            }
        default:
            let widened = UnsafeMutableBufferPointer<Double>.allocate(capacity: source.count)
            defer { widened.deallocate() }
            for (i, x) in source.enumerated() { widened[i] = Double(x) }
            try encode(UnsafeBufferPointer(widened), as: dtype, startIndex: startIndex, into: out)
        }
    }

    /// Encodes integers into `dtype`; floating-point dtypes receive the rounded value.
    static func encode(_ source: UnsafeBufferPointer<Int>, as dtype: SafeTensorsDType, startIndex: Int, into out: UnsafeMutableRawPointer) throws(EncodeFailure) {
        if let range = dtype.integerRange {
            for (i, v) in source.enumerated() {
                guard range.contains(v) else {
                    throw EncodeFailure(index: startIndex + i, reason: "\(v) is outside \(range.lowerBound)...\(range.upperBound) as \(dtype.rawValue) needs")
                }
                storeInteger(v, as: dtype, at: i, into: out)
            }
        } else {
            let widened = UnsafeMutableBufferPointer<Double>.allocate(capacity: source.count)
            defer { widened.deallocate() }
            for (i, v) in source.enumerated() { widened[i] = Double(v) }
            try encode(UnsafeBufferPointer(widened), as: dtype, startIndex: startIndex, into: out)
        }
    }

    @inline(__always)
    private static func storeInteger(_ v: Int, as dtype: SafeTensorsDType, at i: Int, into out: UnsafeMutableRawPointer) {
        switch dtype {
        case .int64: out.storeBytes(of: Int64(v).littleEndian, toByteOffset: 8 * i, as: Int64.self)
        case .int32: out.storeBytes(of: Int32(truncatingIfNeeded: v).littleEndian, toByteOffset: 4 * i, as: Int32.self)
        case .int16: out.storeBytes(of: Int16(truncatingIfNeeded: v).littleEndian, toByteOffset: 2 * i, as: Int16.self)
        case .int8: out.storeBytes(of: Int8(truncatingIfNeeded: v), toByteOffset: i, as: Int8.self)
        case .uint8, .bool: out.storeBytes(of: UInt8(truncatingIfNeeded: v), toByteOffset: i, as: UInt8.self)
        default: break
        }
    }
}

extension SafeTensorsDType {
    /// A value that ``encode(_:into:)`` could not store: its index in the source and why.
    public struct EncodingFailure: Error, Sendable, Hashable {
        /// The index of the value in the encoded buffer.
        public var index: Int
        /// What was wrong (e.g. `"70000.0 overflows F16 (largest finite 65504)"`).
        public var reason: String
    }

    /// Encodes float32 `values` into this dtype's little-endian bytes at `out`
    /// (`values.count × byteCount` bytes): exactly the bytes ``SafeTensorsStreamWriter/write(_:scalars:)``
    /// writes (F16/BF16 rounded to nearest even, NaN kept quiet), so that callers can encode parts
    /// of a tensor on several threads and hand the whole to ``SafeTensorsStreamWriter/writeRaw(_:bytes:)``.
    /// - Throws: ``EncodingFailure`` for the first value that does not fit (a finite value beyond the
    ///   dtype's range, a non-integer for an integer dtype); `out` is then partly written.
    public func encode(_ values: UnsafeBufferPointer<Float>, into out: UnsafeMutableRawPointer) throws(EncodingFailure) {
        do { try SafeTensorsCodec.encode(values, as: self, startIndex: 0, into: out) } catch {
            throw EncodingFailure(index: error.index, reason: error.reason)
        }
    }
}
