import SquisherTensor
import Testing

/// One product shape of a test case.
struct GEMMShape: Sendable, CustomTestStringConvertible {
    let m: Int
    let n: Int
    let k: Int
    var testDescription: String { "\(m)x\(n)x\(k)" }
}

/// Which operands are transposed.
struct GEMMTransposes: Sendable, CustomTestStringConvertible {
    let a: Bool
    let b: Bool
    var testDescription: String { (a ? "Aᵀ" : "A") + "·" + (b ? "Bᵀ" : "B") }
    static let all = [GEMMTransposes(a: false, b: false), .init(a: true, b: false), .init(a: false, b: true), .init(a: true, b: true)]
}

/// A random product problem with padded leading dimensions, and its Double reference.
struct GEMMProblem {
    let shape: GEMMShape
    let transposes: GEMMTransposes
    let lda: Int, ldb: Int, ldc: Int
    var a: [Float], b: [Float], c: [Float]

    init(_ shape: GEMMShape, _ transposes: GEMMTransposes, padding: Int, seed: UInt64, initialC: Float? = nil) {
        self.shape = shape
        self.transposes = transposes
        var rng = SplitMix64(seed: seed)
        // Stored A is [k, m] when transposed, else [m, k]; likewise B is [n, k] or [k, n]; C is [m, n].
        let (aRows, aColumns) = transposes.a ? (shape.k, shape.m) : (shape.m, shape.k)
        let (bRows, bColumns) = transposes.b ? (shape.n, shape.k) : (shape.k, shape.n)
        let cStride = shape.n + padding
        lda = aColumns + padding
        ldb = bColumns + padding
        ldc = cStride
        func random(_ count: Int) -> [Float] {
            (0..<count).map { _ in Float(rng.nextUniformDouble() * 2 - 1) }
        }
        a = random(max(1, aRows * lda))
        b = random(max(1, bRows * ldb))
        let cCount = max(1, shape.m * cStride)
        c = initialC.map { [Float](repeating: $0, count: cCount) } ?? random(cCount)
    }

    func opA(_ i: Int, _ p: Int) -> Double { Double(transposes.a ? a[p * lda + i] : a[i * lda + p]) }
    func opB(_ p: Int, _ j: Int) -> Double { Double(transposes.b ? b[j * ldb + p] : b[p * ldb + j]) }

    /// Runs `gemm` and checks every element of C (and that padding columns are untouched) against a
    /// naive Double product. Tolerance per element: the forward error bound of a float32 dot product of
    /// length k (k - 1 roundings) plus the rounding of `alpha·sum` and of the final `+ beta·c`, i.e.
    /// `(k + 1)·eps32·|alpha|·Σ_p |a_ip||b_pj|`, plus rounding of the beta term `2·eps32·|beta·c_ij|`,
    /// plus 1e-30 for exact zeros: a wrong element, a missed depth pass or a stray tile is far outside it.
    func check(alpha: Float, beta: Float, configuration: GEMMConfiguration = .init()) {
        check(alpha: alpha, beta: beta, configurations: [configuration])
    }

    /// ``check(alpha:beta:configuration:)`` for several settings on the same problem: the Double reference
    /// is computed once, then every setting's result is checked against it (the failure names the setting).
    func check(alpha: Float, beta: Float, configurations: [GEMMConfiguration]) {
        let eps32 = Double(Float.ulpOfOne)
        var expected = [Double](repeating: 0, count: shape.m * shape.n)
        var tolerance = expected
        for i in 0..<shape.m {
            for j in 0..<shape.n {
                var sum = 0.0, magnitude = 0.0
                for p in 0..<shape.k {
                    let term = opA(i, p) * opB(p, j)
                    sum += term
                    magnitude += abs(term)
                }
                let old = beta == 0 ? 0 : Double(beta) * Double(c[i * ldc + j])
                expected[i * shape.n + j] = Double(alpha) * sum + old
                tolerance[i * shape.n + j] = Double(shape.k + 1) * eps32 * abs(Double(alpha)) * magnitude + 2 * eps32 * abs(old) + 1e-30
            }
        }
        for configuration in configurations {
            let out = run(alpha: alpha, beta: beta, configuration: configuration)
            var worst = (excess: 0.0, i: -1, j: -1, got: Float(0), expected: 0.0)
            var paddingChanged = 0
            for i in 0..<shape.m {
                for j in 0..<ldc {
                    let index = i * ldc + j
                    guard j < shape.n else {
                        if out[index].bitPattern != c[index].bitPattern { paddingChanged += 1 }
                        continue
                    }
                    let reference = expected[i * shape.n + j]
                    let error = abs(Double(out[index]) - reference)
                    let excess = out[index].isFinite ? error / tolerance[i * shape.n + j] : .infinity
                    if excess > worst.excess || (excess.isNaN && !worst.excess.isNaN) {
                        worst = (excess, i, j, out[index], reference)
                    }
                }
            }
            #expect(
                worst.excess <= 1,
                "worst element C[\(worst.i), \(worst.j)] = \(worst.got), expected \(worst.expected) (\(worst.excess)x the tolerance) with \(configuration)")
            #expect(paddingChanged == 0, "\(paddingChanged) scalars in C's padding columns were written with \(configuration)")
        }
    }
}

