import Foundation

extension TorchTensor {
    /// Decodes row-major elements `range` into `out` (float32): exact for float32, float16, bfloat16 and
    /// 8/16-bit integers; float64 rounds to nearest even, int32/int64 beyond 2^24 round.
    ///
    /// Contiguous storage is converted by one tight loop over the mapped bytes (float32: a `memcpy`);
    /// strided storage walks its strides from the multi-index of `range.lowerBound`; concatenations and
    /// dimension-0 tiles (FSDP2 shards) decode from whichever piece holds each element. Only tiles split
    /// along a later dimension are gathered whole first.
    /// - Precondition: `range` lies within `0..<count` and `out.count >= range.count` (checked by callers).
    func decode(_ range: Range<Int>, into out: UnsafeMutableBufferPointer<Float>) {
        guard !range.isEmpty else { return }
        switch storage {
        case .materialized(let tensor):
            tensor.scalars.withUnsafeBufferPointer { source in
                for i in 0..<range.count { out[i] = source[range.lowerBound + i] }
            }
        case .view(let data, let offset, let stride, _):
            data.withUnsafeBytes { raw in
                if _PickleMachine.isContiguous(size: shape, stride: stride) {
                    Self.convert(raw, dtype: dtype, from: offset + range.lowerBound, count: range.count, into: out)
                } else {
                    Self.gatherStrided(raw, dtype: dtype, offset: offset, size: shape, stride: stride, range: range, into: out)
                }
            }
        case .concatenation(let pieces):
            var start = 0, written = 0
            for piece in pieces {
                let lower = max(range.lowerBound, start), upper = min(range.upperBound, start + piece.range.count)
                if lower < upper {
                    let shifted = (piece.range.lowerBound + lower - start)..<(piece.range.lowerBound + upper - start)
                    piece.source.decode(shifted, into: UnsafeMutableBufferPointer(rebasing: out[written..<(written + shifted.count)]))
                    written += shifted.count
                }
                start += piece.range.count
            }
        case .tiles(let tiles):
            if let rows = rowTiles(tiles) {
                let rowElements = shape.dropFirst().reduce(1, *)
                var written = 0
                for (source, first) in rows {
                    let start = first * rowElements
                    let lower = max(range.lowerBound, start), upper = min(range.upperBound, start + source.count)
                    guard lower < upper else { continue }
                    // Tiles are sorted by their first row, so the output is filled in order.
                    source.decode((lower - start)..<(upper - start), into: UnsafeMutableBufferPointer(rebasing: out[written..<(written + upper - lower)]))
                    written += upper - lower
                }
            } else {
                let whole = tensor.scalars
                for i in 0..<range.count { out[i] = whole[range.lowerBound + i] }
            }
        }
    }

    /// The tiles sorted by first row when each spans every dimension but the first (FSDP2's dim-0
    /// shards), so that each one is a contiguous row-major element range of the whole; otherwise nil.
    func rowTiles(_ tiles: [(source: TorchTensor, offsets: [Int])]) -> [(TorchTensor, Int)]? {
        guard !shape.isEmpty else { return nil }
        for tile in tiles where tile.source.shape.count != shape.count || tile.source.shape.dropFirst() != shape.dropFirst() || tile.offsets.dropFirst().contains(where: { $0 != 0 }) {
            return nil
        }
        return tiles.map { ($0.source, $0.offsets[0]) }.sorted { $0.1 < $1.1 }
    }

    /// The little-endian bytes of the whole tensor when they form one contiguous run in the file, in
    /// row-major order (a contiguous view, or a single tile that is one); otherwise nil.
    func withContiguousBytes<R>(_ body: (UnsafeRawBufferPointer) throws(CheckpointError) -> R) throws(CheckpointError) -> R? {
        switch storage {
        case .view(let data, let offset, let stride, _) where _PickleMachine.isContiguous(size: shape, stride: stride):
            let bytes = offset * dtype.byteCount..<(offset + count) * dtype.byteCount
            let result: Result<R, CheckpointError> = data.withUnsafeBytes { raw in
                do throws(CheckpointError) { return .success(try body(UnsafeRawBufferPointer(rebasing: raw[bytes]))) } catch { return .failure(error) }
            }
            return try result.get()
        case .tiles(let tiles) where tiles.count == 1 && tiles[0].source.shape == shape:
            return try tiles[0].source.withContiguousBytes(body)
        default:
            return nil
        }
    }

    /// float32 value of every float16 bit pattern (256 KB, built on first use).
    static let halfTable: [Float] = (0...UInt16.max).map { halfToFloat($0) }

    /// Converts `count` consecutive little-endian elements starting at element `first` of `raw`.
    static func convert(_ raw: UnsafeRawBufferPointer, dtype: TorchDType, from first: Int, count: Int, into out: UnsafeMutableBufferPointer<Float>) {
        guard count > 0, let base = raw.baseAddress, let target = out.baseAddress else { return }
        let source = base + first * dtype.byteCount
        switch dtype {
        case .float32:
            #if _endian(little)
            UnsafeMutableRawPointer(target).copyMemory(from: source, byteCount: count * 4)
            #else
            for i in 0..<count { target[i] = Float(bitPattern: UInt32(littleEndian: source.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))) }
            #endif
        case .bfloat16:
            for i in 0..<count { target[i] = Float(bitPattern: UInt32(UInt16(littleEndian: source.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) << 16) }
        case .float16:
            halfTable.withUnsafeBufferPointer { table in
                for i in 0..<count { target[i] = table[Int(UInt16(littleEndian: source.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))] }
            }
        default:
            for i in 0..<count { target[i] = _PickleMachine.element(raw, dtype, first + i) }
        }
    }

    /// Row-major elements `range` of a strided view: an odometer over the multi-index, last axis fastest,
    /// started at `range.lowerBound`'s multi-index.
    static func gatherStrided(
        _ raw: UnsafeRawBufferPointer, dtype: TorchDType, offset: Int, size: [Int], stride: [Int], range: Range<Int>, into out: UnsafeMutableBufferPointer<Float>
    ) {
        var index = [Int](repeating: 0, count: size.count)
        var remainder = range.lowerBound, source = offset
        for axis in size.indices.reversed() where size[axis] > 0 {
            index[axis] = remainder % size[axis]
            remainder /= size[axis]
            source += index[axis] * stride[axis]
        }
        for i in 0..<range.count {
            out[i] = _PickleMachine.element(raw, dtype, source)
            _PickleMachine.advance(&index, &source, size: size, stride: stride)
        }
    }
}
