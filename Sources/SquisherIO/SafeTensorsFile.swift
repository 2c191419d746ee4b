import Foundation
import SquisherTensor

/// A parsed safetensors file (https://github.com/huggingface/safetensors).
///
/// Layout: an 8-byte little-endian unsigned header length `N`; `N` bytes of UTF-8 JSON, an object
/// mapping each tensor name to `{"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}`
/// (byte offsets relative to the first byte after the header, `[begin, end)`), with an optional
/// `"__metadata__"` object of string values; then the raw data, little-endian and row-major
/// (C order), as PyTorch's `safetensors.torch.save_file` writes it.
///
/// The whole header is validated on open, following the reference implementation's rules:
/// the header length fits the file (and at most 100 MB), the header starts with `{` and is strict
/// JSON without duplicate keys, every entry is an object with a known dtype, a shape of
/// non-negative integers and two in-bounds offsets whose span equals dtype size × element count,
/// and the tensors tile the data section exactly (no gap, no overlap, nothing after the last).
/// Trailing spaces in the header (padding to 8 bytes) are allowed. Unknown keys inside an entry
/// are ignored.
///
/// The file is memory-mapped (`Data(contentsOf:options: .alwaysMapped)`): opening reads only the
/// header, and each tensor is decoded when asked for, so memory stays bounded by the tensors in use.
///
/// Endianness: values are converted from little-endian with `.littleEndian`, so decoding is
/// correct on any host; on the supported little-endian hosts (x86-64, arm64) it costs nothing.
public struct SafeTensorsFile: Sendable {
    /// One tensor's header entry.
    public struct Entry: Sendable, Hashable {
        /// The element type.
        public var dtype: SafeTensorsDType
        /// The shape, outermost first (`[]` for a scalar).
        public var shape: [Int]
        /// Byte range within the data section (relative to the first byte after the header).
        public var byteRange: Range<Int>

        /// The number of elements, the product of `shape` (1 for a scalar).
        public var elementCount: Int { shape.reduce(1, *) }
    }

    /// The largest header accepted, 100 MB (the reference implementation's limit).
    public static let maximumHeaderLength = 100_000_000

    /// The file path (for messages).
    public let path: String
    /// Tensor names in data order (by byte offset).
    public let names: [String]
    /// Header entries by name.
    public let entries: [String: Entry]
    /// The `__metadata__` string map (empty when absent).
    public let metadata: [String: String]
    private let data: Data
    private let dataStart: Int

    /// Opens (memory-maps) and validates a file.
    /// - Throws: ``SafeTensorsError`` naming the file and the violated rule.
    public init(contentsOf url: URL) throws(SafeTensorsError) {
        let path = url.path
        let bytes: Data
        do { bytes = try InputFile.read(url, mapped: true) } catch { throw SafeTensorsError(error) }
        try self.init(data: bytes, path: path)
    }

