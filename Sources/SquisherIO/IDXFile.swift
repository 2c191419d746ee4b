import Foundation
import SquisherTensor

/// A file in the IDX format of the MNIST distribution (LeCun et al., "THE MNIST DATABASE of
/// handwritten digits"): a big-endian 4-byte magic number `0x00 0x00 <type> <rank>`, then `rank`
/// big-endian `UInt32` dimensions, then the elements, row-major and big-endian.
///
/// Element types: `0x08` unsigned byte, `0x09` signed byte, `0x0B` Int16, `0x0C` Int32,
/// `0x0D` float32, `0x0E` float64. MNIST's labels are `0x00000801` (`UInt8`, `[n]`) and its
/// images `0x00000803` (`UInt8`, `[n, rows, cols]`, 0 = background, 255 = ink).
///
/// The file is memory-mapped; its size must equal the header plus dims × element size exactly.
public struct IDXFile: Sendable {
    /// IDX element types (the magic number's third byte).
    public enum ElementType: UInt8, Sendable, Hashable, CaseIterable {
        case uint8 = 0x08, int8 = 0x09, int16 = 0x0B, int32 = 0x0C, float32 = 0x0D, float64 = 0x0E

        /// Bytes per element.
        public var byteCount: Int {
            switch self {
            case .uint8, .int8: 1
            case .int16: 2
            case .int32, .float32: 4
            case .float64: 8
            }
        }
    }

    /// The file path (for messages).
    public let path: String
    /// The element type.
    public let elementType: ElementType
    /// The dimensions, outermost first.
    public let shape: [Int]
    /// The magic number as read, e.g. `0x00000803`.
    public let magic: UInt32
    private let data: Data
    private let dataStart: Int

    /// Opens and validates an IDX file.
    /// - Throws: ``DataFileError`` naming the file: unreadable, shorter than its header, a magic
    ///   whose first two bytes are not zero or whose type byte is unknown (both in hex), or a
    ///   size that differs from the header's dims (truncated or trailing data).
    public init(contentsOf url: URL) throws(DataFileError) {
        let data: Data
        do { data = try InputFile.read(url, mapped: true) } catch { throw DataFileError(error) }
        try self.init(data: data, path: url.path)
    }

    /// Parses IDX bytes already in memory; `path` is used in messages.
    public init(data: Data, path: String) throws(DataFileError) {
        func fail(_ problem: String) -> DataFileError { DataFileError(path: path, problem: problem) }
        func bigEndianUInt32(at offset: Int) -> UInt32 {
            var value: UInt32 = 0
            for i in 0..<4 { value = value << 8 | UInt32(data[data.startIndex + offset + i]) }
            return value
        }
        guard data.count >= 4 else { throw fail("file is \(data.count) bytes, shorter than the 4-byte IDX magic number") }
        let magic = bigEndianUInt32(at: 0)
        guard magic >> 16 == 0, let type = ElementType(rawValue: UInt8((magic >> 8) & 0xFF)) else {
            throw fail("magic number \(IDXFile.hex(magic)) is not an IDX magic (expected 0x0000TTNN with type TT in 08, 09, 0B, 0C, 0D, 0E)")
        }
        let rank = Int(magic & 0xFF)
        let headerSize = 4 + 4 * rank
        guard data.count >= headerSize else {
            throw fail("file is \(data.count) bytes, shorter than the \(headerSize)-byte header of a rank-\(rank) IDX file (truncated)")
        }
        let shape = (0..<rank).map { Int(bigEndianUInt32(at: 4 + 4 * $0)) }
        var elements = 1
        for d in shape {
            let (p, o) = elements.multipliedReportingOverflow(by: d)
            guard !o else { throw fail("dims \(shape) overflow the element count") }
            elements = p
        }
        let (bodySize, overflow) = elements.multipliedReportingOverflow(by: type.byteCount)
        guard !overflow, bodySize <= Int.max - headerSize else { throw fail("dims \(shape) overflow the file size") }
        let expected = headerSize + bodySize
        guard data.count == expected else {
            throw fail(data.count < expected
                ? "data truncated: dims \(shape) of \(type) need \(expected) bytes, the file has \(data.count)"
                : "file has \(data.count - expected) trailing bytes after the \(expected) bytes of dims \(shape)")
        }
        self.path = path
        self.elementType = type
        self.shape = shape
        self.magic = magic
        self.data = data
        self.dataStart = headerSize
    }

    /// `value` as `0x%08X`.
    public static func hex(_ value: UInt32) -> String {
        let digits = String(value, radix: 16, uppercase: true)
        return "0x" + String(repeating: "0", count: 8 - digits.count) + digits
    }

    /// The magic number of `type` and `rank`: `0x0000TTNN`.
    public static func magic(_ type: ElementType, rank: Int) -> UInt32 { UInt32(type.rawValue) << 8 | UInt32(rank & 0xFF) }

    /// Throws unless the magic equals `expected` (naming both in hex and `what` was expected).
    public func require(magic expected: UInt32, for what: String) throws(DataFileError) {
        guard magic == expected else {
            throw DataFileError(path: path, problem: "wrong magic number \(IDXFile.hex(magic)) for \(what); expected \(IDXFile.hex(expected))")
        }
    }

