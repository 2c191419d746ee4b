import Synchronization

/// Reusable 64-byte-aligned packing buffers for `gemm`, kept between calls.
///
/// A fresh multi-MiB buffer per call (the shared packed `op(B)` of a GPT-2-block product is 3-12 MiB)
/// comes from `mmap`, so every call pays a page fault and a page clear per 4 KiB, and two threads that
/// fault into one process at once also wait on each other's page-table locks. Buffers taken here come
/// from a small process-wide cache instead: after the first call of a shape, a product touches only
/// pages it already owns. Each buffer is used by one product (or one thread of it) at a time.
enum GEMMScratch {
    /// At most this many buffers are cached (the smallest are freed first).
    static let cachedBufferLimit = 8
    /// At most this many bytes are cached in all (the largest `gemm` panel is 16 MiB).
    static let cachedByteLimit = 64 << 20

    /// Calls `body` with a buffer of at least `count` floats (contents unspecified), then returns the
    /// buffer to the cache.
    @inline(__always)
    static func withBuffer<R>(floats count: Int, _ body: (UnsafeMutablePointer<Float>) -> R) -> R {
        let buffer = take(byteCount: max(1, count) * MemoryLayout<Float>.stride)
        defer { giveBack(buffer) }
        return body(buffer.pointer.bindMemory(to: Float.self, capacity: count))
    }

    /// One heap buffer (moved between threads through the cache's lock).
    struct Buffer: @unchecked Sendable {
        let pointer: UnsafeMutableRawPointer
        let byteCount: Int
    }

    private static let cache = Mutex<[Buffer]>([])

    /// The smallest cached buffer of at least `byteCount` bytes, or a new one.
    static func take(byteCount: Int) -> Buffer {
        let cached: Buffer? = cache.withLock { buffers in
            var best: Int? = nil
            for (index, buffer) in buffers.enumerated() where buffer.byteCount >= byteCount {
                if best.map({ buffers[$0].byteCount > buffer.byteCount }) ?? true { best = index }
            }
            return best.map { buffers.remove(at: $0) }
        }
        if let cached { return cached }
        return Buffer(pointer: .allocate(byteCount: byteCount, alignment: 64), byteCount: byteCount)
    }

    /// Returns a buffer to the cache, freeing the smallest cached buffers beyond the limits.
    static func giveBack(_ buffer: Buffer) {
        let evicted: [Buffer] = cache.withLock { buffers in
            buffers.append(buffer)
            buffers.sort { $0.byteCount > $1.byteCount }
            var evicted: [Buffer] = []
            var total = buffers.reduce(0) { $0 + $1.byteCount }
            while buffers.count > cachedBufferLimit || (total > cachedByteLimit && !buffers.isEmpty) {
                let smallest = buffers.removeLast()
                total -= smallest.byteCount
                evicted.append(smallest)
            }
            return evicted
        }
        for buffer in evicted { buffer.pointer.deallocate() }
    }

    /// Frees every cached buffer (for tests and memory-sensitive callers); buffers in use are not affected.
    static func releaseCached() {
        let all = cache.withLock { buffers in
            defer { buffers.removeAll() }
            return buffers
        }
        for buffer in all { buffer.pointer.deallocate() }
    }

    /// Number of cached buffers and their total bytes (for tests).
    static var cachedSummary: (buffers: Int, bytes: Int) {
        cache.withLock { ($0.count, $0.reduce(0) { $0 + $1.byteCount }) }
    }
}
