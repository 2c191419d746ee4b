import CSquisherKernels
import SquisherTensor

/// The row loops of ``LayerNorm``, 16 lanes at a time, rows split over the threads
/// (``parallelChunks(count:alignment:minimumPerThread:_:)``). Row sums are accumulated in two
/// 16-lane float accumulators (about `d/32` terms each) and combined in Double. With `vector`, each
/// thread's rows run in the AVX-512 C kernels (`csq_layernorm_*_avx512`, the same passes with fused
/// multiply-adds); callers pass it only on CPUs that have AVX-512F.
enum LayerNormKernels {
    typealias Vector = SIMD16<Float>

    /// Rows per thread worth waking a second thread for: about 32 Ki floats.
    static func minimumRows(_ d: Int) -> Int { Swift.max(1, 32_768 / Swift.max(d, 1)) }

    /// `Σ_i x_i` and, when `y` is given, `Σ_i x_i y_i` over `count` floats.
    @inline(__always)
    static func sums(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>?, count: Int) -> (Double, Double) {
        var s0 = Vector(), s1 = Vector(), p0 = Vector(), p1 = Vector()
        var i = 0
        while i + 32 <= count {
            let a = VectorMath.load(x + i), b = VectorMath.load(x + i + 16)
            s0 += a
            s1 += b
            if let y {
                p0 = a * VectorMath.load(y + i) + p0
                p1 = b * VectorMath.load(y + i + 16) + p1
            }
            i += 32
        }
        var sum = Double((s0 + s1).sum()), products = Double((p0 + p1).sum())
        while i < count {
            sum += Double(x[i])
            if let y { products += Double(x[i] * y[i]) }
            i += 1
        }
        return (sum, products)
    }

    /// For each row: `x̂ = (x − mean) · rstd` into `normalized`, `rstd` into `reciprocal`, and, with
    /// `weight`/`bias`, `y = x̂ ⊙ weight + bias` into `output`.
    static func forward(
        _ x: UnsafePointer<Float>, rows: Int, d: Int, eps: Float, normalized: UnsafeMutablePointer<Float>,
        reciprocal: UnsafeMutablePointer<Float>, affine: (weight: UnsafePointer<Float>, bias: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>)?,
        vector: Bool
    ) {
        let pointers = KernelPointers(x: x, a: normalized, b: reciprocal, weight: affine?.weight, bias: affine?.bias, c: affine?.output)
        parallelChunks(count: rows, alignment: 1, minimumPerThread: minimumRows(d)) { start, end in
            if vector {
                csq_layernorm_forward_rows_avx512(
                    pointers.x + start * d, end - start, d, eps, pointers.a + start * d, pointers.b + start,
                    pointers.weight, pointers.bias, pointers.c.map { $0 + start * d })
                return
            }
            for r in start..<end {
                let row = pointers.x + r * d, out = pointers.a + r * d
                let mean = sums(row, nil, count: d).0 / Double(d)
                let m = Float(mean)
                // Two passes: the centred squares, then the normalized values (as accurate as a Double loop
                // for the row lengths of transformers, whose means are small next to their spread).
                VectorMath.map(count: d, row, out) { v in v - Vector(repeating: m) }
                let variance = sums(out, out, count: d).1 / Double(d)
                let rstd = Float(1 / (variance + Double(eps)).squareRoot())
                VectorMath.map(count: d, out, out) { v in v * rstd }
                pointers.b[r] = rstd
                if let weight = pointers.weight, let bias = pointers.bias, let y = pointers.c {
                    var i = 0
                    while i + 16 <= d {
                        VectorMath.store(VectorMath.load(out + i) * VectorMath.load(weight + i) + VectorMath.load(bias + i), y + r * d + i)
                        i += 16
                    }
                    while i < d { y[r * d + i] = out[i] * weight[i] + bias[i]; i += 1 }
                }
            }
        }
    }

