import CSquisherKernels
import Dispatch
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Pointers shared by the threads of one grid product: the operands and both packed copies.
struct GEMMGridPointers: @unchecked Sendable {
    let a: UnsafePointer<Float>
    let b: UnsafePointer<Float>
    let c: UnsafeMutablePointer<Float>
    let packedA: UnsafeMutablePointer<Float>
    let packedB: UnsafeMutablePointer<Float>
}

/// The shape of one grid product: tiles, slivers, depth blocks, which tiles and slivers are packed,
/// and how packing and compute are cut into claimable items.
struct GEMMGridPlan {
    let mr: Int, nr: Int
    let kcBlock: Int
    let depthBlocks: Int
    let rowTiles: Int, slivers: Int
    var paddedM: Int { rowTiles * mr }
    var paddedN: Int { slivers * nr }
    /// Whether whole tiles of `op(A)` (slivers of `op(B)`) are read in place by the micro-kernel instead
    /// of packed: when the operand is stored k-major (A transposed, B not), so that the `mr` (`nr`)
    /// values of one depth step are contiguous, and its leading dimension is not a multiple of 32
    /// scalars (128 bytes), so that the rows of one sliver fall into different L1 cache sets. A last,
    /// partial tile or sliver is still packed (zero-padded, and never read past the operand's end).
    let directA: Bool, directB: Bool
    /// The row tiles and column slivers that are packed.
    let packedTiles: Range<Int>, packedSlivers: Range<Int>
    /// Packing items per depth block: `aGroups` groups of packed row tiles of `op(A)`, then `bGroups`
    /// groups of packed column slivers of `op(B)`.
    let aGroups: Int, bGroups: Int
    /// Compute units are (sliver, row tile) pairs, sliver-major; `chunks` near-equal contiguous runs of them.
    let chunks: Int

    init(
        m: Int, n: Int, k: Int, mr: Int, nr: Int, kc: Int, threads: Int,
        transposeA: Bool, lda: Int, transposeB: Bool, ldb: Int
    ) {
        self.mr = mr
        self.nr = nr
        kcBlock = GEMMPlan.balanced(k, block: kc, multiple: 1)
        depthBlocks = (k + kcBlock - 1) / kcBlock
        rowTiles = (m + mr - 1) / mr
        slivers = (n + nr - 1) / nr
        directA = transposeA && lda % 32 != 0
        directB = !transposeB && ldb % 32 != 0
        packedTiles = directA ? (m % mr == 0 ? rowTiles..<rowTiles : rowTiles - 1..<rowTiles) : 0..<rowTiles
        packedSlivers = directB ? (n % nr == 0 ? slivers..<slivers : slivers - 1..<slivers) : 0..<slivers
        aGroups = min(packedTiles.count, 2 * threads)
        bGroups = min(packedSlivers.count, 2 * threads)
        // Four runs per thread: equal work when no thread is delayed, and a delayed thread costs one run.
        chunks = min(rowTiles * slivers, 4 * threads)
    }

    var packItems: Int { depthBlocks * (aGroups + bGroups) }
    var units: Int { rowTiles * slivers }

    /// Whether a product is small enough for this path: both packed operands within `limit` scalars
    /// (``GEMMConfiguration/packedGridLimit``).
    static func fits(m: Int, n: Int, k: Int, mr: Int, nr: Int, limit: Int) -> Bool {
        k * (GEMMPlan.roundUp(m, to: mr) + GEMMPlan.roundUp(n, to: nr)) <= limit
    }
}

/// Work counters of one grid product: the next packing item and compute run to claim, and the packing
/// items finished.
final class GEMMGridCounters: Sendable {
    let nextPack = Atomic<Int>(0)
    let packed = Atomic<Int>(0)
    let nextChunk = Atomic<Int>(0)
}

