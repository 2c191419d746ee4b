import SquisherTensor
import Testing

/// `ReusableTensor` reuses the last tensor's memory exactly when nothing else holds it, and never
/// writes into a tensor a caller still has (value semantics).
@Suite("Reusable tensor memory")
struct ReusableTensorTests {
    /// The address of a tensor's storage (compared only, never dereferenced).
    static func address(_ tensor: Tensor) -> UnsafePointer<Float>? { tensor.withUnsafeBufferPointer { $0.baseAddress } }

    @Test("memory is reused after the caller lets go, with the new shape and values")
    func reuseWhenReleased() {
        var holder = ReusableTensor()
        var first: Tensor? = holder.make(shape: [2, 3]) { for i in $0.indices { $0[i] = Float(i) } }
        let firstAddress = first.map(Self.address)
        let whileHeld = holder.wouldReuse(count: 6)
        #expect(!whileHeld, "the caller still holds the first tensor")
        first = nil
        let afterRelease = holder.wouldReuse(count: 6), otherCount = holder.wouldReuse(count: 5)
        #expect(afterRelease)
        #expect(!otherCount, "a different count needs new memory")
        let second = holder.make(shape: [3, 2]) { for i in $0.indices { $0[i] = Float(10 + i) } }
        #expect(Self.address(second) == firstAddress)
        #expect(second.shape == [3, 2])
        #expect(second.scalars == [10, 11, 12, 13, 14, 15])
    }

    @Test("a tensor the caller holds, or a reshaped view of it, is never overwritten")
    func heldTensorsAreKept() throws {
        var holder = ReusableTensor()
        let first = holder.make(shape: [4]) { $0.update(repeating: 1) }
        let second = holder.make(shape: [4]) { $0.update(repeating: 2) }
        #expect(first.scalars == [1, 1, 1, 1])
        #expect(second.scalars == [2, 2, 2, 2])
        #expect(Self.address(first) != Self.address(second))
        let view = try second.reshaped([2, 2])  // shares the storage of `second`
        _ = consume second
        let third = holder.make(shape: [4]) { $0.update(repeating: 3) }
        #expect(view.scalars == [2, 2, 2, 2])
        #expect(third.scalars == [3, 3, 3, 3])
        var empty = ReusableTensor()
        #expect(empty.make(shape: [0, 3]) { _ in }.shape == [0, 3])
        let emptyReuse = empty.wouldReuse(count: 0)
        #expect(!emptyReuse)
    }

    @Test("two slots: the tensor before the last is reused while the last is held, never a held one")
    func twoSlots() {
        var holder = ReusableTensor(slots: 2)
        #expect(holder.slots == 2 && ReusableTensor(slots: 5).slots == 2 && ReusableTensor(slots: 0).slots == 1)
        var first: Tensor? = holder.make(shape: [4]) { $0.update(repeating: 1) }
        let firstAddress = first.map(Self.address)
        let second = holder.make(shape: [4]) { $0.update(repeating: 2) }  // first still held: new memory
        #expect(Self.address(second) != firstAddress)
        let whileBothHeld = holder.wouldReuse(count: 4)
        #expect(!whileBothHeld)
        first = nil
        let third = holder.make(shape: [2, 2]) { $0.update(repeating: 3) }  // second held, first free
        #expect(Self.address(third) == firstAddress && third.shape == [2, 2])
        #expect(second.scalars == [2, 2, 2, 2] && third.scalars == [3, 3, 3, 3])
        var single = ReusableTensor()
        var a: Tensor? = single.make(shape: [4]) { $0.update(repeating: 1) }
        let b = single.make(shape: [4]) { $0.update(repeating: 2) }
        a = nil
        withExtendedLifetime(b) {
            let oneSlotReuse = single.wouldReuse(count: 4)
            #expect(!oneSlotReuse, "one slot keeps only the last tensor, which the caller holds")
        }
        #expect(a == nil)
    }
}
