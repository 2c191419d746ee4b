import CSquisherKernels
import Dispatch
import SquisherTensor

/// Multi-head scaled dot-product attention without parameters (the core of self-attention;
/// the projections around it are ordinary layers, see ``MultiHeadSelfAttention``).
///
/// Input `[N, T, 3D]`: queries, keys and values side by side (`Q = x[..., 0..<D]`,
/// `K = x[..., D..<2D]`, `V = x[..., 2D..<3D]`, GPT-2's `c_attn` layout), each split into `H` heads
/// of `d = D/H` consecutive features. Per sample and head:
///
///     S = Q Kᵀ / √d,   P = softmax over allowed keys of S (row-wise),   O = P V
///
/// Output `[N, T, D]`, heads side by side. Key `s` is allowed for query `t` when `s <= t` (if
/// ``causal``) and the sample's ``attentionMask`` at `s` is non-zero (padding masked out, as
/// Hugging Face's `attention_mask`). Masked keys get probability exactly 0; a query with every key
/// masked attends to nothing (output 0, gradient 0) instead of producing NaN.
///
/// Backward (per sample and head): `dV = Pᵀ dO`, `dP = dO Vᵀ`, `dS = P ⊙ (dP − rowsum(P ⊙ dP))`,
/// `dQ = dS K / √d`, `dK = dSᵀ Q / √d`. Products run through the packed GEMM on strided views of
/// the input; samples × heads are spread over the cores; causal products run in query blocks that skip
/// the keys above the diagonal (``causalQueryBlock``). The unmasked softmax rows and the softmax
/// backward run in AVX-512 C kernels where the CPU has them (``kernelISALevel``).
///
/// Memory reused across passes (``ReusableTensor``): the forward writes the probabilities into the last
/// forward's memory (one slot: only this layer keeps them, and a forward lets go of the last ones
/// first, unless the caller still holds them from ``probabilities``) and the output into an earlier
/// forward's once nothing else holds it (two slots: the output projection keeps the last one as its
/// input until its own next forward); each backward writes its input gradient into the last
/// backward's memory once the caller has let go of it. The backward passes after one forward all read
/// that forward's probabilities, which only the next forward replaces.
public final class ScaledDotProductAttention: Layer, CustomStringConvertible {
    public let typeName = "ScaledDotProductAttention"
    /// The number of heads `H`.
    public let heads: Int
    /// Whether query `t` sees only keys `s <= t` (a decoder such as GPT-2).
    public let causal: Bool
    /// Per-sample key mask `[N, T]` (1 = attend, 0 = padding) for the **next** forward, or nil for
    /// no padding. Set by the model from its input before each forward.
    public var attentionMask: Tensor?
    /// Instruction-set level of the softmax rows: 3 (the default where the CPU has AVX-512F) runs the C
    /// kernels `csq_softmax_row_avx512` / `csq_softmax_backward_row_avx512`, lower levels the Swift loops
    /// (as ``GEMMConfiguration/isaLevel``). Lowering it is for tests and benchmarks.
    public var kernelISALevel: Int = GEMMKernelInfo.cpuISALevel
    public var localParameters: [(name: String, parameter: Parameter)] { [] }

    private var cachedInput: Tensor?
    /// Attention probabilities of the last forward, `[N, H, T, T]`.
    private var cachedProbabilities: Tensor?
    /// Memory of the probabilities (one slot), outputs (two slots) and input gradients (one slot),
    /// reused across passes.
    private var probabilityBuffer = ReusableTensor(), outputBuffer = ReusableTensor(slots: 2), inputGradientBuffer = ReusableTensor()

    /// Creates the layer.
    /// - Throws: ``TensorError/invalidArgument(argument:reason:)`` unless `heads >= 1`.
    public init(heads: Int, causal: Bool) throws(TensorError) {
        guard heads >= 1 else { throw .invalidArgument(argument: "ScaledDotProductAttention heads \(heads)", reason: "must be >= 1") }
        self.heads = heads
        self.causal = causal
    }

    /// `ScaledDotProductAttention(heads=H, causal=true)`; names the layer in errors.
    public var description: String { "ScaledDotProductAttention(heads=\(heads), causal=\(causal))" }

    /// The attention probabilities `P` of the last forward, `[N, H, T, T]` (nil before a forward).
    public var probabilities: Tensor? { cachedProbabilities }

    private func dimensions(_ input: Tensor) throws(TensorError) -> (n: Int, t: Int, d: Int) {
        guard input.rank == 3, input.shape[2] % (3 * heads) == 0, input.shape[2] > 0 else {
            throw .shapeMismatch(operation: "\(description) forward", expected: "input [N, T, 3·D] with D divisible by \(heads) heads", actual: input.shape)
        }
        let (n, t) = (input.shape[0], input.shape[1])
        if let mask = attentionMask { try mask.checkShape([n, t], "\(description) attention mask (one row per sample, one entry per position)") }
        return (n, t, input.shape[2] / 3)
    }