    /// The number of elements, the product of ``shape``.
    public var elementCount: Int { shape.reduce(1, *) }

    /// Every element converted to `Double`, row-major (exact for all IDX types).
    public func doubles() -> [Double] {
        let n = elementCount
        let type = elementType
        return data.withUnsafeBytes { raw in
            let body = UnsafeRawBufferPointer(rebasing: raw[dataStart...])
            return [Double](unsafeUninitializedCapacity: n) { out, initialized in
                switch type {
                case .uint8: for i in 0..<n { out[i] = Double(body[i]) }
                case .int8: for i in 0..<n { out[i] = Double(Int8(bitPattern: body[i])) }
                case .int16: for i in 0..<n { out[i] = Double(Int16(bigEndian: body.loadUnaligned(fromByteOffset: 2 * i, as: Int16.self))) }
                case .int32: for i in 0..<n { out[i] = Double(Int32(bigEndian: body.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self))) }
                case .float32: for i in 0..<n { out[i] = Double(Float(bitPattern: UInt32(bigEndian: body.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)))) }
                case .float64: for i in 0..<n { out[i] = Double(bitPattern: UInt64(bigEndian: body.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self))) }
                }
                initialized = n
            }
        }
    }

    /// Calls `body` with the raw element bytes (big-endian for multi-byte types).
    public func withElementBytes<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R {
        data.withUnsafeBytes { raw in body(UnsafeRawBufferPointer(rebasing: raw[dataStart...])) }
    }
}

/// Loads MNIST-style IDX image and label files.
public enum IDXLoader {
    /// How image tensors are shaped.
    public enum ImageLayout: Sendable, Hashable {
        /// `[n, 1, rows, cols]`, one channel, for convolutional networks (PyTorch's NCHW).
        case channels
        /// `[n, rows * cols]`, each image flattened row-major, for MLPs.
        case flat
    }

    /// Reads an image file (magic `0x00000803`, `UInt8` `[n, rows, cols]`) as float32 pixels
    /// divided by 255, so 0...255 maps to [0, 1] (as torchvision's `ToTensor`).
    /// - Throws: ``DataFileError`` naming the file: wrong magic (expected and actual in hex),
    ///   truncated or trailing data.
    public static func images(_ url: URL, layout: ImageLayout = .channels) throws(DataFileError) -> Tensor {
        let file = try IDXFile(contentsOf: url)
        try file.require(magic: IDXFile.magic(.uint8, rank: 3), for: "an IDX image file (unsigned bytes, [n, rows, cols])")
        let (n, rows, cols) = (file.shape[0], file.shape[1], file.shape[2])
        let scalars = file.withElementBytes { body in
            [Float](unsafeUninitializedCapacity: n * rows * cols) { out, initialized in
                for i in 0..<(n * rows * cols) { out[i] = Float(body[i]) / 255 }
                initialized = n * rows * cols
            }
        }
        let shape = layout == .channels ? [n, 1, rows, cols] : [n, rows * cols]
        return Tensor(uncheckedShape: shape, scalars: scalars)
    }

    /// Reads a label file (magic `0x00000801`, `UInt8` `[n]`).
    /// - Throws: ``DataFileError`` naming the file: wrong magic (expected and actual in hex),
    ///   truncated or trailing data.
    public static func labels(_ url: URL) throws(DataFileError) -> [Int] {
        let file = try IDXFile(contentsOf: url)
        try file.require(magic: IDXFile.magic(.uint8, rank: 1), for: "an IDX label file (unsigned bytes, [n])")
        return file.withElementBytes { body in (0..<file.elementCount).map { Int(body[$0]) } }
    }

    /// Reads an image file and its label file and checks that they hold one label per image.
    /// - Throws: ``DataFileError`` naming the offending file: wrong magic (expected and actual
    ///   in hex), truncated data, or image and label counts that differ (naming both files).
    public static func load(images imagesURL: URL, labels labelsURL: URL, layout: ImageLayout = .channels) throws(DataFileError) -> (images: Tensor, labels: [Int]) {
        let labels = try labels(labelsURL)
        let images = try images(imagesURL, layout: layout)
        guard images.shape[0] == labels.count else {
            throw DataFileError(path: imagesURL.path, problem: "holds \(images.shape[0]) images but the label file \(labelsURL.path) holds \(labels.count) labels; expected one label per image")
        }
        return (images, labels)
    }

    /// Encodes an IDX file: magic `0x0000TTNN`, big-endian dims, then `elements` (already
    /// big-endian for multi-byte types). For tests and for exporting small data sets.
    public static func encode(type: IDXFile.ElementType, shape: [Int], elementBytes: [UInt8]) -> Data {
        var out = Data()
        let magic = IDXFile.magic(type, rank: shape.count)
        for value in [magic] + shape.map({ UInt32(truncatingIfNeeded: $0) }) {
            withUnsafeBytes(of: value.bigEndian) { out.append(contentsOf: $0) }
        }
        out.append(contentsOf: elementBytes)
        return out
    }
}
