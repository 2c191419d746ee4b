import CSquisherKernels
import Dispatch

// The blocked, packed GEMM driver behind `gemm(...)`: cache blocking, packing (in Swift, over unsafe
// pointers), threading; the register-tiled micro-kernels live in the C target CSquisherKernels.
//
// Loop nest (Goto & van de Geijn 2008), for each thread's share of C:
//   for jc in 0..<n step nc:            op(B) panel columns
//     for pc in 0..<k step kc:          depth; pack op(B)[pc.., jc..] into kc x nc slivers of width nr
//       for ic in 0..<m step mc:        pack op(A)[ic.., pc..] into mc x kc slivers of height mr (L2)
//         for jr in 0..<nc step nr:     one packed B sliver (kc x nr) stays in L1/L2
//           for ir in 0..<mc step mr:   micro-kernel: C[ic+ir.., jc+jr..] (+)= A sliver · B sliver
// The first depth pass applies the caller's beta; later passes accumulate (beta = 1).

/// The resolved parameters of one `gemm` call (kernel and blocking), read once per call.
struct GEMMPlan {
    let kernel: csq_sgemm_kernel_fn
    let mr: Int
    let nr: Int
    let kc: Int
    let mc: Int
    let nc: Int
    /// Whether the operands are packed by the AVX-512 packing kernels (the kernel's ISA level is 3).
    let vectorPacking: Bool

    init(configuration: GEMMConfiguration, m: Int, n: Int, k: Int) {
        let info = csq_sgemm_kernel_for(
            Int32(min(configuration.isaLevel, GEMMKernelInfo.cpuISALevel)), Int32(configuration.kernelVariant))
        kernel = info.kernel
        mr = Int(info.mr)
        nr = Int(info.nr)
        vectorPacking = info.level >= 3
        // Blocks never exceed the problem (so small products allocate little) and are balanced: k = 784
        // with kc = 256 runs 4 passes of 196, not 3 of 256 and one of 16; likewise for mc and nc, which are
        // rounded up to whole tiles.
        kc = GEMMPlan.balanced(k, block: configuration.depthBlock(m: m, n: n), multiple: 1)
        mc = GEMMPlan.balanced(m, block: configuration.mc, multiple: mr)
        nc = GEMMPlan.balanced(n, block: configuration.nc, multiple: nr)
    }

    static func roundUp(_ x: Int, to multiple: Int) -> Int { (x + multiple - 1) / multiple * multiple }

    /// The block size that covers `extent` in as few blocks of at most `block` (at least one multiple)
    /// as possible, with equal blocks, rounded up to `multiple`.
    static func balanced(_ extent: Int, block: Int, multiple: Int) -> Int {
        let limit = max(multiple, block / multiple * multiple)
        let blocks = (extent + limit - 1) / limit
        return roundUp((extent + blocks - 1) / blocks, to: multiple)
    }

    /// Scalars needed for the packed A block and the packed B panel.
    var packedACount: Int { mc * kc }
    var packedBCount: Int { kc * nc }
}

/// Raw operand pointers, passed deliberately across threads: each thread reads A and B and writes a
/// disjoint block of C.
struct GEMMOperands: @unchecked Sendable {
    let a: UnsafePointer<Float>
    let b: UnsafePointer<Float>
    let c: UnsafeMutablePointer<Float>
}

/// `C = beta·C` on an `m x n` block (beta == 0 writes zeros without reading C).
func gemmScale(m: Int, n: Int, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
    if beta == 1 { return }
    for i in 0..<m {
        let row = c + i * ldc
        if beta == 0 {
            row.update(repeating: 0, count: n)
        } else {
            for j in 0..<n { row[j] = beta * row[j] }
        }
    }
}

