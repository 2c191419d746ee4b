import CSquisherKernels
import Dispatch

/// The shape of one grid product: tiles, slivers, depth blocks, and how packing and compute are cut
/// into claimable items.
struct GEMMGridPlan {
    let mr: Int, nr: Int
    /// The shared packed `op(B)`.
    let panel: GEMMSharedPanelLayout
    var kcBlock: Int { panel.kcBlock }
    var slivers: Int { panel.slivers }
    let rowTiles: Int
    /// Compute units are (row tile, sliver) pairs, tile-major; `chunks` near-equal contiguous runs of them.
    let chunks: Int
    /// Whole row tiles computed together (their `op(A)` rows packed once per depth block, each packed
    /// `op(B)` sliver used for all of them while in L1): about a quarter of a thread's share, at most
    /// the `mc` block (as the bands of ``gemmSharedPanel``).
    let bandTiles: Int

    init(m: Int, n: Int, k: Int, mr: Int, nr: Int, kc: Int, mc: Int, threads: Int, vectorPacking: Bool) {
        self.mr = mr
        self.nr = nr
        panel = GEMMSharedPanelLayout(k: k, n: n, nr: nr, kc: kc, threads: threads, vectorPacking: vectorPacking)
        rowTiles = (m + mr - 1) / mr
        let slivers = panel.slivers
        // Four runs per thread: equal work when no thread is delayed, and a delayed thread costs one run.
        chunks = min(rowTiles * slivers, 4 * threads)
        bandTiles = max(1, min(mc / mr, (rowTiles + 4 * threads - 1) / (4 * threads)))
    }

    var units: Int { rowTiles * slivers }
    /// Scalars of one thread's packed `op(A)` band.
    var bandCount: Int { bandTiles * mr * kcBlock }

    /// Whether a product is small enough for this path: packed `op(A)` and `op(B)` together within
    /// `limit` scalars (``GEMMConfiguration/packedGridLimit``).
    static func fits(m: Int, n: Int, k: Int, mr: Int, nr: Int, limit: Int) -> Bool {
        k * (GEMMPlan.roundUp(m, to: mr) + GEMMPlan.roundUp(n, to: nr)) <= limit
    }
}

/// Multithreaded product of a mid-sized problem in one dispatch, with `C` split evenly as a grid of
/// tiles rather than by whole rows:
///
/// 1. The threads pack `op(B)` together (``packSharedPanel(_:transposed:b:ldb:into:counters:)``).
/// 2. They claim runs of compute units. A unit is one `mr x nr` tile of `C` over the whole depth; the
///    units are ordered row tile by row tile, so a run is mostly whole row tiles (computed in bands of
///    ``GEMMGridPlan/bandTiles``, whose `op(A)` rows the thread packs itself) plus part of a row tile at
///    either end. The runs differ by at most one unit, so two threads that are not disturbed finish
///    together whatever the shape: a batch of 128 rows (11 tiles of 12) splits 5.5 : 5.5, where a split
///    by whole rows gives 6 : 5.
func gemmPackedGrid(
    transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, alpha: Float,
    a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
    beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int, configuration: GEMMConfiguration, threads: Int
) {
    let info = csq_sgemm_kernel_for(
        Int32(min(configuration.isaLevel, GEMMKernelInfo.cpuISALevel)), Int32(configuration.kernelVariant))
    let kernel: csq_sgemm_kernel_fn = info.kernel
    let plan = GEMMGridPlan(m: m, n: n, k: k, mr: Int(info.mr), nr: Int(info.nr), kc: configuration.depthBlock(m: m, n: n), mc: configuration.mc, threads: threads,
        vectorPacking: info.level >= 3)
    GEMMScratch.withBuffer(floats: plan.panel.count) { packedB in
        let shared = GEMMSharedPointers(a: a, b: b, c: c, packedB: packedB)
        let counters = GEMMWorkCounters()
        DispatchQueue.concurrentPerform(iterations: threads) { _ in
            packSharedPanel(plan.panel, transposed: transposeB, b: shared.b, ldb: ldb, into: shared.packedB, counters: counters)
            GEMMScratch.withBuffer(floats: plan.bandCount) { packedA in
                while true {
                    let chunk = counters.nextCompute.wrappingAdd(1, ordering: .relaxed).oldValue
                    guard chunk < plan.chunks else { break }
                    var units = plan.units * chunk / plan.chunks..<plan.units * (chunk + 1) / plan.chunks
                    while let (tiles, slivers) = nextGridSegment(&units, plan: plan) {
                        gridCompute(
                            tiles: tiles, slivers: slivers, plan: plan, kernel: kernel, transposeA: transposeA, m: m, n: n,
                            k: k, alpha: alpha, lda: lda, beta: beta, ldc: ldc, packedA: packedA, shared)
                    }
                }
            }
        }
    }
}

/// Takes the next segment off the front of a run of compute units (unit `u` is sliver `u % slivers` of
/// row tile `u / slivers`): a band of up to ``GEMMGridPlan/bandTiles`` whole row tiles, or the part of
/// one row tile that the run holds (the rest belongs to a neighbouring run). Nil when the run is empty.
func nextGridSegment(_ units: inout Range<Int>, plan: GEMMGridPlan) -> (tiles: Range<Int>, slivers: Range<Int>)? {
    guard !units.isEmpty else { return nil }
    let (tile, first) = units.lowerBound.quotientAndRemainder(dividingBy: plan.slivers)
    let last = min(plan.slivers, first + units.count)
    guard first == 0, last == plan.slivers else {
        units = units.lowerBound + last - first..<units.upperBound
        return (tile..<tile + 1, first..<last)
    }
    var end = tile + 1
    while end < tile + plan.bandTiles, (end + 1) * plan.slivers <= units.upperBound { end += 1 }
    units = end * plan.slivers..<units.upperBound
    return (tile..<end, 0..<plan.slivers)
}

/// Computes one segment of ``gemmPackedGrid``: the row tiles `tiles` of `C` in the column slivers
/// `slivers`, over the whole depth. For each depth block (the first applies `beta`), the segment's rows
/// of `op(A)` are packed into `packedA`, then each packed sliver of `op(B)` is multiplied with every tile.
@inline(__always)
private func gridCompute(
    tiles: Range<Int>, slivers: Range<Int>, plan: GEMMGridPlan, kernel: csq_sgemm_kernel_fn, transposeA: Bool,
    m: Int, n: Int, k: Int, alpha: Float, lda: Int, beta: Float, ldc: Int,
    packedA: UnsafeMutablePointer<Float>, _ shared: GEMMSharedPointers
) {
    let (mr, nr) = (plan.mr, plan.nr)
    let firstRow = tiles.lowerBound * mr, rows = min(m, tiles.upperBound * mr) - firstRow
    var pc = 0
    while pc < k {
        let kcCur = min(plan.kcBlock, k - pc)
        let passBeta: Float = pc == 0 ? beta : 1
        packA(
            transposed: transposeA, a: shared.a, lda: lda, row: firstRow, column: pc, height: rows, depth: kcCur,
            mr: mr, vectorized: plan.panel.vectorPacking, into: packedA)
        for sliver in slivers {
            let column = sliver * nr
            let bSliver = plan.panel.sliver(shared.packedB, depth: pc, column: column)
            for tile in tiles {
                let row = tile * mr
                kernel(
                    kcCur, UnsafePointer(packedA + (row - firstRow) * kcCur), bSliver, shared.c + row * ldc + column, ldc,
                    min(mr, m - row), min(nr, n - column), alpha, passBeta)
            }
        }
        pc += plan.kcBlock
    }
}
