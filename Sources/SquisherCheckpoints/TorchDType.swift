import Foundation
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

/// A tensor read from a PyTorch checkpoint: its element type in the file, its shape, and its values
/// converted to float32 on demand.
///
/// A tensor decoded from a checkpoint is a **view** of its storage bytes (memory-mapped from the
/// archive; nothing is copied or converted when the file is loaded): ``tensor`` converts the whole
/// tensor each time it is read, ``floats(_:)`` converts only a range, so that reading one buffer of an
/// optimizer state (`exp_avg_sq`) does not materialize the others (`exp_avg`, fp32 master weights).
/// Values come in C (row-major) order whatever the stored strides were. Conversion to float32 is
/// exact for float32/float16/bfloat16 storages; float64 rounds to nearest even; integers above 2^24 in
/// magnitude round.
public struct TorchTensor: Sendable, Hashable {
    enum Storage: Sendable {
        case materialized(Tensor)
        /// Storage bytes (little-endian, `dtype`), element offset and strides; bounds checked at decode.
        case view(data: Data, offset: Int, stride: [Int], file: MappedFile?)
        /// Row-major element ranges of other tensors, concatenated (DeepSpeed's flat partitions).
        case concatenation([(source: TorchTensor, range: Range<Int>)])
        /// Tensors placed at element offsets of this one, covering it exactly (DCP shards).
        case tiles([(source: TorchTensor, offsets: [Int])])
    }

    let storage: Storage
    /// The element type in the file.
    public var dtype: TorchDType
    /// The tensor's shape (`[]` for a 0-dim tensor such as Adam's `step`).
    public let shape: [Int]

    /// Creates a checkpoint tensor from converted values and the original dtype.
    public init(tensor: Tensor, dtype: TorchDType) {
        storage = .materialized(tensor)
        self.dtype = dtype
        shape = tensor.shape
    }

    /// A view of `data` (already checked to hold every addressed element).
    init(view data: Data, dtype: TorchDType, offset: Int, size: [Int], stride: [Int], file: MappedFile? = nil) {
        storage = .view(data: data, offset: offset, stride: stride, file: file)
        self.dtype = dtype
        shape = size
    }

    /// The concatenation of row-major element ranges of `pieces` (each within its source), as a
    /// tensor of `shape`; nothing is converted until read.
    /// - Precondition: the ranges hold `shape`'s element count in total.
    init(concatenating pieces: [(source: TorchTensor, range: Range<Int>)], shape: [Int]) {
        storage = .concatenation(pieces)
        dtype = pieces.first?.source.dtype ?? .float32
        self.shape = shape
    }

    /// A tensor of `shape` made of `tiles` placed at their offsets.
    /// - Precondition: the tiles lie inside `shape` and cover it exactly once.
    init(tiles: [(source: TorchTensor, offsets: [Int])], shape: [Int]) {
        storage = .tiles(tiles)
        dtype = tiles.first?.source.dtype ?? .float32
        self.shape = shape
    }

    /// The number of elements.
    public var count: Int { shape.reduce(1, *) }

    /// The values as a float32 row-major tensor of the checkpoint tensor's shape (converted on each read).
    public var tensor: Tensor {
        switch storage {
        case .materialized(let tensor): return tensor
        case .view(let data, let offset, let stride, _):
            return Tensor(uncheckedShape: shape, scalars: _PickleMachine.gather(data, dtype: dtype, offset: offset, size: shape, stride: stride, count: count))
        case .concatenation(let pieces):
            var scalars: [Float] = []
            scalars.reserveCapacity(count)
            for piece in pieces { scalars += piece.source.floats(piece.range) }
            return Tensor(uncheckedShape: shape, scalars: scalars)
        case .tiles(let tiles):
            if rowTiles(tiles) != nil {  // dimension-0 shards: each decodes straight into its rows
                let scalars = [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
                    decode(0..<count, into: buffer)
                    initialized = count
                }
                return Tensor(uncheckedShape: shape, scalars: scalars)
            }
            var scalars = [Float](repeating: 0, count: count)
            for tile in tiles { Self.place(tile.source.tensor.scalars, sizes: tile.source.shape, at: tile.offsets, in: &scalars, size: shape) }
            return Tensor(uncheckedShape: shape, scalars: scalars)
        }
    }

