import CSquisherKernels

/// Largest depth the squares of a product take (``GEMMSquaresKernel``): the whole depth is one pass of
/// the micro-kernel (the square needs the finished dot product).
public let gemmSquaresMaximumDepth = 1024

/// The micro-kernel that adds the scaled squares of a product to a matrix of sums without storing the
/// product: `sums[i, j] += (scale · P[i, j]) · P[i, j]` with `P = op(A)·op(B)` (`m x n`, depth `k`),
/// rounded as computing `P` with ``gemm(transposeA:transposeB:m:n:k:alpha:a:lda:b:ldb:beta:c:ldc:)``
/// into memory and then adding its scaled squares (no fused multiply-add in the epilogue): both ways
/// agree bit for bit when `gemm` makes one depth pass (`k` up to its depth block, 256 or 512).
///
/// For sums of squared per-sample gradients over short sequences (depth = positions): each `mr x nr`
/// tile of `P` is squared in registers by the micro-kernel's epilogue and added to `sums`, so `P` never
/// touches memory. An operand used by several products (one sample's activations against blocks of
/// the other side) can be packed once (``packA(transposed:m:k:a:lda:into:)``) and passed packed.
/// Everything runs on the calling thread (callers split samples or blocks over threads).
public struct GEMMSquaresKernel: Sendable {
    /// Rows (`mr`) and columns (`nr`) of the register tile: packed `op(A)` comes in slivers of `mr`
    /// rows, packed `op(B)` in slivers of `nr` columns.
    public let tileRows: Int, tileColumns: Int
    private let kernel: csq_sgemm_kernel_fn
    private let mc: Int

    /// The kernel for `configuration`'s instruction-set level, or nil where there is none (below
    /// AVX-512): the caller then computes the product and squares it.
    public init?(configuration: GEMMConfiguration = .current) {
        let info = csq_sgemm_squares_kernel_for(Int32(min(configuration.isaLevel, GEMMKernelInfo.cpuISALevel)))
        guard let kernel = info.kernel, info.level >= 3 else { return nil }
        self.kernel = kernel
        tileRows = Int(info.mr)
        tileColumns = Int(info.nr)
        mc = configuration.mc
    }

    /// Scalars of `op(A)` (`m x k`) packed: `m` rounded up to whole slivers of ``tileRows``, times `k`.
    public func packedACount(m: Int, k: Int) -> Int { GEMMPlan.roundUp(m, to: tileRows) * k }
    /// Scalars of `op(B)` (`k x n`) packed: `n` rounded up to whole slivers of ``tileColumns``, times `k`.
    public func packedBCount(n: Int, k: Int) -> Int { GEMMPlan.roundUp(n, to: tileColumns) * k }

    /// Packs `op(A)` (`A` stored `[k, m]` if `transposed`, else `[m, k]`) into `packedACount(m:k:)`
    /// scalars. Rows from a multiple of ``tileRows`` on start at `row · k` in the packed copy.
    public func packA(transposed: Bool, m: Int, k: Int, a: UnsafePointer<Float>, lda: Int, into packed: UnsafeMutablePointer<Float>) {
        SquisherTensor.packA(
            transposed: transposed, a: a, lda: lda, row: 0, column: 0, height: m, depth: k, mr: tileRows,
            vectorized: true, into: packed)
    }

    /// Packs `op(B)` (`B` stored `[n, k]` if `transposed`, else `[k, n]`) into `packedBCount(n:k:)`
    /// scalars. Columns from a multiple of ``tileColumns`` on start at `column · k` in the packed copy.
    public func packB(transposed: Bool, n: Int, k: Int, b: UnsafePointer<Float>, ldb: Int, into packed: UnsafeMutablePointer<Float>) {
        SquisherTensor.packB(
            transposed: transposed, b: b, ldb: ldb, row: 0, column: 0, depth: k, width: n, nr: tileColumns,
            vectorized: true, into: packed)
    }

    /// `sums[i, j] += (scale · P[i, j]) · P[i, j]` for the packed operands of `P` (`m x n`, depth
    /// `k ≤ gemmSquaresMaximumDepth`); `sums` is `[m, n]` with leading dimension `ldSums ≥ n`.
    public func addScaledSquares(
        packedA: UnsafePointer<Float>, m: Int, packedB: UnsafePointer<Float>, n: Int, k: Int, scale: Float,
        sums: UnsafeMutablePointer<Float>, ldSums: Int
    ) {
        precondition(k <= gemmSquaresMaximumDepth, "depth \(k) beyond gemmSquaresMaximumDepth")
        guard m > 0, n > 0, k > 0 else { return }
        let (mr, nr) = (tileRows, tileColumns)
        // Each sliver of op(B) (k x nr, in L1) against every tile of op(A) (in L2).
        var jr = 0
        while jr < n {
            let bSliver = packedB + jr * k
            var ir = 0
            while ir < m {
                kernel(k, packedA + ir * k, bSliver, sums + ir * ldSums + jr, ldSums, min(mr, m - ir), min(nr, n - jr), scale, 1)
                ir += mr
            }
            jr += nr
        }
    }

    /// Packs both operands (`op(A)` in blocks of `mc` rows) and adds the scaled squares of their
    /// product to `sums`, as ``addScaledSquares(packedA:m:packedB:n:k:scale:sums:ldSums:)``.
    public func addScaledSquares(
        transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, scale: Float,
        a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
        sums: UnsafeMutablePointer<Float>, ldSums: Int
    ) {
        precondition(k <= gemmSquaresMaximumDepth, "depth \(k) beyond gemmSquaresMaximumDepth")
        guard m > 0, n > 0, k > 0 else { return }
        let block = GEMMPlan.balanced(m, block: mc, multiple: tileRows)
        let panelCount = packedBCount(n: n, k: k)
        GEMMScratch.withBuffer(floats: panelCount + block * k) { packedB in
            packB(transposed: transposeB, n: n, k: k, b: b, ldb: ldb, into: packedB)
            let packedA = packedB + panelCount
            var row = 0
            while row < m {
                let rows = min(block, m - row)
                let aBlock = transposeA ? a + row : a + row * lda
                packA(transposed: transposeA, m: rows, k: k, a: aBlock, lda: lda, into: packedA)
                addScaledSquares(
                    packedA: packedA, m: rows, packedB: packedB, n: n, k: k, scale: scale, sums: sums + row * ldSums, ldSums: ldSums)
                row += rows
            }
        }
    }
}

/// Adds the scaled squares of a product to `sums` (``GEMMSquaresKernel``):
/// `sums[i, j] += (scale · P[i, j]) · P[i, j]` with `P = op(A)·op(B)`.
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
    guard let squares = GEMMSquaresKernel(configuration: configuration), k <= gemmSquaresMaximumDepth else { return false }
    squares.addScaledSquares(
        transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, scale: scale, a: a, lda: lda, b: b, ldb: ldb,
        sums: sums, ldSums: ldSums)
    return true
}