/// Runs the blocked product, splitting C between threads when it is large enough.
func gemmBlocked(
    transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, alpha: Float,
    a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
    beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int, configuration: GEMMConfiguration
) {
    let flops = 2 * Double(m) * Double(n) * Double(k)
    var threads = 1
    if configuration.maximumThreads > 1, flops >= Double(configuration.parallelThresholdFlops) {
        threads = configuration.maximumThreads
    }
    let probe = csq_sgemm_kernel_for(
        Int32(min(configuration.isaLevel, GEMMKernelInfo.cpuISALevel)), Int32(configuration.kernelVariant))
    if threads > 1, GEMMGridPlan.fits(m: m, n: n, k: k, mr: Int(probe.mr), nr: Int(probe.nr), limit: configuration.packedGridLimit) {
        gemmPackedGrid(
            transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, alpha: alpha,
            a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc, configuration: configuration,
            threads: threads)
        return
    }
    let rowTiles = (m + Int(probe.mr) - 1) / Int(probe.mr)
    if threads > 1, rowTiles >= 2 * threads, k * GEMMPlan.roundUp(n, to: Int(probe.nr)) <= sharedPanelLimit {
        gemmSharedPanel(
            transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, alpha: alpha,
            a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc, configuration: configuration,
            threads: threads)
        return
    }
    // Otherwise split the longer side of C into `threads` whole-tile chunks, each packing its own panels.
    let splitRows = m >= n
    let tile = splitRows ? Int(probe.mr) : Int(probe.nr)
    let extent = splitRows ? m : n
    let tiles = (extent + tile - 1) / tile
    threads = min(threads, tiles)
    if threads <= 1 {
        gemmSerial(
            transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, alpha: alpha,
            a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc, configuration: configuration)
        return
    }
    let operands = GEMMOperands(a: a, b: b, c: c)
    let parts = threads
    DispatchQueue.concurrentPerform(iterations: parts) { part in
        let first = tiles * part / parts * tile
        let last = min(extent, tiles * (part + 1) / parts * tile)
        guard first < last else { return }
        if splitRows {
            // Rows first..<last of op(A) and of C.
            let aPart = transposeA ? operands.a + first : operands.a + first * lda
            gemmSerial(
                transposeA: transposeA, transposeB: transposeB, m: last - first, n: n, k: k, alpha: alpha,
                a: aPart, lda: lda, b: operands.b, ldb: ldb, beta: beta, c: operands.c + first * ldc, ldc: ldc,
                configuration: configuration)
        } else {
            // Columns first..<last of op(B) and of C.
            let bPart = transposeB ? operands.b + first * ldb : operands.b + first
            gemmSerial(
                transposeA: transposeA, transposeB: transposeB, m: m, n: last - first, k: k, alpha: alpha,
                a: operands.a, lda: lda, b: bPart, ldb: ldb, beta: beta, c: operands.c + first, ldc: ldc,
                configuration: configuration)
        }
    }
}

/// The single-threaded blocked product on one block of C, with its own packing buffers.
func gemmSerial(
    transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, alpha: Float,
    a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
    beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int, configuration: GEMMConfiguration
) {
    let plan = GEMMPlan(configuration: configuration, m: m, n: n, k: k)
    let byteCount = (plan.packedACount + plan.packedBCount) * MemoryLayout<Float>.stride + 64
    func run(_ base: UnsafeMutablePointer<Float>) {
        gemmSerialLoops(
            transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, alpha: alpha,
            a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc,
            plan: plan, packedA: base, packedB: base + GEMMPlan.roundUp(plan.packedACount, to: 16))
    }
    // Small products get their panels on the stack (no heap allocation); large ones a cached buffer.
    if byteCount <= scratchStackLimit {
        withUnsafeTemporaryAllocation(byteCount: byteCount, alignment: 64) { raw in
            run(raw.baseAddress!.assumingMemoryBound(to: Float.self))
        }
    } else {
        GEMMScratch.withBuffer(floats: byteCount / MemoryLayout<Float>.stride + 1) { run($0) }
    }
}

/// Packing buffers of at most this many bytes are temporary allocations (on the stack when small);
/// larger ones come from ``GEMMScratch``.
let scratchStackLimit = 64 << 10

@inline(__always)
func gemmSerialLoops(
    transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, alpha: Float,
    a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
    beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int,
    plan: GEMMPlan, packedA: UnsafeMutablePointer<Float>, packedB: UnsafeMutablePointer<Float>
) {
    let (mr, nr) = (plan.mr, plan.nr)
    let kernel = plan.kernel
    var jc = 0
    while jc < n {
        let ncCur = min(plan.nc, n - jc)
        var pc = 0
        while pc < k {
            let kcCur = min(plan.kc, k - pc)
            packB(
                transposed: transposeB, b: b, ldb: ldb, row: pc, column: jc, depth: kcCur, width: ncCur,
                nr: nr, vectorized: plan.vectorPacking, into: packedB)
            let passBeta: Float = pc == 0 ? beta : 1
            var ic = 0
            while ic < m {
                let mcCur = min(plan.mc, m - ic)
                packA(
                    transposed: transposeA, a: a, lda: lda, row: ic, column: pc, height: mcCur, depth: kcCur,
                    mr: mr, vectorized: plan.vectorPacking, into: packedA)
                var jr = 0
                while jr < ncCur {
                    let nrCur = min(nr, ncCur - jr)
                    let bSliver = UnsafePointer(packedB + jr * kcCur)
                    var ir = 0
                    while ir < mcCur {
                        let mrCur = min(mr, mcCur - ir)
                        kernel(
                            kcCur, UnsafePointer(packedA + ir * kcCur), bSliver,
                            c + (ic + ir) * ldc + jc + jr, ldc, mrCur, nrCur, alpha, passBeta)
                        ir += mr
                    }
                    jr += nr
                }
                ic += plan.mc
            }
            pc += plan.kc
        }
        jc += plan.nc
    }
}