    public func forward(_ input: Tensor, mode: LayerMode) throws(TensorError) -> Tensor {
        let (n, t, d) = try dimensions(input)
        let h = heads, hd = d / h, scale = 1 / Float(hd).squareRoot()
        cachedProbabilities = nil  // only this layer holds the last probabilities: their memory can then be reused
        var probabilities = Tensor(zeros: [0])
        let keep: [Bool]? = attentionMask.map { $0.scalars.map { $0 != 0 } }
        let causal = causal, single = Self.singleThreaded, parts = GEMMConfiguration.current.threadParts(for: n * h)
        let blocks = Self.queryBlocks(t: t, causal: causal)  // the same for every (sample, head) pair
        let vectorKernels = VectorMath.usesAVX512Kernels(level: kernelISALevel)
        // Every entry of both is written below (products with beta = 0, softmax rows in full).
        let output = outputBuffer.make(shape: [n, t, d]) { o in
            probabilities = probabilityBuffer.make(shape: [n, h, t, t]) { p in
                input.withUnsafeBufferPointer { x in
                    let pointers = AttentionPointers(x: x.baseAddress!, p: p.baseAddress!, o: o.baseAddress!, extra: nil)
                    DispatchQueue.concurrentPerform(iterations: parts) { part in
                        for pair in stride(from: part, to: n * h, by: parts) {
                            let (sample, head) = (pair / h, pair % h)
                            let q = pointers.x + sample * t * 3 * d + head * hd
                            let pp = pointers.p + pair * t * t
                            // Query blocks; a causal block [r0, r1) sees keys 0 ..< r1 only (the softmax
                            // writes the zeros beyond), so the products skip the masked upper triangle.
                            for (r0, r1) in blocks {
                                let keys = causal ? r1 : t
                                gemm(transposeA: false, transposeB: true, m: r1 - r0, n: keys, k: hd, alpha: scale,
                                     a: q + r0 * 3 * d, lda: 3 * d, b: q + d, ldb: 3 * d, c: pp + r0 * t, ldc: t, configuration: single)
                                for query in r0..<r1 {
                                    if let keep {
                                        Self.maskedSoftmax(pp + query * t, count: causal ? query + 1 : t, total: t) { keep[sample * t + $0] }
                                    } else if vectorKernels {
                                        csq_softmax_row_avx512(pp + query * t, causal ? query + 1 : t, t)
                                    } else {
                                        Self.softmax(pp + query * t, count: causal ? query + 1 : t, total: t)
                                    }
                                }
                                gemm(transposeA: false, transposeB: false, m: r1 - r0, n: hd, k: keys,
                                     a: pp + r0 * t, lda: t, b: q + 2 * d, ldb: 3 * d,
                                     c: pointers.o + (sample * t + r0) * d + head * hd, ldc: d, configuration: single)
                            }
                        }
                    }
                }
            }
        }
        cachedInput = input
        cachedProbabilities = probabilities
        return output
    }

    /// Query rows per block of a causal product: four 12-row GEMM tiles. At T = 128 the blocks skip 29%
    /// of the products' work (keys above the diagonal); blocks of 32 skip more on paper but lose it to
    /// the partial tiles and repacked keys of the smaller products (BENCHMARKS.md, "Transformers").
    public static let causalQueryBlock = 48

    /// The query blocks `[r0, r1)` of one (sample, head): blocks of ``causalQueryBlock`` rows when
    /// `causal`, else one block of all `t` rows.
    static func queryBlocks(t: Int, causal: Bool) -> [(Int, Int)] {
        let block = causal ? causalQueryBlock : Swift.max(t, 1)
        return stride(from: 0, to: t, by: block).map { ($0, Swift.min(t, $0 + block)) }
    }

    /// The GEMM settings of the per-(sample, head) products: one thread each, since the pairs are
    /// already spread over the threads (a product would otherwise start threads of its own inside them).
    private static var singleThreaded: GEMMConfiguration {
        var configuration = GEMMConfiguration.current
        configuration.maximumThreads = 1
        return configuration
    }

    /// Softmax in place over the first `count` entries (no padding mask), 16 lanes at a time; the
    /// other entries of the `total` are set to 0.
    private static func softmax(_ row: UnsafeMutablePointer<Float>, count: Int, total: Int) {
        var maximum = -Float.infinity
        for s in 0..<count { maximum = Swift.max(maximum, row[s]) }
        let shift = VectorMath.Vector(repeating: maximum)
        VectorMath.map(count: count, row, row) { VectorMath.exp($0 - shift) }
        var sum = 0.0
        for s in 0..<count { sum += Double(row[s]) }
        let inverse = Float(1 / sum)
        for s in 0..<count { row[s] *= inverse }
        if count < total { (row + count).update(repeating: 0, count: total - count) }
    }

    /// Softmax in place over the first `count` entries whose key is kept; every other entry of the
    /// `total` is set to 0. All masked: the whole row is 0.
    private static func maskedSoftmax(_ row: UnsafeMutablePointer<Float>, count: Int, total: Int, keep: (Int) -> Bool) {
        var maximum = -Float.infinity
        for s in 0..<count where keep(s) { maximum = Swift.max(maximum, row[s]) }
        guard maximum > -Float.infinity else {
            row.update(repeating: 0, count: total)
            return
        }
        var sum = 0.0
        for s in 0..<count {
            if keep(s) {
                row[s] = ScalarMath.exp(row[s] - maximum)
                sum += Double(row[s])
            } else {
                row[s] = 0
            }
        }
        let inverse = Float(1 / sum)
        for s in 0..<count { row[s] *= inverse }
        if count < total { (row + count).update(repeating: 0, count: total - count) }
    }

