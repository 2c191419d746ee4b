import Foundation
import SquisherTensor

/// A parsed safetensors file (https://github.com/huggingface/safetensors): an 8-byte little-endian
/// header length `n`, `n` bytes of JSON mapping tensor names to `{dtype, shape, data_offsets}`
/// (offsets relative to the end of the header, `[begin, end)`), optional `__metadata__` of strings,
/// then the raw little-endian, row-major data.
///
/// The header is validated on open: offsets within the data, sizes matching dtype × shape, tensors
/// contiguous and non-overlapping. Tensors are decoded on demand.
public struct SafeTensorsFile: Sendable {
    /// One tensor's header entry.
    public struct Entry: Sendable, Hashable {
        public var dtype: SafeTensorsDType
        public var shape: [Int]
        /// Byte range within the data section.
        public var byteRange: Range<Int>
    }

    /// The file path (for messages).
    public let path: String
    /// Tensor names in data order.
    public let names: [String]
    /// Header entries by name.
    public let entries: [String: Entry]
    /// The `__metadata__` string map (empty when absent).
    public let metadata: [String: String]
    private let data: Data
    private let dataStart: Int

    /// Opens and validates a file.
    /// - Throws: ``SafeTensorsError`` naming the file and the violated rule.
    public init(contentsOf url: URL) throws(SafeTensorsError) {
        let path = url.path
        let bytes: Data
        do { bytes = try Data(contentsOf: url, options: .alwaysMapped) } catch {
            throw SafeTensorsError(path: path, problem: "cannot read file (\(error.localizedDescription))")
        }
        try self.init(data: bytes, path: path)
    }

    /// Parses bytes already in memory; `path` is used in messages.
    public init(data bytes: Data, path: String) throws(SafeTensorsError) {
        func fail(_ problem: String) -> SafeTensorsError { SafeTensorsError(path: path, problem: problem) }
        guard bytes.count >= 8 else { throw fail("file is \(bytes.count) bytes, shorter than the 8-byte header length") }
        var headerLength: UInt64 = 0
        for i in 0..<8 { headerLength |= UInt64(bytes[bytes.startIndex + i]) << (8 * UInt64(i)) }
        guard headerLength <= UInt64(bytes.count - 8) else {
            throw fail("header length \(headerLength) exceeds the \(bytes.count - 8) bytes after the length field")
        }
        let headerData = bytes.subdata(in: (bytes.startIndex + 8)..<(bytes.startIndex + 8 + Int(headerLength)))
        guard let json = try? JSONSerialization.jsonObject(with: headerData), let header = json as? [String: Any] else {
            throw fail("header is not a JSON object")
        }
        let dataStart = 8 + Int(headerLength)
        let dataCount = bytes.count - dataStart
        var entries: [String: Entry] = [:]
        var metadata: [String: String] = [:]
        for (name, value) in header {
            if name == "__metadata__" {
                guard let map = value as? [String: Any] else { throw fail("__metadata__ is not an object") }
                for (key, item) in map {
                    guard let string = item as? String else { throw fail("__metadata__ value for '\(key)' is not a string") }
                    metadata[key] = string
                }
                continue
            }
            guard let object = value as? [String: Any] else { throw fail("entry for tensor '\(name)' is not an object") }
            guard let dtypeName = object["dtype"] as? String, let dtype = SafeTensorsDType(rawValue: dtypeName) else {
                throw fail("tensor '\(name)' has an unknown or missing dtype \(String(describing: object["dtype"]))")
            }
            guard let shapeValues = object["shape"] as? [Any],
                  let shape = try? shapeValues.map({ (v: Any) throws -> Int in
                      guard let n = v as? NSNumber, let i = Int(exactly: n.doubleValue), i >= 0 else { throw fail("") }
                      return i
                  })
            else { throw fail("tensor '\(name)' has a missing or invalid shape (expected a list of non-negative integers)") }
            guard let offsets = object["data_offsets"] as? [NSNumber], offsets.count == 2,
                  let begin = Int(exactly: offsets[0].doubleValue), let end = Int(exactly: offsets[1].doubleValue),
                  begin >= 0, begin <= end
            else { throw fail("tensor '\(name)' has invalid data_offsets (expected [begin, end] with begin <= end)") }
            guard end <= dataCount else {
                throw fail("tensor '\(name)' data_offsets [\(begin), \(end)] reach past the \(dataCount) data bytes (truncated file?)")
            }
            let (elements, overflow) = shape.reduce((1, false)) { acc, d in
                let r = acc.0.multipliedReportingOverflow(by: d)
                return (r.partialValue, acc.1 || r.overflow)
            }
            guard !overflow, elements.multipliedReportingOverflow(by: dtype.byteCount) == (end - begin, false) else {
                throw fail("tensor '\(name)' spans \(end - begin) bytes but \(dtype.rawValue) \(shape) needs \(overflow ? -1 : elements * dtype.byteCount)")
            }
            entries[name] = Entry(dtype: dtype, shape: shape, byteRange: begin..<end)
        }
        // Tensors must tile the data section without gaps or overlaps.
        let ordered = entries.sorted { ($0.value.byteRange.lowerBound, $0.value.byteRange.upperBound, $0.key) < ($1.value.byteRange.lowerBound, $1.value.byteRange.upperBound, $1.key) }
        var cursor = 0
        for (name, entry) in ordered {
            guard entry.byteRange.lowerBound == cursor else {
                throw fail(entry.byteRange.lowerBound < cursor
                    ? "tensor '\(name)' overlaps the previous tensor (starts at \(entry.byteRange.lowerBound), previous ends at \(cursor))"
                    : "gap before tensor '\(name)' (starts at \(entry.byteRange.lowerBound), previous ends at \(cursor))")
            }
            cursor = entry.byteRange.upperBound
        }
        guard cursor == dataCount else { throw fail("data section has \(dataCount) bytes but the tensors cover \(cursor)") }
        self.path = path
        self.names = ordered.map(\.key)
        self.entries = entries
        self.metadata = metadata
        self.data = bytes
        self.dataStart = dataStart
    }