@Suite("GEMM")
struct GEMMTests {
    /// Odd sizes, non-multiples of every tile shape (4x16, 6x16, 4x24, 12x32, 14x32, 6x64, 8x48),
    /// depths beyond kc = 256 (several depth passes), heights beyond mc = 144 (several A blocks),
    /// and products above the 2 MFLOP threading threshold.
    static let shapes: [GEMMShape] = [
        .init(m: 1, n: 1, k: 1), .init(m: 3, n: 17, k: 33), .init(m: 17, n: 3, k: 65), .init(m: 33, n: 65, k: 17),
        .init(m: 65, n: 129, k: 3), .init(m: 129, n: 33, k: 129), .init(m: 1, n: 300, k: 7),
        .init(m: 300, n: 1, k: 7), .init(m: 13, n: 29, k: 300), .init(m: 150, n: 70, k: 40),
        .init(m: 131, n: 141, k: 71), .init(m: 70, n: 260, k: 90),
    ]

    @Test("all transposes and odd sizes, padded leading dimensions", arguments: shapes, GEMMTransposes.all)
    func transposesAndSizes(shape: GEMMShape, transposes: GEMMTransposes) {
        GEMMProblem(shape, transposes, padding: 3, seed: 17).check(alpha: 1, beta: 0)
    }

    @Test("alpha and beta, with leading dimensions equal to the widths", arguments: GEMMTransposes.all)
    func alphaBeta(transposes: GEMMTransposes) {
        for shape in [GEMMShape(m: 33, n: 47, k: 29), GEMMShape(m: 130, n: 150, k: 300)] {
            let problem = GEMMProblem(shape, transposes, padding: 0, seed: 5)
            problem.check(alpha: 0.5, beta: -1.5)
            problem.check(alpha: -2, beta: 1)
            problem.check(alpha: 1, beta: 0.25)
        }
    }

    @Test("beta = 0 overwrites NaN in C", arguments: GEMMTransposes.all)
    func betaZeroOverwritesNaN(transposes: GEMMTransposes) {
        for shape in [GEMMShape(m: 5, n: 7, k: 3), GEMMShape(m: 129, n: 65, k: 300)] {
            GEMMProblem(shape, transposes, padding: 2, seed: 9, initialC: .nan).check(alpha: 1.5, beta: 0)
        }
    }

    @Test("alpha = 0 or k = 0 only scales C by beta")
    func alphaZeroAndEmptyDepth() {
        GEMMProblem(GEMMShape(m: 9, n: 11, k: 13), GEMMTransposes(a: false, b: true), padding: 1, seed: 3)
            .check(alpha: 0, beta: 2)
        GEMMProblem(GEMMShape(m: 9, n: 11, k: 0), GEMMTransposes(a: true, b: false), padding: 1, seed: 4)
            .check(alpha: 1, beta: 0.5)
        GEMMProblem(GEMMShape(m: 9, n: 11, k: 0), GEMMTransposes(a: false, b: false), padding: 1, seed: 4, initialC: .nan)
            .check(alpha: 1, beta: 0)
    }

