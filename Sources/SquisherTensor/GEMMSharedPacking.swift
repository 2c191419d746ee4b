import Dispatch
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Work counters of one multithreaded product: the next packing item and compute item to claim, and
/// the packing items finished.
final class GEMMWorkCounters: Sendable {
    let nextPack = Atomic<Int>(0)
    let packed = Atomic<Int>(0)
    let nextCompute = Atomic<Int>(0)
}

/// A packed copy of all of `op(B)` (`k x n`) that the threads of one product fill together and then share.
///
/// Layout: the depth block starting at `pc` occupies `[pc·paddedN, (pc + kcCur)·paddedN)`, as slivers of
/// `kcCur x nr` scalars (``packB(transposed:b:ldb:row:column:depth:width:nr:into:)``), so the sliver of
/// columns `j ..< j + nr` in that block starts at `pc·paddedN + j·kcCur`.
struct GEMMSharedPanelLayout {
    let k: Int, n: Int, nr: Int
    /// Depth of a block (the last one may be shorter) and the number of blocks.
    let kcBlock: Int, depthBlocks: Int
    /// Column slivers of `nr`, and `n` rounded up to them.
    let slivers: Int
    var paddedN: Int { slivers * nr }
    /// Packing items per depth block: groups of column slivers (about 2 per thread).
    let groups: Int
    /// Whether the AVX-512 packing kernels pack the panel (``GEMMPlan/vectorPacking``).
    let vectorPacking: Bool
    var packItems: Int { depthBlocks * groups }
    /// Scalars of the packed copy.
    var count: Int { k * paddedN }

    init(k: Int, n: Int, nr: Int, kc: Int, threads: Int, vectorPacking: Bool) {
        self.k = k
        self.vectorPacking = vectorPacking
        self.n = n
        self.nr = nr
        kcBlock = GEMMPlan.balanced(k, block: kc, multiple: 1)
        depthBlocks = (k + kcBlock - 1) / kcBlock
        slivers = (n + nr - 1) / nr
        groups = min(slivers, 2 * threads)
    }

    /// The packed sliver of columns `column ..< column + nr` (a multiple of `nr`) in the depth block at `pc`.
    @inline(__always)
    func sliver(_ packed: UnsafeMutablePointer<Float>, depth pc: Int, column: Int) -> UnsafePointer<Float> {
        UnsafePointer(packed + pc * paddedN + column * min(kcBlock, k - pc))
    }
}

/// Run by every thread of a product at its start: claims packing items (one depth block of a group of
/// column slivers of `op(B)`) from `counters` until none is left, packs them into `packed`, then waits
/// until every item is packed (by any thread). Nothing waits on a thread that has not started (a thread
/// that starts late finds the items taken), so the wait cannot deadlock even when `concurrentPerform`
/// runs the iterations one after the other.
@inline(__always)
func packSharedPanel(
    _ layout: GEMMSharedPanelLayout, transposed: Bool, b: UnsafePointer<Float>, ldb: Int,
    into packed: UnsafeMutablePointer<Float>, counters: GEMMWorkCounters
) {
    while true {
        let item = counters.nextPack.wrappingAdd(1, ordering: .relaxed).oldValue
        guard item < layout.packItems else { break }
        let (block, group) = item.quotientAndRemainder(dividingBy: layout.groups)
        let pc = block * layout.kcBlock, kcCur = min(layout.kcBlock, layout.k - pc)
        let first = layout.slivers * group / layout.groups * layout.nr
        let last = min(layout.n, layout.slivers * (group + 1) / layout.groups * layout.nr)
        packB(
            transposed: transposed, b: b, ldb: ldb, row: pc, column: first, depth: kcCur, width: last - first,
            nr: layout.nr, vectorized: layout.vectorPacking, into: packed + pc * layout.paddedN + first * kcCur)
        counters.packed.add(1, ordering: .releasing)
    }
    while counters.packed.load(ordering: .acquiring) < layout.packItems { sched_yield() }
}
