/// One tensor a layer makes on every pass (an activation or an input gradient), whose memory is reused
/// by the next pass when nothing else holds the previous tensor any more.
///
/// A layer keeps one of these per output it makes and calls ``make(shape:initializingWith:)`` each pass.
/// When the tensor made by the last call is no longer referenced outside this holder (the caller and
/// the layers after it have let it go) and has the same number of scalars, its storage is overwritten in
/// place; otherwise a new tensor is allocated and the old one is left untouched. Value semantics are
/// kept: a tensor the caller still holds is never written. Reuse saves the page faults of a fresh
/// large allocation (the C allocator may hand large freed blocks back to the OS, and a new block then
/// faults its pages in again, zero-filled by the kernel), which cost about 15-20% of a small CNN's
/// training epoch.
///
/// Between passes the holder keeps the last tensor alive (one activation's memory per holder). A holder
/// of two slots also keeps the tensor before it: for an output that the next layer caches until its own
/// next forward (so the last one is still held when this layer makes the next), the one before is free
/// by then; it costs one more activation's memory between passes.
public struct ReusableTensor: Sendable {
    /// The tensor made by the last call (shares its storage with the caller's copy).
    private var last: Tensor?
    /// With two slots, the tensor made by the call before the last one.
    private var earlier: Tensor?
    /// 1 or 2: how many of the latest tensors are kept for reuse.
    public let slots: Int

    /// An empty holder of `slots` (1 or 2, clamped) slots: the first ``make(shape:initializingWith:)`` allocates.
    public init(slots: Int = 1) { self.slots = Swift.min(2, Swift.max(1, slots)) }

    /// A tensor of `shape` whose scalars `body` must all write (they are not zero-filled): the storage
    /// of a kept tensor when nothing else references it and its count matches (the last one first), else
    /// new memory.
    public mutating func make(shape: [Int], initializingWith body: (UnsafeMutableBufferPointer<Float>) -> Void) -> Tensor {
        let count = shape.reduce(1, *)
        var reuse = Self.reusable(&last, count: count)
        if !reuse, slots == 2, Self.reusable(&earlier, count: count) {
            swap(&last, &earlier)
            reuse = true
        }
        // Checked and written in place (no temporary copy holding a second reference).
        if reuse {
            last!.storedShape = shape
            last!.storage.withUnsafeMutableBufferPointer { body($0) }
            return last!
        }
        let tensor = Tensor(uninitializedShape: shape, initializingWith: body)
        if slots == 2 { earlier = last }
        last = tensor
        return tensor
    }

    /// Whether the next ``make(shape:initializingWith:)`` of `count` scalars would reuse memory (for tests).
    public mutating func wouldReuse(count: Int) -> Bool {
        Self.reusable(&last, count: count) || (slots == 2 && Self.reusable(&earlier, count: count))
    }

    /// Whether `kept` holds a tensor of `count > 0` scalars whose storage nothing else references.
    private static func reusable(_ kept: inout Tensor?, count: Int) -> Bool {
        count > 0 && kept?.storage.count == count && kept?.storage.isUniquelyReferenced() == true
    }

    /// Lets go of the kept tensors (their memory is freed if nothing else holds them).
    public mutating func release() {
        last = nil
        earlier = nil
    }
}

/// Stands for the storage object of a `[Float]` when asking for its reference count: any native Swift
/// class does, since only the object's reference count is read.
private final class ArrayStorageProbe {}

extension Array where Element == Float {
    /// Whether this array's storage is referenced by this array alone, without copying it.
    ///
    /// `Array` has no public uniqueness test (its copy-on-write check copies the elements when the
    /// storage is shared, which is the cost a caller about to overwrite them wants to avoid). A
    /// `[Float]` is one strong reference to a native Swift storage object (`MemoryLayout<[Float]>.size`
    /// is one pointer, checked here): the reference is moved into a variable of a concrete class type
    /// (an existential `AnyObject` would be copied when opened, and never look unique), asked with
    /// `isKnownUniquelyReferenced`, and moved back. The empty-array singleton is never unique.
    fileprivate mutating func isUniquelyReferenced() -> Bool {
        guard MemoryLayout<[Float]>.size == MemoryLayout<ArrayStorageProbe>.size else { return false }
        var storage = unsafeBitCast(self, to: ArrayStorageProbe.self)
        self = []
        defer { self = unsafeBitCast(storage, to: [Float].self) }
        return isKnownUniquelyReferenced(&storage)
    }
}
