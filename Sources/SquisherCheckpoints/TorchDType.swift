import SquisherTensor

/// The element type of a PyTorch storage, as recorded by the storage class name in a checkpoint's
/// pickle (`torch.FloatStorage` is float32, and so on). The class name is the only place
/// `torch.save` records a tensor's dtype.
public enum TorchDType: String, Sendable, Hashable, CaseIterable {
    case float32, float64, float16, bfloat16, int64, int32, int16, int8, uint8, bool

    /// The dtype of a `torch.<name>` storage class, or `nil` when `name` is not an allowed storage class.
    public init?(storageClass name: String) {
        switch name {
        case "FloatStorage": self = .float32
        case "DoubleStorage": self = .float64
        case "HalfStorage": self = .float16
        case "BFloat16Storage": self = .bfloat16
        case "LongStorage": self = .int64
        case "IntStorage": self = .int32
        case "ShortStorage": self = .int16
        case "CharStorage": self = .int8
        case "ByteStorage": self = .uint8
        case "BoolStorage": self = .bool
        default: return nil
        }
    }

    /// The storage class names this reader accepts (`torch.FloatStorage`, ...).
    public static let storageClassNames = [
        "FloatStorage", "DoubleStorage", "HalfStorage", "BFloat16Storage", "LongStorage", "IntStorage",
        "ShortStorage", "CharStorage", "ByteStorage", "BoolStorage",
    ]

    /// Bytes per element.
    public var byteCount: Int {
        switch self {
        case .float64, .int64: 8
        case .float32, .int32: 4
        case .float16, .bfloat16, .int16: 2
        case .int8, .uint8, .bool: 1
        }
    }

    /// Whether values convert to float32 exactly for every possible element (float32, float16,
    /// bfloat16, 8- and 16-bit integers, bool). float64 rounds to nearest; int32/int64 beyond 2^24 round.
    public var convertsExactlyToFloat32: Bool {
        switch self {
        case .float32, .float16, .bfloat16, .int16, .int8, .uint8, .bool: true
        case .float64, .int64, .int32: false
        }
    }
}

/// A tensor read from a PyTorch checkpoint: the values converted to float32 and the dtype they had
/// in the file.
///
/// Values are materialized in C (row-major) order whatever the stored strides were. Conversion to
/// float32 is exact for float32/float16/bfloat16 storages; float64 rounds to nearest even; integers
/// above 2^24 in magnitude round.
public struct TorchTensor: Sendable, Hashable {
    /// The values as a float32 row-major tensor of the checkpoint tensor's shape.
    public var tensor: Tensor
    /// The element type in the file.
    public var dtype: TorchDType

    /// Creates a checkpoint tensor from converted values and the original dtype.
    public init(tensor: Tensor, dtype: TorchDType) {
        self.tensor = tensor
        self.dtype = dtype
    }

    /// The tensor's shape (`[]` for a 0-dim tensor such as Adam's `step`).
    public var shape: [Int] { tensor.shape }
}