    public func backward(_ outputGradient: Tensor, accumulateParameterGradients: Bool) throws(TensorError) -> Tensor {
        guard let input = cachedInput, let probabilities = cachedProbabilities else {
            throw .invalidArgument(argument: "\(description) backward", reason: "called before forward")
        }
        let (n, t, d) = (input.shape[0], input.shape[1], input.shape[2] / 3)
        try outputGradient.checkShape([n, t, d], "\(description) backward (output gradient)")
        let h = heads, hd = d / h, scale = 1 / Float(hd).squareRoot()
        let causal = causal, single = Self.singleThreaded, parts = GEMMConfiguration.current.threadParts(for: n * h)
        let blocks = Self.queryBlocks(t: t, causal: causal)  // the same for every (sample, head) pair
        let vectorKernels = VectorMath.usesAVX512Kernels(level: kernelISALevel)
        // dQ, dK, dV blocks all written (beta = 0).
        return inputGradientBuffer.make(shape: input.shape) { dx in
            input.withUnsafeBufferPointer { x in
                probabilities.withUnsafeBufferPointer { p in
                    outputGradient.withUnsafeBufferPointer { dy in
                        let pointers = AttentionPointers(x: x.baseAddress!, p: UnsafeMutablePointer(mutating: p.baseAddress!), o: dx.baseAddress!, extra: dy.baseAddress!)
                        DispatchQueue.concurrentPerform(iterations: parts) { part in
                            let ds = UnsafeMutablePointer<Float>.allocate(capacity: t * t)
                            defer { ds.deallocate() }
                            for pair in stride(from: part, to: n * h, by: parts) {
                                let (sample, head) = (pair / h, pair % h)
                                let offset = sample * t * 3 * d + head * hd
                                let (q, k, v) = (pointers.x + offset, pointers.x + offset + d, pointers.x + offset + 2 * d)
                                let (dq, dk, dv) = (pointers.o + offset, pointers.o + offset + d, pointers.o + offset + 2 * d)
                                let pp = UnsafePointer(pointers.p + pair * t * t)
                                let g = pointers.extra! + sample * t * d + head * hd
                                // Causal: P and dS vanish above the diagonal, so each query block [r0, r1)
                                // uses keys 0 ..< r1 and each key block [s0, s1) queries s0 ..< t only (the
                                // blocks are the same partition, so nothing beyond a row's block is read).
                                for (s0, s1) in blocks {  // dV[s0 ..< s1] = P[from ..< t, s0 ..< s1]ᵀ dO[from ..< t]
                                    let from = causal ? s0 : 0
                                    gemm(transposeA: true, transposeB: false, m: s1 - s0, n: hd, k: t - from, a: pp + from * t + s0, lda: t,
                                         b: g + from * d, ldb: d, c: dv + s0 * 3 * d, ldc: 3 * d, configuration: single)
                                }
                                for (r0, r1) in blocks {
                                    let keys = causal ? r1 : t
                                    gemm(transposeA: false, transposeB: true, m: r1 - r0, n: keys, k: hd, a: g + r0 * d, lda: d,
                                         b: v, ldb: 3 * d, c: ds + r0 * t, ldc: t, configuration: single)
                                    for query in r0..<r1 {
                                        let prow = pp + query * t, drow = ds + query * t
                                        if vectorKernels {
                                            csq_softmax_backward_row_avx512(prow, drow, keys)
                                            continue
                                        }
                                        var dot: Float = 0
                                        for s in 0..<keys { dot = prow[s] * drow[s] + dot }
                                        for s in 0..<keys { drow[s] = prow[s] * (drow[s] - dot) }
                                    }
                                    gemm(transposeA: false, transposeB: false, m: r1 - r0, n: hd, k: keys, alpha: scale, a: ds + r0 * t, lda: t,
                                         b: k, ldb: 3 * d, c: dq + r0 * 3 * d, ldc: 3 * d, configuration: single)
                                }
                                for (s0, s1) in blocks {  // dK[s0 ..< s1] = dS[from ..< t, s0 ..< s1]ᵀ Q[from ..< t] / √d
                                    let from = causal ? s0 : 0
                                    gemm(transposeA: true, transposeB: false, m: s1 - s0, n: hd, k: t - from, alpha: scale, a: ds + from * t + s0, lda: t,
                                         b: q + from * 3 * d, ldb: 3 * d, c: dk + s0 * 3 * d, ldc: 3 * d, configuration: single)
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Raw pointers handed to the attention threads; each thread writes only its own (sample, head) blocks.
private struct AttentionPointers: @unchecked Sendable {
    let x: UnsafePointer<Float>
    let p: UnsafeMutablePointer<Float>
    let o: UnsafeMutablePointer<Float>
    let extra: UnsafePointer<Float>?
}
