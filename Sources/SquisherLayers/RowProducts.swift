import SquisherTensor

/// `result[i, j] += sum_p a[i, p] * b[j, p]` for row-major `a` `[m, length]`, `b` `[n, length]`,
/// `result` `[m, n]`: the product `A · Bᵀ` when the shared dimension is long and `m`, `n` small (a
/// linear layer's `x Wᵀ` for one or a few samples, where packing `W` for the GEMM would cost more than
/// reading it once per row). The shared dimension is walked in
/// chunks of 512 so that the chunk of all rows stays in cache; within a chunk one row of `a` meets
/// four rows of `b` at a time, 8 lanes wide (four 16-lane accumulators would spill on baseline x86-64), multiply-add written as `x * y + acc` (see STYLE.md).
func accumulateRowProducts(
    _ a: UnsafePointer<Float>, rows m: Int, _ b: UnsafePointer<Float>, rows n: Int, length: Int,
    into result: UnsafeMutablePointer<Float>
) {
    @inline(__always) func load(_ p: UnsafePointer<Float>, _ i: Int) -> SIMD8<Float> {
        UnsafeRawPointer(p + i).loadUnaligned(as: SIMD8<Float>.self)
    }
    let chunk = 512
    var start = 0
    while start < length {
        let end = Swift.min(start + chunk, length)
        let vectorEnd = start + (end - start) / 8 * 8
        for i in 0..<m {
            let rowA = a + i * length
            var j = 0
            while j < n {
                let block = Swift.min(4, n - j)
                // Rows past the end of `b` repeat the last row; their sums are discarded.
                let b0 = b + j * length
                let b1 = b + (j + Swift.min(1, block - 1)) * length
                let b2 = b + (j + Swift.min(2, block - 1)) * length
                let b3 = b + (j + Swift.min(3, block - 1)) * length
                var s0 = SIMD8<Float>(), s1 = SIMD8<Float>(), s2 = SIMD8<Float>(), s3 = SIMD8<Float>()
                var p = start
                while p < vectorEnd {
                    let x = load(rowA, p)
                    s0 = x * load(b0, p) + s0
                    s1 = x * load(b1, p) + s1
                    s2 = x * load(b2, p) + s2
                    s3 = x * load(b3, p) + s3
                    p += 8
                }
                var totals = SIMD4<Float>(s0.sum(), s1.sum(), s2.sum(), s3.sum())
                while p < end {
                    totals = SIMD4(repeating: rowA[p]) * SIMD4(b0[p], b1[p], b2[p], b3[p]) + totals
                    p += 1
                }
                for t in 0..<block { result[i * n + j + t] += totals[t] }
                j += block
            }
        }
        start = end
    }
}