    /// Parses bytes already in memory; `path` is used in messages.
    /// - Throws: ``SafeTensorsError`` naming `path` and the violated rule.
    public init(data bytes: Data, path: String) throws(SafeTensorsError) {
        func fail(_ problem: String) -> SafeTensorsError { SafeTensorsError(path: path, problem: problem) }
        guard bytes.count >= 8 else {
            throw fail("file is \(bytes.count) bytes, shorter than the 8-byte header length field")
        }
        var headerLength: UInt64 = 0
        for i in 0..<8 { headerLength |= UInt64(bytes[bytes.startIndex + i]) << (8 * UInt64(i)) }
        guard headerLength <= UInt64(bytes.count - 8) else {
            throw fail("header length \(headerLength) exceeds the \(bytes.count - 8) bytes after the length field (truncated file or not a safetensors file)")
        }
        guard headerLength <= UInt64(Self.maximumHeaderLength) else {
            throw fail("header length \(headerLength) exceeds the limit of \(Self.maximumHeaderLength) bytes")
        }
        let headerStart = bytes.startIndex + 8
        let headerBytes = [UInt8](bytes[headerStart..<(headerStart + Int(headerLength))])
        guard headerBytes.first == UInt8(ascii: "{") else {
            throw fail("header does not start with '{' (not a safetensors JSON header)")
        }
        let json: HeaderJSON
        do { json = try HeaderJSONParser.parse(headerBytes) } catch {
            throw fail("header is not valid JSON: \(error.message)")
        }
        guard case .object(let members) = json else { throw fail("header is not a JSON object") }

        let dataStart = 8 + Int(headerLength)
        let dataCount = bytes.count - dataStart
        var entries: [String: Entry] = [:]
        var metadata: [String: String] = [:]
        for (name, value) in members {
            if name == "__metadata__" {
                guard case .object(let map) = value else {
                    throw fail("__metadata__ is \(value.kindDescription), expected an object of strings")
                }
                for (key, item) in map {
                    guard case .string(let string) = item else {
                        throw fail("__metadata__ value for '\(key)' is \(item.kindDescription), expected a string")
                    }
                    metadata[key] = string
                }
                continue
            }
            entries[name] = try Self.parseEntry(name: name, value: value, dataCount: dataCount, fail: fail)
        }
        // Tensors must tile the data section: sorted by offset, each starting where the previous
        // ended, the last ending at the end of the file.
        let ordered = entries.sorted {
            ($0.value.byteRange.lowerBound, $0.value.byteRange.upperBound, $0.key)
                < ($1.value.byteRange.lowerBound, $1.value.byteRange.upperBound, $1.key)
        }
        var cursor = 0
        var previous = "the start of the data section"
        for (name, entry) in ordered {
            let begin = entry.byteRange.lowerBound
            if begin < cursor {
                throw fail("tensor '\(name)' overlaps \(previous) (starts at byte \(begin), \(previous) ends at \(cursor))")
            }
            if begin > cursor {
                throw fail("gap of \(begin - cursor) bytes before tensor '\(name)' (it starts at byte \(begin), \(previous) ends at \(cursor))")
            }
            cursor = entry.byteRange.upperBound
            previous = "tensor '\(name)'"
        }
        guard cursor == dataCount else {
            throw fail("data section has \(dataCount) bytes but the tensors cover only \(cursor) (\(dataCount - cursor) trailing bytes)")
        }
        self.path = path
        self.names = ordered.map(\.key)
        self.entries = entries
        self.metadata = metadata
        self.data = bytes
        self.dataStart = dataStart
    }

    private static func parseEntry(
        name: String, value: HeaderJSON, dataCount: Int, fail: (String) -> SafeTensorsError
    ) throws(SafeTensorsError) -> Entry {
        guard case .object(let fields) = value else {
            throw fail("entry for tensor '\(name)' is \(value.kindDescription), expected an object with dtype, shape and data_offsets")
        }
        func field(_ key: String) -> HeaderJSON? { fields.first { $0.key == key }?.value }
        guard let dtypeValue = field("dtype") else { throw fail("tensor '\(name)' has no dtype") }
        guard case .string(let dtypeName) = dtypeValue else {
            throw fail("tensor '\(name)' dtype is \(dtypeValue.kindDescription), expected a string")
        }
        guard let dtype = SafeTensorsDType(rawValue: dtypeName) else {
            let known = SafeTensorsDType.allCases.map(\.rawValue).joined(separator: ", ")
            throw fail("tensor '\(name)' has unknown or unsupported dtype '\(dtypeName)' (supported: \(known))")
        }
        guard case .array(let shapeValues)? = field("shape") else {
            throw fail("tensor '\(name)' has a missing or invalid shape (expected a list of non-negative integers)")
        }
        var shape: [Int] = []
        for item in shapeValues {
            guard let dimension = item.nonNegativeInteger else {
                throw fail("tensor '\(name)' shape contains \(item.kindDescription), expected a list of non-negative integers")
            }
            shape.append(dimension)
        }
        guard case .array(let offsetValues)? = field("data_offsets"), offsetValues.count == 2,
              let begin = offsetValues[0].nonNegativeInteger, let end = offsetValues[1].nonNegativeInteger
        else {
            throw fail("tensor '\(name)' has invalid data_offsets (expected [begin, end], two non-negative integers)")
        }
        guard begin <= end else {
            throw fail("tensor '\(name)' data_offsets [\(begin), \(end)] end before they begin")
        }
        guard end <= dataCount else {
            throw fail("tensor '\(name)' data_offsets [\(begin), \(end)] reach past the \(dataCount) data bytes (truncated file?)")
        }
        var elements = 1
        var overflow = false
        for dimension in shape {
            let product = elements.multipliedReportingOverflow(by: dimension)
            elements = product.partialValue
            overflow = overflow || product.overflow
        }
        let bytes = elements.multipliedReportingOverflow(by: dtype.byteCount)
        guard !overflow, !bytes.overflow, bytes.partialValue == end - begin else {
            let needed = overflow || bytes.overflow ? "more than Int.max" : "\(bytes.partialValue)"
            throw fail("tensor '\(name)' data_offsets [\(begin), \(end)] span \(end - begin) bytes but \(dtype.rawValue) of shape \(shape) needs \(needed)")
        }
        return Entry(dtype: dtype, shape: shape, byteRange: begin..<end)
    }