/// Packs `op(B)[row ..< row+depth, column ..< column+width]` into slivers of `nr` columns: sliver `s`
/// starts at `s·nr·depth` and holds, for each depth index `p`, `nr` consecutive scalars (zero-padded).
/// `op(B)[p, j]` is `b[p·ldb + j]`, or `b[j·ldb + p]` when transposed. `vectorized` (AVX-512 CPUs only)
/// runs the AVX-512 packing kernels instead of the 4-wide Swift loops.
@inline(__always)
func packB(
    transposed: Bool, b: UnsafePointer<Float>, ldb: Int, row: Int, column: Int, depth: Int, width: Int,
    nr: Int, vectorized: Bool, into packed: UnsafeMutablePointer<Float>
) {
    if vectorized, !transposed {
        csq_pack_copy_avx512(b + row * ldb + column, ldb, depth, width, nr, packed)
        return
    }
    var j0 = 0
    while j0 < width {
        let w = min(nr, width - j0)
        let dst = packed + j0 * depth
        if vectorized {
            csq_pack_transpose_avx512(b + (column + j0) * ldb + row, ldb, w, depth, nr, dst)
        } else if !transposed {
            let src = b + row * ldb + column + j0
            if w == nr && nr % 16 == 0 {
                for p in 0..<depth {
                    copySIMD16(from: src + p * ldb, to: dst + p * nr, count: nr)
                }
            } else {
                for p in 0..<depth {
                    let s = src + p * ldb
                    let d = dst + p * nr
                    for jj in 0..<w { d[jj] = s[jj] }
                    for jj in w..<nr { d[jj] = 0 }
                }
            }
        } else {
            // Column jj of the sliver is row (column + j0 + jj) of B, contiguous along p.
            transposeInto(
                src: b + (column + j0) * ldb + row, ld: ldb, lines: w, length: depth, dst: dst, groupWidth: nr)
        }
        j0 += nr
    }
}

/// Packs `op(A)[row ..< row+height, column ..< column+depth]` into slivers of `mr` rows: sliver `s`
/// starts at `s·mr·depth` and holds, for each depth index `p`, `mr` consecutive scalars (zero-padded).
/// `op(A)[i, p]` is `a[i·lda + p]`, or `a[p·lda + i]` when transposed. `vectorized` (AVX-512 CPUs only)
/// runs the AVX-512 packing kernels instead of the 4-wide Swift loops.
@inline(__always)
func packA(
    transposed: Bool, a: UnsafePointer<Float>, lda: Int, row: Int, column: Int, height: Int, depth: Int,
    mr: Int, vectorized: Bool, into packed: UnsafeMutablePointer<Float>
) {
    if vectorized, transposed {
        csq_pack_copy_avx512(a + column * lda + row, lda, depth, height, mr, packed)
        return
    }
    var i0 = 0
    while i0 < height {
        let h = min(mr, height - i0)
        let dst = packed + i0 * depth
        if vectorized {
            csq_pack_transpose_avx512(a + (row + i0) * lda + column, lda, h, depth, mr, dst)
        } else if transposed {
            let src = a + column * lda + row + i0
            if h == mr && mr % 4 == 0 {
                for p in 0..<depth {
                    copySIMD4(from: src + p * lda, to: dst + p * mr, count: mr)
                }
            } else {
                for p in 0..<depth {
                    let s = src + p * lda
                    let d = dst + p * mr
                    for ii in 0..<h { d[ii] = s[ii] }
                    for ii in h..<mr { d[ii] = 0 }
                }
            }
        } else {
            transposeInto(
                src: a + (row + i0) * lda + column, ld: lda, lines: h, length: depth, dst: dst, groupWidth: mr)
        }
        i0 += mr
    }
}