    private func entry(_ name: String) throws(SafeTensorsError) -> Entry {
        guard let entry = entries[name] else {
            throw SafeTensorsError(path: path, problem: "no tensor named '\(name)'")
        }
        return entry
    }

    /// Calls `body` with the raw bytes of tensor `name`.
    public func withRawBytes<R>(of name: String, _ body: (UnsafeRawBufferPointer) -> R) throws(SafeTensorsError) -> R {
        let entry = try entry(name)
        return data.withUnsafeBytes { raw in
            body(UnsafeRawBufferPointer(rebasing: raw[(dataStart + entry.byteRange.lowerBound)..<(dataStart + entry.byteRange.upperBound)]))
        }
    }

    /// Tensor `name` decoded to `Double` (exact for F64/F32/F16/BF16 and integers below 2⁵³).
    public func doubles(_ name: String) throws(SafeTensorsError) -> [Double] {
        let entry = try entry(name)
        let count = entry.shape.reduce(1, *)
        return try withRawBytes(of: name) { raw in
            (0..<count).map { i -> Double in
                let offset = i * entry.dtype.byteCount
                switch entry.dtype {
                case .float64: return Double(bitPattern: raw.loadUnaligned(fromByteOffset: offset, as: UInt64.self).littleEndian)
                case .float32: return Double(Float(bitPattern: raw.loadUnaligned(fromByteOffset: offset, as: UInt32.self).littleEndian))
                case .float16: return Double(Float(float16Bits: raw.loadUnaligned(fromByteOffset: offset, as: UInt16.self).littleEndian))
                case .bfloat16: return Double(Float(bitPattern: UInt32(raw.loadUnaligned(fromByteOffset: offset, as: UInt16.self).littleEndian) << 16))
                case .int64: return Double(Int64(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: Int64.self)))
                case .int32: return Double(Int32(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: Int32.self)))
                case .int16: return Double(Int16(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: Int16.self)))
                case .int8: return Double(raw.loadUnaligned(fromByteOffset: offset, as: Int8.self))
                case .uint8, .bool: return Double(raw.loadUnaligned(fromByteOffset: offset, as: UInt8.self))
                }
            }
        }
    }

    /// Tensor `name` converted to a float32 ``Tensor`` of its shape.
    public func tensor(_ name: String) throws(SafeTensorsError) -> Tensor {
        let entry = try entry(name)
        return Tensor(uncheckedShape: entry.shape, scalars: try doubles(name).map { Float($0) })
    }

    /// Integer tensor `name` (I64/I32/I16/I8/U8/BOOL) as `Int`s.
    /// - Throws: when the tensor holds floating-point data.
    public func integers(_ name: String) throws(SafeTensorsError) -> [Int] {
        let entry = try entry(name)
        guard ![.float64, .float32, .float16, .bfloat16].contains(entry.dtype) else {
            throw SafeTensorsError(path: path, problem: "tensor '\(name)' is \(entry.dtype.rawValue), expected an integer dtype")
        }
        return try doubles(name).map { Int($0) }
    }

    /// Every tensor converted to float32, in data order.
    public func allTensors() throws(SafeTensorsError) -> NamedTensors {
        var result = NamedTensors()
        for name in names { result[name] = try tensor(name) }
        return result
    }
}

extension Float {
    /// Decodes IEEE binary16 bits.
    init(float16Bits bits: UInt16) {
        let sign = UInt32(bits >> 15) << 31
        let exponent = Int((bits >> 10) & 0x1F)
        let mantissa = UInt32(bits & 0x3FF)
        if exponent == 0 {
            // Zero or subnormal: mantissa * 2^-24.
            let magnitude = Float(mantissa) * 0x1p-24
            self = sign != 0 ? -magnitude : magnitude
        } else if exponent == 31 {
            self = Float(bitPattern: sign | 0x7F80_0000 | (mantissa << 13))
        } else {
            self = Float(bitPattern: sign | (UInt32(exponent - 15 + 127) << 23) | (mantissa << 13))
        }
    }
}
