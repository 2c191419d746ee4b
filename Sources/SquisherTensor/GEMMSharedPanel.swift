import CSquisherKernels
import Dispatch

/// Largest packed `op(B)` (in scalars, 16 MiB) that the threads share instead of each packing their own.
let sharedPanelLimit = 4 << 20

/// Pointers shared by the threads of one product: the operands and the packed `op(B)`.
struct GEMMSharedPointers: @unchecked Sendable {
    let a: UnsafePointer<Float>
    let b: UnsafePointer<Float>
    let c: UnsafeMutablePointer<Float>
    let packedB: UnsafeMutablePointer<Float>
}

/// Multithreaded product with one shared packed copy of all of `op(B)`, in one dispatch:
///
/// 1. The threads pack `op(B)` together (``packSharedPanel(_:transposed:b:ldb:into:counters:)``).
/// 2. They claim compute items (bands of a few `mr`-row tiles of C, all columns and depths; the last
///    bands thinner, ``guidedBandStarts(rowTiles:largest:threads:)``) from a second counter, packing only
///    that band's rows of `op(A)`.
///
/// The items are several per thread, so a thread that the OS delays (this machine is shared) costs
/// only its current item, and mid-sized products split finely.
func gemmSharedPanel(
    transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, alpha: Float,
    a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
    beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int, configuration: GEMMConfiguration, threads: Int
) {
    let info = csq_sgemm_kernel_for(
        Int32(min(configuration.isaLevel, GEMMKernelInfo.cpuISALevel)), Int32(configuration.kernelVariant))
    let (mr, nr) = (Int(info.mr), Int(info.nr))
    let kernel: csq_sgemm_kernel_fn = info.kernel
    let layout = GEMMSharedPanelLayout(
        k: k, n: n, nr: nr, kc: configuration.depthBlock(m: m, n: n), threads: threads, vectorPacking: info.level >= 3)
    let kcBlock = layout.kcBlock
    // Compute items: bands of whole row tiles, about 4 per thread and at most the mc block, shrinking
    // towards the end (guidedBandStarts).
    let rowTiles = (m + mr - 1) / mr
    let tilesPerBand = max(1, min(max(1, configuration.mc / mr), (rowTiles + 4 * threads - 1) / (4 * threads)))
    let bandStarts = guidedBandStarts(rowTiles: rowTiles, largest: tilesPerBand, threads: threads)
    let bands = bandStarts.count - 1
    let bandRows = tilesPerBand * mr
    GEMMScratch.withBuffer(floats: layout.count) { packedB in
        let shared = GEMMSharedPointers(a: a, b: b, c: c, packedB: packedB)
        let counters = GEMMWorkCounters()
        DispatchQueue.concurrentPerform(iterations: threads) { _ in
            packSharedPanel(layout, transposed: transposeB, b: shared.b, ldb: ldb, into: shared.packedB, counters: counters)
            GEMMScratch.withBuffer(floats: bandRows * kcBlock) { packedA in
                while true {
                    let band = counters.nextCompute.wrappingAdd(1, ordering: .relaxed).oldValue
                    guard band < bands else { break }
                    let first = bandStarts[band] * mr
                    sharedPanelBand(
                        rows: first..<min(m, bandStarts[band + 1] * mr), layout: layout, kernel: kernel, mr: mr,
                        transposeA: transposeA, n: n, alpha: alpha, lda: lda, beta: beta, ldc: ldc, packedA: packedA, shared)
                }
            }
        }
    }
}

/// Computes one band of ``gemmSharedPanel``: the rows `rows` of `C` (whole `mr` tiles but the last), all
/// columns, over the whole depth. For each depth block (the first applies `beta`), the band's rows of
/// `op(A)` are packed into `packedA`, then each packed sliver of `op(B)` is multiplied with every tile.
@inline(__always)
private func sharedPanelBand(
    rows: Range<Int>, layout: GEMMSharedPanelLayout, kernel: csq_sgemm_kernel_fn, mr: Int, transposeA: Bool,
    n: Int, alpha: Float, lda: Int, beta: Float, ldc: Int, packedA: UnsafeMutablePointer<Float>,
    _ shared: GEMMSharedPointers
) {
    let (first, height, nr, k) = (rows.lowerBound, rows.count, layout.nr, layout.k)
    var pc = 0
    while pc < k {
        let kcCur = min(layout.kcBlock, k - pc)
        let passBeta: Float = pc == 0 ? beta : 1
        packA(
            transposed: transposeA, a: shared.a, lda: lda, row: first, column: pc, height: height, depth: kcCur,
            mr: mr, vectorized: layout.vectorPacking, into: packedA)
        var jr = 0
        while jr < n {
            let nrCur = min(nr, n - jr)
            let bSliver = layout.sliver(shared.packedB, depth: pc, column: jr)
            var ir = 0
            while ir < height {
                kernel(
                    kcCur, UnsafePointer(packedA + ir * kcCur), bSliver, shared.c + (first + ir) * ldc + jr, ldc,
                    min(mr, height - ir), nrCur, alpha, passBeta)
                ir += mr
            }
            jr += nr
        }
        pc += layout.kcBlock
    }
}

/// Row-tile boundaries of the compute bands: bands of `largest` tiles while much work is left, then
/// shrinking (each about a share of what is left over `2 · threads`), so the last bands the threads
/// claim are short and the threads finish together.
func guidedBandStarts(rowTiles: Int, largest: Int, threads: Int) -> [Int] {
    var starts = [0]
    var next = 0
    while next < rowTiles {
        let remaining = rowTiles - next
        next += max(1, min(largest, (remaining + 2 * threads - 1) / (2 * threads)))
        starts.append(next)
    }
    return starts
}
