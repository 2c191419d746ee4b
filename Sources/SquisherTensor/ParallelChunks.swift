import Dispatch

/// Splits `count` independent elements into contiguous chunks, one per thread, and runs `body` on each
/// chunk (`body(start, end)`), for element-wise layers and pooling. Uses up to
/// ``GEMMConfiguration/maximumThreads`` threads, and only one when each would get fewer than
/// `minimumPerThread` elements (below that, waking a thread costs more than it saves). Chunk borders
/// are multiples of `alignment` elements (e.g. whole image planes), so chunks never split one unit.
///
/// `body` must only touch the elements of its chunk; pass buffers as `@unchecked Sendable` pointers.
public func parallelChunks(
    count: Int, alignment: Int = 16, minimumPerThread: Int = 1 << 15, _ body: @Sendable (Int, Int) -> Void
) {
    guard count > 0 else { return }
    let units = (count + alignment - 1) / alignment
    let threads = max(1, min(GEMMConfiguration.current.maximumThreads, count / max(1, minimumPerThread), units))
    if threads == 1 {
        body(0, count)
        return
    }
    DispatchQueue.concurrentPerform(iterations: threads) { part in
        let start = min(count, units * part / threads * alignment)
        let end = min(count, units * (part + 1) / threads * alignment)
        if start < end { body(start, end) }
    }
}

/// A pointer handed deliberately to the threads of ``parallelChunks(count:alignment:minimumPerThread:_:)``,
/// each of which touches a disjoint range.
public struct SendablePointer<Pointee>: @unchecked Sendable {
    /// The address.
    public let pointer: UnsafeMutablePointer<Pointee>
    /// Wraps a mutable pointer.
    public init(_ pointer: UnsafeMutablePointer<Pointee>) { self.pointer = pointer }
    /// Wraps a read-only pointer (the threads only read through it).
    public init(_ pointer: UnsafePointer<Pointee>) { self.pointer = UnsafeMutablePointer(mutating: pointer) }
}
