/// Element types of the safetensors format (the header's `dtype` strings).
///
/// All multi-byte values are little-endian in the file (the format's rule). Readers convert with
/// `.littleEndian`, so they are correct on any host; the supported hosts (x86-64, arm64) are
/// little-endian, where that conversion is free and `F32` data can be copied byte for byte.
public enum SafeTensorsDType: String, Sendable, Hashable, CaseIterable {
    case float64 = "F64", float32 = "F32", float16 = "F16", bfloat16 = "BF16"
    case int64 = "I64", int32 = "I32", int16 = "I16", int8 = "I8", uint8 = "U8", bool = "BOOL"

    /// Bytes per element.
    public var byteCount: Int {
        switch self {
        case .float64, .int64: 8
        case .float32, .int32: 4
        case .float16, .bfloat16, .int16: 2
        case .int8, .uint8, .bool: 1
        }
    }

    /// Whether the dtype holds floating-point values (F64, F32, F16, BF16).
    public var isFloatingPoint: Bool {
        switch self {
        case .float64, .float32, .float16, .bfloat16: true
        case .int64, .int32, .int16, .int8, .uint8, .bool: false
        }
    }

    /// The closed range of integers an integer dtype holds (`BOOL`: 0...1); nil for floating point.
    public var integerRange: ClosedRange<Int>? {
        switch self {
        case .float64, .float32, .float16, .bfloat16: nil
        case .int64: Int(Int64.min)...Int(Int64.max)
        case .int32: Int(Int32.min)...Int(Int32.max)
        case .int16: Int(Int16.min)...Int(Int16.max)
        case .int8: Int(Int8.min)...Int(Int8.max)
        case .uint8: 0...255
        case .bool: 0...1
        }
    }

    /// The spacing-relative rounding error bound of converting a real number to this dtype with
    /// round-to-nearest-even: half the machine epsilon, 2^-(p) for p significand bits
    /// (F64 2⁻⁵³, F32 2⁻²⁴, F16 2⁻¹¹, BF16 2⁻⁸), valid in the normal range. Nil for integers.
    public var unitRoundoff: Double? {
        switch self {
        case .float64: 0x1p-53
        case .float32: 0x1p-24
        case .float16: 0x1p-11
        case .bfloat16: 0x1p-8
        default: nil
        }
    }
}