    /// Every micro-kernel this CPU can run (portable, AVX2, each AVX-512 tile shape), small blocks so
    /// that all block edges are hit, single- and multi-threaded.
    @Test("every kernel and blocking", arguments: GEMMTransposes.all)
    func everyKernel(transposes: GEMMTransposes) {
        // Tall: threads share one packed B and split rows; short and wide: threads split columns.
        let problems = [
            GEMMProblem(GEMMShape(m: 97, n: 131, k: 75), transposes, padding: 5, seed: 21),
            GEMMProblem(GEMMShape(m: 13, n: 200, k: 40), transposes, padding: 2, seed: 22),
        ]
        var configurations: [GEMMConfiguration] = []
        for level in [0, 2, 3] where level <= GEMMKernelInfo.cpuISALevel {
            for variant in GEMMKernelInfo.available(isaLevel: level).indices {
                for threads in [1, 2, 3] {
                    // Grid limit 0: shared packed op(B) or split columns; default: the packed grid.
                    for gridLimit in [0, 1 << 20] {
                        configurations.append(GEMMConfiguration(
                            maximumThreads: threads, parallelThresholdFlops: 0, kc: 32, mc: 40, nc: 64,
                            kernelVariant: variant, isaLevel: level, packedGridLimit: gridLimit))
                    }
                }
            }
        }
        for problem in problems {
            problem.check(alpha: 0.75, beta: 0.5, configurations: configurations)
        }
    }

    /// The AVX-512 kernels run the depth loop 4 steps at a time with software prefetch, then the 0-3
    /// remaining steps one by one: every depth 1...9 (each remainder, with and without a whole unrolled
    /// round) and deep products with several depth blocks (k = 259 at kc 256 is 2 blocks of 130, k = 515
    /// 3 blocks of 172), for each kernel variant (12x32 with and without prefetch, 14x32, 6x64, 8x48), on
    /// the shared-panel split (grid limit 0) and the packed grid, 1 to 3 threads. Reference and tolerance:
    /// ``GEMMProblem/check(alpha:beta:configurations:)``.
    @Test("unrolled prefetching kernels: every depth remainder", arguments: GEMMTransposes.all)
    func unrolledDepths(transposes: GEMMTransposes) {
        let level = GEMMKernelInfo.cpuISALevel
        let shapes = (1...9).map { GEMMShape(m: 29, n: 45, k: $0) } + [GEMMShape(m: 50, n: 70, k: 259), GEMMShape(m: 37, n: 33, k: 515)]
        for shape in shapes {
            let problem = GEMMProblem(shape, transposes, padding: 1, seed: UInt64(40 + shape.k))
            let configurations = GEMMKernelInfo.available(isaLevel: level).indices.flatMap { variant in
                [(1, 0), (2, 0), (3, 0), (2, 1 << 20)].map { threads, gridLimit in
                    GEMMConfiguration(
                        maximumThreads: threads, parallelThresholdFlops: 0, kernelVariant: variant, isaLevel: level,
                        packedGridLimit: gridLimit)
                }
            }
            problem.check(alpha: 1.5, beta: -0.75, configurations: configurations)
        }
    }

    /// The packed-grid split of multithreaded mid-sized products: a side of 1, sizes that are not
    /// multiples of any tile, whole tiles only (12 x 32, 24 x 64), fewer compute units than runs (one
    /// tile), several depth blocks (kc 40), and scaled-down batch-128 `Linear` shapes (few rows, deep or
    /// shallow depth), on 1 (serial), 2 and 3 threads, with beta = 0 over NaN and beta != 0, and with
    /// padded (3, 1) and unpadded leading dimensions. With 2 and 3 threads most shapes have row tiles
    /// split between two runs (part of a tile's slivers in each).
    static let gridShapes: [GEMMShape] = [
        .init(m: 1, n: 1, k: 1), .init(m: 1, n: 97, k: 13), .init(m: 97, n: 1, k: 13), .init(m: 5, n: 7, k: 1),
        .init(m: 12, n: 32, k: 81), .init(m: 24, n: 64, k: 33), .init(m: 13, n: 33, k: 41), .init(m: 128, n: 40, k: 98),
        .init(m: 40, n: 98, k: 16), .init(m: 25, n: 98, k: 32), .init(m: 131, n: 77, k: 129), .init(m: 64, n: 64, k: 45),
    ]