/// Writes `dst[p·groupWidth + l] = src[l·ld + p]` for `l < lines`, `p < length`, and zeros for
/// `lines ≤ l < groupWidth`: `lines` contiguous source rows become interleaved groups.
@inline(__always)
func transposeInto(
    src: UnsafePointer<Float>, ld: Int, lines: Int, length: Int, dst: UnsafeMutablePointer<Float>,
    groupWidth: Int
) {
    // Four source rows at a time keep four read streams and write 4 scalars of each group.
    var l = 0
    while l + 4 <= lines {
        let s0 = src + l * ld, s1 = s0 + ld, s2 = s1 + ld, s3 = s2 + ld
        var d = UnsafeMutableRawPointer(dst + l)
        let step = groupWidth * MemoryLayout<Float>.stride
        var p = 0
        // 4 x 4 blocks: four 4-wide loads, a register transpose, four 4-wide stores.
        while p + 4 <= length {
            let r0 = UnsafeRawPointer(s0 + p).loadUnaligned(as: SIMD4<Float>.self)
            let r1 = UnsafeRawPointer(s1 + p).loadUnaligned(as: SIMD4<Float>.self)
            let r2 = UnsafeRawPointer(s2 + p).loadUnaligned(as: SIMD4<Float>.self)
            let r3 = UnsafeRawPointer(s3 + p).loadUnaligned(as: SIMD4<Float>.self)
            let t0 = SIMD4(r0[0], r1[0], r0[1], r1[1]), t1 = SIMD4(r2[0], r3[0], r2[1], r3[1])
            let t2 = SIMD4(r0[2], r1[2], r0[3], r1[3]), t3 = SIMD4(r2[2], r3[2], r2[3], r3[3])
            d.storeBytes(of: SIMD4(lowHalf: t0.lowHalf, highHalf: t1.lowHalf), as: SIMD4<Float>.self)
            d.storeBytes(of: SIMD4(lowHalf: t0.highHalf, highHalf: t1.highHalf), toByteOffset: step, as: SIMD4<Float>.self)
            d.storeBytes(of: SIMD4(lowHalf: t2.lowHalf, highHalf: t3.lowHalf), toByteOffset: 2 * step, as: SIMD4<Float>.self)
            d.storeBytes(of: SIMD4(lowHalf: t2.highHalf, highHalf: t3.highHalf), toByteOffset: 3 * step, as: SIMD4<Float>.self)
            d += 4 * step
            p += 4
        }
        let dp = d.assumingMemoryBound(to: Float.self)
        var q = 0
        while p < length {
            dp[q * groupWidth] = s0[p]
            dp[q * groupWidth + 1] = s1[p]
            dp[q * groupWidth + 2] = s2[p]
            dp[q * groupWidth + 3] = s3[p]
            p += 1
            q += 1
        }
        l += 4
    }
    while l < lines {
        let s = src + l * ld
        var d = dst + l
        for p in 0..<length {
            d[0] = s[p]
            d += groupWidth
        }
        l += 1
    }
    if lines < groupWidth {
        var d = dst
        for _ in 0..<length {
            for z in lines..<groupWidth { d[z] = 0 }
            d += groupWidth
        }
    }
}

/// Copies `count` (a multiple of 16, at most 64) scalars with 16-wide vector loads and stores, unrolled
/// per count so that the compiler does not turn these short copies into `memcpy` calls.
@inline(__always)
func copySIMD16(from src: UnsafePointer<Float>, to dst: UnsafeMutablePointer<Float>, count: Int) {
    let s = UnsafeRawPointer(src)
    let d = UnsafeMutableRawPointer(dst)
    @inline(__always) func move(_ offset: Int) {
        d.storeBytes(of: s.loadUnaligned(fromByteOffset: offset, as: SIMD16<Float>.self), toByteOffset: offset, as: SIMD16<Float>.self)
    }
    switch count {
    case 16: move(0)
    case 32: move(0); move(64)
    case 48: move(0); move(64); move(128)
    case 64: move(0); move(64); move(128); move(192)
    default:
        for i in 0..<count { dst[i] = src[i] }
    }
}

/// Copies `count` (a multiple of 4, at most 16) scalars with 4-wide vector loads and stores.
@inline(__always)
func copySIMD4(from src: UnsafePointer<Float>, to dst: UnsafeMutablePointer<Float>, count: Int) {
    let s = UnsafeRawPointer(src)
    let d = UnsafeMutableRawPointer(dst)
    @inline(__always) func move(_ offset: Int) {
        d.storeBytes(of: s.loadUnaligned(fromByteOffset: offset, as: SIMD4<Float>.self), toByteOffset: offset, as: SIMD4<Float>.self)
    }
    switch count {
    case 4: move(0)
    case 8: move(0); move(16)
    case 12: move(0); move(16); move(32)
    case 16: move(0); move(16); move(32); move(48)
    default:
        for i in 0..<count { dst[i] = src[i] }
    }
}
