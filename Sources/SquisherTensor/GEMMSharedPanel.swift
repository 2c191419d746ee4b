import CSquisherKernels
import Dispatch
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Largest packed `op(B)` (in scalars, 16 MiB) that the threads share instead of each packing their own.
let sharedPanelLimit = 4 << 20

/// Pointers shared by the threads of one product: the operands and the packed `op(B)`.
struct GEMMSharedPointers: @unchecked Sendable {
    let a: UnsafePointer<Float>
    let b: UnsafePointer<Float>
    let c: UnsafeMutablePointer<Float>
    let packedB: UnsafeMutablePointer<Float>
}

/// Work counters of one multithreaded product: the next packing and compute items to claim, and the
/// packing items finished.
final class GEMMWorkCounters: Sendable {
    let nextPack = Atomic<Int>(0)
    let packed = Atomic<Int>(0)
    let nextRows = Atomic<Int>(0)
}

/// Multithreaded product with one shared packed copy of all of `op(B)`, in one dispatch:
///
/// 1. The threads claim packing items (one depth block of a group of `nr`-column slivers) from a shared
///    counter until none is left, then wait until every claimed item is packed.
/// 2. They claim compute items (bands of a few `mr`-row tiles of C, all columns and depths) from a
///    second counter, packing only that band's rows of `op(A)`.
///
/// The items are several per thread, so a thread that the OS delays (this machine is shared) costs
/// only its current item, and mid-sized products split finely. A thread that starts late finds the
/// items taken by the others: nothing waits on a thread that has not started (`concurrentPerform`
/// may run iterations one after the other), so the wait in step 1 cannot deadlock.
func gemmSharedPanel(
    transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, alpha: Float,
    a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
    beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int, configuration: GEMMConfiguration, threads: Int
) {
    let info = csq_sgemm_kernel_for(
        Int32(min(configuration.isaLevel, GEMMKernelInfo.cpuISALevel)), Int32(configuration.kernelVariant))
    let (mr, nr) = (Int(info.mr), Int(info.nr))
    let kernel: csq_sgemm_kernel_fn = info.kernel
    let kcBlock = GEMMPlan.balanced(k, block: configuration.kc, multiple: 1)
    let depthBlocks = (k + kcBlock - 1) / kcBlock
    let paddedN = GEMMPlan.roundUp(n, to: nr)
    let slivers = paddedN / nr
    // Packing items: each depth block split into about 2·threads groups of slivers.
    let sliverGroups = min(slivers, 2 * threads)
    let packItems = depthBlocks * sliverGroups
    // Compute items: bands of whole row tiles, about 4 per thread, at most the mc block.
    let rowTiles = (m + mr - 1) / mr
    let tilesPerBand = max(1, min(max(1, configuration.mc / mr), (rowTiles + 4 * threads - 1) / (4 * threads)))
    let bands = (rowTiles + tilesPerBand - 1) / tilesPerBand
    let bandRows = tilesPerBand * mr
    // Layout: depth block starting at pc occupies [pc·paddedN, (pc + kcCur)·paddedN), slivers of kcCur x nr.
    let raw = UnsafeMutableRawPointer.allocate(byteCount: k * paddedN * MemoryLayout<Float>.stride, alignment: 64)
    defer { raw.deallocate() }
    let shared = GEMMSharedPointers(a: a, b: b, c: c, packedB: raw.bindMemory(to: Float.self, capacity: k * paddedN))
    let counters = GEMMWorkCounters()
    DispatchQueue.concurrentPerform(iterations: threads) { _ in
        while true {
            let item = counters.nextPack.wrappingAdd(1, ordering: .relaxed).oldValue
            guard item < packItems else { break }
            let (block, group) = item.quotientAndRemainder(dividingBy: sliverGroups)
            let pc = block * kcBlock, kcCur = min(kcBlock, k - pc)
            let firstSliver = slivers * group / sliverGroups, lastSliver = slivers * (group + 1) / sliverGroups
            let column = firstSliver * nr
            packB(
                transposed: transposeB, b: shared.b, ldb: ldb, row: pc, column: column, depth: kcCur,
                width: min(n, lastSliver * nr) - column, nr: nr, into: shared.packedB + pc * paddedN + column * kcCur)
            counters.packed.add(1, ordering: .releasing)
        }
        while counters.packed.load(ordering: .acquiring) < packItems { sched_yield() }
        withUnsafeTemporaryAllocation(byteCount: bandRows * kcBlock * MemoryLayout<Float>.stride, alignment: 64) { buffer in
            let packedA = buffer.baseAddress!.assumingMemoryBound(to: Float.self)
            while true {
                let band = counters.nextRows.wrappingAdd(1, ordering: .relaxed).oldValue
                guard band < bands else { break }
                let first = band * bandRows, rows = min(m, first + bandRows) - first
                var pc = 0
                while pc < k {
                    let kcCur = min(kcBlock, k - pc)
                    let passBeta: Float = pc == 0 ? beta : 1
                    let panel = shared.packedB + pc * paddedN
                    packA(
                        transposed: transposeA, a: shared.a, lda: lda, row: first, column: pc, height: rows,
                        depth: kcCur, mr: mr, into: packedA)
                    var jr = 0
                    while jr < n {
                        let nrCur = min(nr, n - jr)
                        let bSliver = UnsafePointer(panel + jr * kcCur)
                        var ir = 0
                        while ir < rows {
                            kernel(
                                kcCur, UnsafePointer(packedA + ir * kcCur), bSliver,
                                shared.c + (first + ir) * ldc + jr, ldc, min(mr, rows - ir), nrCur, alpha, passBeta)
                            ir += mr
                        }
                        jr += nr
                    }
                    pc += kcBlock
                }
            }
        }
    }
}