    @Test("packed grid split: edge shapes, 1 to 3 threads", arguments: gridShapes, GEMMTransposes.all)
    func packedGrid(shape: GEMMShape, transposes: GEMMTransposes) {
        for threads in [1, 2, 3] {
            let configuration = GEMMConfiguration(maximumThreads: threads, parallelThresholdFlops: 0, kc: 40)
            GEMMProblem(shape, transposes, padding: 3, seed: 31).check(alpha: 1.25, beta: -0.5, configuration: configuration)
            GEMMProblem(shape, transposes, padding: 1, seed: 32, initialC: .nan).check(alpha: 1, beta: 0, configuration: configuration)
            GEMMProblem(shape, transposes, padding: 0, seed: 33).check(alpha: 0.5, beta: 2, configuration: configuration)
        }
    }

    @Test("Tensor.matmul matches the naive product", arguments: GEMMTransposes.all)
    func tensorMatmul(transposes: GEMMTransposes) throws {
        var rng = SplitMix64(seed: 11)
        let (m, n, k) = (19, 23, 37)
        let a = Tensor.uniform(shape: transposes.a ? [k, m] : [m, k], low: -1, high: 1, using: &rng)
        let b = Tensor.uniform(shape: transposes.b ? [n, k] : [k, n], low: -1, high: 1, using: &rng)
        let c = try Tensor.matmul(a, b, transposeA: transposes.a, transposeB: transposes.b)
        #expect(c.shape == [m, n])
        var worst = 0.0
        for i in 0..<m {
            for j in 0..<n {
                var sum = 0.0, magnitude = 0.0
                for p in 0..<k {
                    let term = Double(transposes.a ? a[p, i] : a[i, p]) * Double(transposes.b ? b[j, p] : b[p, j])
                    sum += term
                    magnitude += abs(term)
                }
                // Same float32 dot-product error bound as above.
                worst = max(worst, abs(Double(c[i, j]) - sum) / (Double(k) * Double(Float.ulpOfOne) * magnitude + 1e-30))
            }
        }
        #expect(worst <= 1, "worst error is \(worst)x the k·eps32·Σ|a||b| bound")
    }

    @Test("Tensor.matmul with empty dimensions does not crash")
    func emptyMatmul() throws {
        let empty = try Tensor.matmul(Tensor(zeros: [0, 5]), Tensor(zeros: [5, 3]))
        #expect(empty.shape == [0, 3])
        var rng = SplitMix64(seed: 2)
        let noDepth = try Tensor.matmul(Tensor(zeros: [4, 0]), Tensor(zeros: [0, 3]))
        #expect(noDepth.shape == [4, 3])
        #expect(noDepth.scalars == [Float](repeating: 0, count: 12))
        let noColumns = try Tensor.matmul(Tensor.uniform(shape: [4, 5], low: -1, high: 1, using: &rng), Tensor(zeros: [5, 0]))
        #expect(noColumns.shape == [4, 0])
        let transposedEmpty = try Tensor.matmul(Tensor(zeros: [0, 4]), Tensor(zeros: [3, 0]), transposeA: true, transposeB: true)
        #expect(transposedEmpty.shape == [4, 3])
        #expect(transposedEmpty.scalars.allSatisfy { $0 == 0 })
    }

    @Test("Tensor.matmul rejects mismatched inner dimensions")
    func mismatch() {
        #expect(throws: TensorError.self) { try Tensor.matmul(Tensor(zeros: [2, 3]), Tensor(zeros: [4, 2])) }
    }
}

extension GEMMProblem {
    /// C after `gemm` of this problem with a configuration (C starts as the problem's `c`).
    func run(alpha: Float, beta: Float, configuration: GEMMConfiguration) -> [Float] {
        var out = c
        a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                out.withUnsafeMutableBufferPointer { pc in
                    gemm(
                        transposeA: transposes.a, transposeB: transposes.b, m: shape.m, n: shape.n, k: shape.k,
                        alpha: alpha, a: pa.baseAddress!, lda: lda, b: pb.baseAddress!, ldb: ldb,
                        beta: beta, c: pc.baseAddress!, ldc: ldc, configuration: configuration)
                }
            }
        }
        return out
    }
}
