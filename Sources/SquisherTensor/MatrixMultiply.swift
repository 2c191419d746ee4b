/// General matrix multiply on row-major float32 matrices, BLAS-style:
/// `C = alpha * op(A) * op(B) + beta * C`, where `op(X)` is `X` or its transpose.
///
/// - Parameters:
///   - transposeA: if true, `A` is stored `[k, m]` (leading dimension `lda >= m`); else `[m, k]` (`lda >= k`).
///   - transposeB: if true, `B` is stored `[n, k]` (`ldb >= k`); else `[k, n]` (`ldb >= n`).
///   - c: `[m, n]` with leading dimension `ldc >= n`. When `beta == 0`, `C` is not read (NaNs in it are overwritten).
/// - Complexity: 2·m·n·k flops.
public func gemm(
    transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int,
    alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
    b: UnsafePointer<Float>, ldb: Int,
    beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
) {
    // Scale or clear C first.
    for i in 0..<m {
        let row = c + i * ldc
        if beta == 0 {
            row.update(repeating: 0, count: n)
        } else if beta != 1 {
            for j in 0..<n { row[j] *= beta }
        }
    }
    guard k > 0, alpha != 0 else { return }
    // Reference loop ordering i-p-j (unit stride over C and B rows); transposed operands gathered.
    var bRow = [Float](repeating: 0, count: n)
    for i in 0..<m {
        let cRow = c + i * ldc
        for p in 0..<k {
            let aip = alpha * (transposeA ? a[p * lda + i] : a[i * lda + p])
            if aip == 0 { continue }
            if transposeB {
                for j in 0..<n { bRow[j] = b[j * ldb + p] }
                for j in 0..<n { cRow[j] = aip * bRow[j] + cRow[j] }
            } else {
                let bp = b + p * ldb
                for j in 0..<n { cRow[j] = aip * bp[j] + cRow[j] }
            }
        }
    }
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
        var result = Tensor(zeros: [m, n])
        a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                result.withUnsafeMutableBufferPointer { pc in
                    gemm(
                        transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k,
                        a: pa.baseAddress!, lda: a.shape[1], b: pb.baseAddress!, ldb: b.shape[1],
                        c: pc.baseAddress!, ldc: n)
                }
            }
        }
        return result
    }
}
