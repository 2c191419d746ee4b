import SquisherTensor
import Testing

/// `gemmAddScaledSquares` squares each tile of a product in the micro-kernel's registers and adds it to
/// the sums: it must give the bits of computing the product with `gemm` and then adding
/// `(scale · P) · P` element by element, leave C's padding alone, and decline (untouched sums) where it
/// has no kernel.
@Suite("GEMM scaled squares of a product")
struct GEMMSquaresTests {
    /// Ragged and whole-tile shapes (12 x 32 tiles), depths 1 to 256 (one `gemm` depth pass, so both
    /// ways round alike), more rows than one mc block (144).
    static let shapes: [GEMMShape] = [
        .init(m: 1, n: 1, k: 1), .init(m: 13, n: 33, k: 7), .init(m: 24, n: 64, k: 128), .init(m: 150, n: 70, k: 40),
        .init(m: 31, n: 97, k: 256), .init(m: 300, n: 45, k: 129), .init(m: 5, n: 200, k: 3),
    ]

    /// The expected sums from `gemm` (1 thread, one depth pass) and Swift's unfused `(s·p)·p + y`.
    static func reference(_ problem: GEMMProblem, scale: Float) -> [Float] {
        let product = problem.run(alpha: 1, beta: 0, configuration: GEMMConfiguration(maximumThreads: 1))
        var sums = problem.c
        for i in 0..<problem.shape.m {
            for j in 0..<problem.shape.n {
                let p = product[i * problem.ldc + j]
                sums[i * problem.ldc + j] = (scale * p) * p + sums[i * problem.ldc + j]
            }
        }
        return sums
    }

    static func fused(_ problem: GEMMProblem, scale: Float, configuration: GEMMConfiguration = .init(maximumThreads: 1)) -> (Bool, [Float]) {
        var sums = problem.c
        let done = problem.a.withUnsafeBufferPointer { a in
            problem.b.withUnsafeBufferPointer { b in
                sums.withUnsafeMutableBufferPointer { s in
                    gemmAddScaledSquares(
                        transposeA: problem.transposes.a, transposeB: problem.transposes.b, m: problem.shape.m,
                        n: problem.shape.n, k: problem.shape.k, scale: scale, a: a.baseAddress!, lda: problem.lda,
                        b: b.baseAddress!, ldb: problem.ldb, sums: s.baseAddress!, ldSums: problem.ldc,
                        configuration: configuration)
                }
            }
        }
        return (done, sums)
    }

    @Test("bit-identical to the product then its scaled squares", arguments: shapes, GEMMTransposes.all)
    func matchesProductThenSquares(shape: GEMMShape, transposes: GEMMTransposes) throws {
        try #require(GEMMKernelInfo.cpuISALevel >= 3, "no squares micro-kernel below AVX-512 (covered by the next test)")
        let problem = GEMMProblem(shape, transposes, padding: 3, seed: 70 + UInt64(shape.k))
        let (done, sums) = Self.fused(problem, scale: 0.375)
        #expect(done)
        let expected = Self.reference(problem, scale: 0.375)
        let differing = zip(sums, expected).filter { $0.bitPattern != $1.bitPattern }.count
        #expect(differing == 0, "\(differing) of \(sums.count) scalars (padding included) differ from gemm then squares")
        // The same from operands packed beforehand, in column blocks of one and two slivers (as the
        // per-sample squares use them: a packed op(A) shared by the blocks of a packed op(B)).
        let packed = try #require(GEMMSquaresKernel(configuration: GEMMConfiguration(maximumThreads: 1)))
        var blocked = problem.c
        var packedA = [Float](repeating: .nan, count: packed.packedACount(m: shape.m, k: shape.k))
        var packedB = [Float](repeating: .nan, count: packed.packedBCount(n: shape.n, k: shape.k))
        problem.a.withUnsafeBufferPointer { a in
            problem.b.withUnsafeBufferPointer { b in
                packedA.withUnsafeMutableBufferPointer { pa in
                    packedB.withUnsafeMutableBufferPointer { pb in
                        blocked.withUnsafeMutableBufferPointer { out in
                            packed.packA(transposed: transposes.a, m: shape.m, k: shape.k, a: a.baseAddress!, lda: problem.lda, into: pa.baseAddress!)
                            packed.packB(transposed: transposes.b, n: shape.n, k: shape.k, b: b.baseAddress!, ldb: problem.ldb, into: pb.baseAddress!)
                            var column = 0, slivers = 1
                            while column < shape.n {
                                let width = min(shape.n - column, slivers * packed.tileColumns)
                                packed.addScaledSquares(
                                    packedA: pa.baseAddress!, m: shape.m, packedB: pb.baseAddress! + column * shape.k, n: width, k: shape.k,
                                    scale: 0.375, sums: out.baseAddress! + column, ldSums: problem.ldc)
                                column += width
                                slivers = 3 - slivers
                            }
                        }
                    }
                }
            }
        }
        let differingBlocked = zip(blocked, expected).filter { $0.bitPattern != $1.bitPattern }.count
        #expect(differingBlocked == 0, "\(differingBlocked) scalars differ with operands packed beforehand")
    }

    /// Deeper than a `gemm` depth pass (k = 700, one pass here, three there): against Double, within
    /// the float32 error of the dot product, `(k + 1)·eps·Σ|a||b|`, carried through the square
    /// (relative error doubles) plus the two roundings of the epilogue.
    @Test("deep products against Double")
    func deepAgainstDouble() throws {
        try #require(GEMMKernelInfo.cpuISALevel >= 3, "no squares micro-kernel below AVX-512")
        let problem = GEMMProblem(GEMMShape(m: 29, n: 41, k: 700), GEMMTransposes(a: true, b: false), padding: 1, seed: 77)
        let (done, sums) = Self.fused(problem, scale: 2)
        #expect(done)
        let eps = Double(Float.ulpOfOne)
        var worst = 0.0
        for i in 0..<29 {
            for j in 0..<41 {
                var p = 0.0, magnitude = 0.0
                for q in 0..<700 {
                    let term = problem.opA(i, q) * problem.opB(q, j)
                    p += term
                    magnitude += abs(term)
                }
                let old = Double(problem.c[i * problem.ldc + j])
                let expected = 2 * p * p + old
                let bound = 2 * (2 * Double(701) * eps * magnitude * (abs(p) + magnitude)) + 3 * eps * (2 * p * p + abs(old)) + 1e-30
                worst = max(worst, abs(Double(sums[i * problem.ldc + j]) - expected) / bound)
            }
        }
        #expect(worst <= 1, "worst error \(worst)x the bound")
    }

    /// Below AVX-512 (ISA level 2 or 0 configured) and beyond the depth limit: `false`, sums untouched.
    @Test("declines without a kernel or beyond the depth limit")
    func declines() {
        let problem = GEMMProblem(GEMMShape(m: 7, n: 9, k: 5), GEMMTransposes(a: true, b: false), padding: 0, seed: 78)
        for level in [0, 2] {
            let (done, sums) = Self.fused(problem, scale: 1, configuration: GEMMConfiguration(maximumThreads: 1, isaLevel: level))
            #expect(!done)
            #expect(sums == problem.c)
        }
        let deep = GEMMProblem(GEMMShape(m: 3, n: 4, k: gemmSquaresMaximumDepth + 1), GEMMTransposes(a: true, b: false), padding: 0, seed: 79)
        let (done, sums) = Self.fused(deep, scale: 1)
        #expect(!done)
        #expect(sums == deep.c)
    }
}