/// Multithreaded product of a mid-sized problem in one dispatch, with both operands packed once (or
/// read in place where they are already laid out as the micro-kernel reads them, see
/// ``GEMMGridPlan/directA``):
///
/// 1. The threads claim packing items (one depth block of a group of `mr`-row tiles of `op(A)` or of
///    `nr`-column slivers of `op(B)`) until none is left, then wait until every claimed item is packed.
/// 2. They claim runs of compute units. A unit is one `mr x nr` tile of `C` over the whole depth; the
///    units are ordered sliver by sliver, so a run is mostly whole slivers, each packed `op(B)` block
///    staying in L1 while the run's `op(A)` tiles stream past it. The runs are near-equal in units
///    (they differ by at most one), so two threads that are not disturbed finish together whatever the
///    shape: a product with few rows (batch 128: 11 tiles) or few columns splits as evenly as a square one.
///
/// As in ``gemmSharedPanel``, nothing waits on a thread that has not started, so the wait cannot deadlock.
func gemmPackedGrid(
    transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, alpha: Float,
    a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
    beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int, configuration: GEMMConfiguration, threads: Int
) {
    let info = csq_sgemm_kernel_for(
        Int32(min(configuration.isaLevel, GEMMKernelInfo.cpuISALevel)), Int32(configuration.kernelVariant))
    let kernel: csq_sgemm_kernel_fn = info.kernel
    let plan = GEMMGridPlan(
        m: m, n: n, k: k, mr: Int(info.mr), nr: Int(info.nr), kc: configuration.kc, threads: threads,
        transposeA: transposeA, lda: lda, transposeB: transposeB, ldb: ldb)
    let aCount = GEMMPlan.roundUp(k * plan.paddedM, to: 16)
    let count = aCount + k * plan.paddedN
    let raw = UnsafeMutableRawPointer.allocate(byteCount: count * MemoryLayout<Float>.stride, alignment: 64)
    defer { raw.deallocate() }
    let base = raw.bindMemory(to: Float.self, capacity: count)
    let shared = GEMMGridPointers(a: a, b: b, c: c, packedA: base, packedB: base + aCount)
    let counters = GEMMGridCounters()
    DispatchQueue.concurrentPerform(iterations: threads) { _ in
        while true {
            let item = counters.nextPack.wrappingAdd(1, ordering: .relaxed).oldValue
            guard item < plan.packItems else { break }
            gridPack(
                item: item, plan: plan, transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k,
                lda: lda, ldb: ldb, shared)
            counters.packed.add(1, ordering: .releasing)
        }
        while counters.packed.load(ordering: .acquiring) < plan.packItems { sched_yield() }
        while true {
            let chunk = counters.nextChunk.wrappingAdd(1, ordering: .relaxed).oldValue
            guard chunk < plan.chunks else { break }
            gridCompute(
                units: plan.units * chunk / plan.chunks..<plan.units * (chunk + 1) / plan.chunks, plan: plan,
                kernel: kernel, m: m, n: n, k: k, alpha: alpha, lda: lda, ldb: ldb, beta: beta, ldc: ldc, shared)
        }
    }
}

/// Packs one item of ``gemmPackedGrid``'s first phase. Depth block `pc` of packed `op(A)` occupies
/// `[pc·paddedM, (pc + kcCur)·paddedM)` with tiles of `kcCur x mr`; likewise `op(B)` with slivers of `kcCur x nr`.
@inline(__always)
private func gridPack(
    item: Int, plan: GEMMGridPlan, transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int,
    lda: Int, ldb: Int, _ shared: GEMMGridPointers
) {
    let (block, group) = item.quotientAndRemainder(dividingBy: plan.aGroups + plan.bGroups)
    let pc = block * plan.kcBlock, kcCur = min(plan.kcBlock, k - pc)
    if group < plan.aGroups {
        let tiles = plan.packedTiles
        let first = (tiles.lowerBound + tiles.count * group / plan.aGroups) * plan.mr
        let last = min(m, (tiles.lowerBound + tiles.count * (group + 1) / plan.aGroups) * plan.mr)
        packA(
            transposed: transposeA, a: shared.a, lda: lda, row: first, column: pc, height: last - first, depth: kcCur,
            mr: plan.mr, into: shared.packedA + pc * plan.paddedM + first * kcCur)
    } else {
        let g = group - plan.aGroups, slivers = plan.packedSlivers
        let first = (slivers.lowerBound + slivers.count * g / plan.bGroups) * plan.nr
        let last = min(n, (slivers.lowerBound + slivers.count * (g + 1) / plan.bGroups) * plan.nr)
        packB(
            transposed: transposeB, b: shared.b, ldb: ldb, row: pc, column: first, depth: kcCur, width: last - first,
            nr: plan.nr, into: shared.packedB + pc * plan.paddedN + first * kcCur)
    }
}

/// Computes the compute units `units` of ``gemmPackedGrid`` (unit `u` is tile `u % rowTiles` of sliver
/// `u / rowTiles`): for each sliver in the run, every depth block in order (the first applies `beta`),
/// the run's tiles of that sliver, each operand read packed or in place (``GEMMGridPlan/directA``).
@inline(__always)
private func gridCompute(
    units: Range<Int>, plan: GEMMGridPlan, kernel: csq_sgemm_kernel_fn, m: Int, n: Int, k: Int,
    alpha: Float, lda: Int, ldb: Int, beta: Float, ldc: Int, _ shared: GEMMGridPointers
) {
    let (mr, nr) = (plan.mr, plan.nr)
    var u = units.lowerBound
    while u < units.upperBound {
        let (sliver, firstTile) = u.quotientAndRemainder(dividingBy: plan.rowTiles)
        let lastTile = min(plan.rowTiles, firstTile + units.upperBound - u)
        let column = sliver * nr, width = min(nr, n - column)
        let sliverPacked = plan.packedSlivers.contains(sliver)
        var pc = 0
        while pc < k {
            let kcCur = min(plan.kcBlock, k - pc)
            let passBeta: Float = pc == 0 ? beta : 1
            let (bSliver, bStride) = sliverPacked
                ? (UnsafePointer(shared.packedB + pc * plan.paddedN + column * kcCur), nr)
                : (shared.b + pc * ldb + column, ldb)
            let aBlock = shared.packedA + pc * plan.paddedM
            for tile in firstTile..<lastTile {
                let row = tile * mr
                let (aTile, aStride) = plan.packedTiles.contains(tile)
                    ? (UnsafePointer(aBlock + row * kcCur), mr)
                    : (shared.a + pc * lda + row, lda)
                kernel(
                    kcCur, aTile, aStride, bSliver, bStride, shared.c + row * ldc + column, ldc,
                    min(mr, m - row), width, alpha, passBeta)
            }
            pc += plan.kcBlock
        }
        u += lastTile - firstTile
    }
}
