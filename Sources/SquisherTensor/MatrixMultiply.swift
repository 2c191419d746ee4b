/// General matrix multiply on row-major float32 matrices, BLAS-style:
/// `C = alpha * op(A) * op(B) + beta * C`, where `op(X)` is `X` or its transpose.
///
/// - Parameters:
///   - transposeA: if true, `A` is stored `[k, m]` (leading dimension `lda >= m`); else `[m, k]` (`lda >= k`).
///   - transposeB: if true, `B` is stored `[n, k]` (`ldb >= k`); else `[k, n]` (`ldb >= n`).
///   - c: `[m, n]` with leading dimension `ldc >= n`. When `beta == 0`, `C` is not read (NaNs in it are overwritten).
/// Packed, cache-blocked and register-tiled (Goto & van de Geijn 2008); the micro-kernels are
/// AVX-512 / AVX2+FMA / portable C in the `CSquisherKernels` target, chosen at run time from the CPU
/// (``GEMMKernelInfo/cpuISALevel``). Products of at least 2 MFLOP are split over the cores;
/// smaller ones run on the calling thread without heap allocation. See ``GEMMConfiguration``.
/// `m`, `n` or `k` may be 0 (with `k == 0`, `C = beta·C`). The pointers of operands with no
/// elements are not read, but must not be null.
/// Corresponds to BLAS `sgemm` (row-major, CBLAS `cblas_sgemm(CblasRowMajor, ...)`) and
/// `torch.addmm(C, op(A), op(B), beta=beta, alpha=alpha)`.
///
/// - Complexity: 2·m·n·k flops.
public func gemm(
    transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int,
    alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
    b: UnsafePointer<Float>, ldb: Int,
    beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
) {
    gemm(
        transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda,
        b: b, ldb: ldb, beta: beta, c: c, ldc: ldc, configuration: GEMMConfiguration.current)
}

/// ``gemm(transposeA:transposeB:m:n:k:alpha:a:lda:b:ldb:beta:c:ldc:)`` with explicit settings (thread
/// count, blocking, kernel) instead of ``GEMMConfiguration/current``; for benchmarks and tests.
public func gemm(
    transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int,
    alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
    b: UnsafePointer<Float>, ldb: Int,
    beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int, configuration: GEMMConfiguration
) {
    guard m > 0, n > 0 else { return }
    guard k > 0, alpha != 0 else {
        // Nothing to accumulate: C = beta·C (beta == 0 clears C without reading it).
        gemmScale(m: m, n: n, beta: beta, c: c, ldc: ldc)
        return
    }
    gemmBlocked(
        transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, alpha: alpha,
        a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc, configuration: configuration)
}

extension Tensor {
    /// The matrix product `op(a) · op(b)` of two rank-2 tensors.
    ///
    /// - Throws: ``TensorError/shapeMismatch(operation:expected:actual:)`` when either operand is
    ///   not rank 2 or the inner dimensions differ.
    public static func matmul(
        _ a: Tensor, _ b: Tensor, transposeA: Bool = false, transposeB: Bool = false
    ) throws(TensorError) -> Tensor {
        guard a.rank == 2 else { throw .shapeMismatch(operation: "matmul", expected: "a rank-2 left operand", actual: a.shape) }
        guard b.rank == 2 else { throw .shapeMismatch(operation: "matmul", expected: "a rank-2 right operand", actual: b.shape) }
        let (m, k) = transposeA ? (a.shape[1], a.shape[0]) : (a.shape[0], a.shape[1])
        let (kb, n) = transposeB ? (b.shape[1], b.shape[0]) : (b.shape[0], b.shape[1])
        guard k == kb else {
            throw .shapeMismatch(
                operation: "matmul", expected: "inner dimension \(k) in the right operand (left is \(a.shape), transposeA \(transposeA), transposeB \(transposeB))",
                actual: b.shape)
        }
        // Empty operands have no base address; with m·n == 0 there is nothing to write, and with
        // k == 0 the product is zero.
        guard m > 0, n > 0, k > 0 else { return Tensor(zeros: [m, n]) }
        // The GEMM with beta = 0 writes every element without reading it: no zero fill first.
        return Tensor(uninitializedShape: [m, n]) { pc in
            a.withUnsafeBufferPointer { pa in
                b.withUnsafeBufferPointer { pb in
                    gemm(
                        transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k,
                        a: pa.baseAddress!, lda: a.shape[1], b: pb.baseAddress!, ldb: b.shape[1], beta: 0, c: pc.baseAddress!, ldc: n)
                }
            }
        }
    }
}