    /// The header entry of tensor `name`.
    /// - Throws: ``SafeTensorsError`` when there is no such tensor.
    public func entry(_ name: String) throws(SafeTensorsError) -> Entry {
        guard let entry = entries[name] else {
            throw SafeTensorsError(path: path, problem: "no tensor named '\(name)' (the file holds \(names.count) tensors)")
        }
        return entry
    }

    /// Calls `body` with the raw (little-endian) bytes of tensor `name`, without copying them.
    /// The pointer is valid only during `body`.
    public func withRawBytes<R>(of name: String, _ body: (UnsafeRawBufferPointer) -> R) throws(SafeTensorsError) -> R {
        let entry = try entry(name)
        let begin = dataStart + entry.byteRange.lowerBound
        let end = dataStart + entry.byteRange.upperBound
        return data.withUnsafeBytes { raw in body(UnsafeRawBufferPointer(rebasing: raw[begin..<end])) }
    }

    /// Tensor `name` decoded to `Double`, row-major: exact for F64, F32, F16 and BF16 and for
    /// integers of magnitude up to 2⁵³.
    public func doubles(_ name: String) throws(SafeTensorsError) -> [Double] {
        let entry = try entry(name)
        return try withRawBytes(of: name) { raw in
            [Double](unsafeUninitializedCapacity: entry.elementCount) { buffer, initialized in
                SafeTensorsCodec.decode(raw, dtype: entry.dtype, into: buffer)
                initialized = buffer.count
            }
        }
    }

    /// Tensor `name` converted to a float32 ``Tensor`` of its shape. F32, F16 and BF16 are exact;
    /// F64 rounds to nearest even (as PyTorch's `.float()`); integers above 2²⁴ may round.
    public func tensor(_ name: String) throws(SafeTensorsError) -> Tensor {
        let entry = try entry(name)
        let scalars = try withRawBytes(of: name) { raw in
            [Float](unsafeUninitializedCapacity: entry.elementCount) { buffer, initialized in
                SafeTensorsCodec.decode(raw, dtype: entry.dtype, into: buffer)
                initialized = buffer.count
            }
        }
        return Tensor(uncheckedShape: entry.shape, scalars: scalars)
    }

    /// Integer tensor `name` (I64/I32/I16/I8/U8/BOOL) as `Int`s, row-major.
    /// - Throws: ``SafeTensorsError`` when the tensor holds floating-point data.
    public func integers(_ name: String) throws(SafeTensorsError) -> [Int] {
        let entry = try entry(name)
        guard !entry.dtype.isFloatingPoint else {
            throw SafeTensorsError(path: path, problem: "tensor '\(name)' is \(entry.dtype.rawValue), expected an integer dtype")
        }
        return try withRawBytes(of: name) { raw in
            [Int](unsafeUninitializedCapacity: entry.elementCount) { buffer, initialized in
                SafeTensorsCodec.decodeIntegers(raw, dtype: entry.dtype, into: buffer)
                initialized = buffer.count
            }
        }
    }

    /// Every tensor converted to float32, in data order. Holds all of them in memory at once;
    /// for large files iterate over ``names`` with ``tensor(_:)`` instead.
    public func allTensors() throws(SafeTensorsError) -> NamedTensors {
        var result = NamedTensors()
        for name in names { result[name] = try tensor(name) }
        return result
    }
}