    /// Hands the pages of this tensor's bytes back to the kernel when they lie in a file mapping
    /// (they are re-read from the page cache if the tensor is read again): call it after using a
    /// tensor, so that reading a checkpoint tensor by tensor keeps resident memory near one tensor.
    /// Elements `range` only, when given and the tensor is contiguous.
    public func releasePages(_ range: Range<Int>? = nil) {
        forEachMappedRun(range) { file, bytes in file.release(bytes) }
    }

    /// Asks the kernel to read this tensor's mapped bytes ahead, asynchronously (see
    /// ``MappedFile/prefetch(_:)``): a streaming pass calls it for the next tensor. Elements `range`
    /// only, when given and the tensor is contiguous.
    public func prefetchPages(_ range: Range<Int>? = nil) {
        forEachMappedRun(range) { file, bytes in file.prefetch(bytes) }
    }

    /// Calls `body` with each file mapping and byte run this tensor's elements (`range`, when given
    /// and contiguous) lie in.
    func forEachMappedRun(_ range: Range<Int>?, _ body: (MappedFile, UnsafeRawBufferPointer) -> Void) {
        switch storage {
        case .materialized: return
        case .view(let data, let offset, let stride, let file):
            guard let file else { return }
            let elements = range.map { offset + $0.lowerBound..<offset + $0.upperBound } ?? offset..<(offset + count)
            let contiguous = _PickleMachine.isContiguous(size: shape, stride: stride)
            data.withUnsafeBytes { raw in
                let bytes = contiguous ? elements.lowerBound * dtype.byteCount..<min(raw.count, elements.upperBound * dtype.byteCount) : 0..<raw.count
                if !bytes.isEmpty { body(file, UnsafeRawBufferPointer(rebasing: raw[bytes])) }
            }
        case .concatenation(let pieces):
            for piece in pieces { piece.source.forEachMappedRun(piece.range, body) }
        case .tiles(let tiles):
            for tile in tiles { tile.source.forEachMappedRun(nil, body) }
        }
    }

    /// Copies a row-major block of shape `sizes` into `scalars` (shape `size`) at `offsets`.
    static func place(_ block: [Float], sizes: [Int], at offsets: [Int], in scalars: inout [Float], size: [Int]) {
        guard let inner = sizes.last else {
            if let first = block.first, !scalars.isEmpty { scalars[0] = first }
            return
        }
        var strides = [Int](repeating: 1, count: size.count)
        for axis in stride(from: size.count - 2, through: 0, by: -1) { strides[axis] = strides[axis + 1] * size[axis + 1] }
        var index = [Int](repeating: 0, count: sizes.count)
        for row in 0..<(inner == 0 ? 0 : block.count / inner) {
            var target = 0
            for axis in size.indices { target += (offsets[axis] + index[axis]) * strides[axis] }
            scalars.withUnsafeMutableBufferPointer { out in
                block.withUnsafeBufferPointer { source in
                    (out.baseAddress! + target).update(from: source.baseAddress! + row * inner, count: inner)
                }
            }
            var axis = sizes.count - 2
            while axis >= 0 {
                index[axis] += 1
                if index[axis] < sizes[axis] { break }
                index[axis] = 0
                axis -= 1
            }
        }
    }

    /// Elements `range` (row-major) as float32, converting only those when the tensor is stored
    /// contiguously (otherwise the whole tensor is gathered first).
    /// - Precondition: `range` lies within `0..<count`.
    public func floats(_ range: Range<Int>) -> [Float] {
        guard case .view(let data, let offset, let stride, _) = storage, _PickleMachine.isContiguous(size: shape, stride: stride) else {
            return Array(tensor.scalars[range])
        }
        return _PickleMachine.gather(data, dtype: dtype, offset: offset + range.lowerBound, size: [range.count], stride: [1], count: range.count)
    }

    /// Equal dtype, shape and float32 values (bit for bit); reads both tensors.
    public static func == (a: TorchTensor, b: TorchTensor) -> Bool {
        a.dtype == b.dtype && a.shape == b.shape && a.tensor.scalars.elementsEqual(b.tensor.scalars) { $0.bitPattern == $1.bitPattern }
    }

    /// Hashes dtype and shape (consistent with `==`, without reading the values).
    public func hash(into hasher: inout Hasher) {
        hasher.combine(dtype)
        hasher.combine(shape)
    }
}