    /// `dx = rstd · (dx̂ − mean(dx̂) − x̂ · mean(dx̂ ⊙ x̂))`, `dx̂ = dy ⊙ weight` (weight 1 without
    /// affine), written over `gradient` (which holds `dy` on entry).
    static func inputGradient(
        _ gradient: UnsafeMutablePointer<Float>, normalized: UnsafePointer<Float>, reciprocal: UnsafePointer<Float>,
        weight: UnsafePointer<Float>?, rows: Int, d: Int, vector: Bool
    ) {
        let pointers = KernelPointers(x: normalized, a: gradient, b: UnsafeMutablePointer(mutating: reciprocal), weight: weight, bias: nil, c: nil)
        parallelChunks(count: rows, alignment: 1, minimumPerThread: minimumRows(d)) { start, end in
            if vector {
                csq_layernorm_input_gradient_rows_avx512(
                    pointers.a + start * d, pointers.x + start * d, pointers.b + start, pointers.weight, end - start, d)
                return
            }
            for r in start..<end {
                let g = pointers.a + r * d, xhat = pointers.x + r * d
                if let weight = pointers.weight { VectorMath.map2(count: d, g, weight, g) { g, w in g * w } }
                let (sum, products) = sums(g, xhat, count: d)
                let mean = Vector(repeating: Float(sum / Double(d))), meanProduct = Float(products / Double(d))
                let rstd = pointers.b[r]
                VectorMath.map2(count: d, g, xhat, g) { g, x in rstd * (g - mean - x * meanProduct) }
            }
        }
    }

    /// `Σ_rows dy ⊙ x̂` and `Σ_rows dy` (`[d]` each), per thread in float, combined in Double.
    static func parameterGradients(_ dy: UnsafePointer<Float>, normalized: UnsafePointer<Float>, rows: Int, d: Int, vector: Bool) -> (weight: [Double], bias: [Double]) {
        let parts = GEMMConfiguration.current.threadParts(for: rows / minimumRows(d))
        var partial = [Float](repeating: 0, count: parts * 2 * d)
        let chunk = Swift.max(1, (rows + parts - 1) / parts)  // one chunk of rows per part
        partial.withUnsafeMutableBufferPointer { p in
            let pointers = KernelPointers(x: dy, a: p.baseAddress!, b: p.baseAddress!, weight: normalized, bias: nil, c: nil)
            parallelChunks(count: rows, alignment: chunk, minimumPerThread: 1) { start, end in
                let part = start / chunk
                let weightSum = pointers.a + part * 2 * d, biasSum = weightSum + d
                if vector {
                    csq_layernorm_parameter_sums_avx512(pointers.x + start * d, pointers.weight! + start * d, end - start, d, weightSum, biasSum)
                    return
                }
                for r in start..<end {
                    let g = pointers.x + r * d, xhat = pointers.weight! + r * d
                    VectorMath.map2(count: d, g, biasSum, biasSum) { g, s in g + s }
                    var i = 0
                    while i + 16 <= d {
                        VectorMath.store(VectorMath.load(g + i) * VectorMath.load(xhat + i) + VectorMath.load(weightSum + i), weightSum + i)
                        i += 16
                    }
                    while i < d { weightSum[i] = g[i] * xhat[i] + weightSum[i]; i += 1 }
                }
            }
        }
        var weight = [Double](repeating: 0, count: d), bias = [Double](repeating: 0, count: d)
        for part in 0..<parts {
            for i in 0..<d {
                weight[i] += Double(partial[part * 2 * d + i])
                bias[i] += Double(partial[part * 2 * d + d + i])
            }
        }
        return (weight, bias)
    }
}

/// Raw pointers handed to the row threads of ``LayerNormKernels``; each thread touches only its rows
/// (or its own partial sums).
private struct KernelPointers: @unchecked Sendable {
    let x: UnsafePointer<Float>
    let a: UnsafeMutablePointer<Float>
    let b: UnsafeMutablePointer<Float>
    let weight: UnsafePointer<Float>?
    let bias: UnsafePointer<Float>?
    let c: UnsafeMutablePointer<Float>?
}
