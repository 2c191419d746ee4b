import CSquisherKernels

/// Largest depth ``gemmAddScaledSquares(transposeA:transposeB:m:n:k:scale:a:lda:b:ldb:sums:ldSums:configuration:)``
/// takes: the whole depth is one pass of the micro-kernel (the square needs the finished dot product).
public let gemmSquaresMaximumDepth = 1024

/// Adds the scaled squares of a product to `sums`, without storing the product:
/// `sums[i, j] += (scale · P[i, j]) · P[i, j]` with `P = op(A)·op(B)` (`m x n`, depth `k`), rounded as
/// computing `P` with ``gemm(transposeA:transposeB:m:n:k:alpha:a:lda:b:ldb:beta:c:ldc:)`` into memory and
/// then adding its scaled squares (no fused multiply-add in the epilogue), so both ways agree bit for bit.
///
/// For sums of squared per-sample gradients over short sequences (depth = positions): each `mr x nr`
/// tile of `P` is squared in registers by the micro-kernel's epilogue and added to `sums`, so `P` never
/// touches memory. Runs on the calling thread (callers split samples or blocks over threads).
///
/// - Parameters:
///   - transposeA: `A` stored `[k, m]` (`lda >= m`) if true, else `[m, k]` (`lda >= k`).
///   - transposeB: `B` stored `[n, k]` (`ldb >= k`) if true, else `[k, n]` (`ldb >= n`).
///   - sums: `[m, n]`, leading dimension `ldSums >= n`; read and written.
/// - Returns: `false`, with `sums` untouched, where this CPU (or `configuration.isaLevel`) has no
///   squares micro-kernel (below AVX-512) or `k > gemmSquaresMaximumDepth`: the caller then computes the
///   product and squares it. `true` otherwise (also for empty products, which add nothing).
@discardableResult
public func gemmAddScaledSquares(
    transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, scale: Float,
    a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
    sums: UnsafeMutablePointer<Float>, ldSums: Int, configuration: GEMMConfiguration = .current
) -> Bool {
    let info = csq_sgemm_squares_kernel_for(Int32(min(configuration.isaLevel, GEMMKernelInfo.cpuISALevel)))
    guard let kernel = info.kernel, k <= gemmSquaresMaximumDepth else { return false }
    guard m > 0, n > 0, k > 0 else { return true }
    let (mr, nr) = (Int(info.mr), Int(info.nr))
    let vectorized = info.level >= 3
    let mc = GEMMPlan.balanced(m, block: configuration.mc, multiple: mr)
    let panelCount = k * GEMMPlan.roundUp(n, to: nr)
    GEMMScratch.withBuffer(floats: panelCount + mc * k) { packedB in
        // All of op(B) once; then blocks of mc rows of op(A), each multiplied with every sliver of op(B)
        // (a sliver, kc x nr, stays in L1 across the block's tiles).
        packB(
            transposed: transposeB, b: b, ldb: ldb, row: 0, column: 0, depth: k, width: n, nr: nr,
            vectorized: vectorized, into: packedB)
        let packedA = packedB + panelCount
        var ic = 0
        while ic < m {
            let mcCur = min(mc, m - ic)
            packA(
                transposed: transposeA, a: a, lda: lda, row: ic, column: 0, height: mcCur, depth: k, mr: mr,
                vectorized: vectorized, into: packedA)
            var jr = 0
            while jr < n {
                let bSliver = UnsafePointer(packedB + jr * k)
                var ir = 0
                while ir < mcCur {
                    kernel(
                        k, UnsafePointer(packedA + ir * k), bSliver, sums + (ic + ir) * ldSums + jr, ldSums,
                        min(mr, mcCur - ir), min(nr, n - jr), scale, 1)
                    ir += mr
                }
                jr += nr
            }
            ic += mc
        }
    }
    return true
}
