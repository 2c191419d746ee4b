import Dispatch
import SquisherTensor
import Synchronization
import Testing

/// `gemm` keeps its large packing buffers between products (a process-wide cache): a product must never
/// see what an earlier product of another shape left in them, and products running at the same time must
/// never share one.
@Suite("GEMM packing buffers reused between products")
struct GEMMScratchTests {
    /// The three multithreaded / serial paths that take cached buffers: the shared packed `op(B)` (grid
    /// limit 0, 2 threads), the packed grid (2 threads), and the serial product (1 thread; its panels of
    /// more than 64 KiB come from the cache).
    static let paths = [
        GEMMConfiguration(maximumThreads: 2, parallelThresholdFlops: 0, packedGridLimit: 0),
        GEMMConfiguration(maximumThreads: 2, parallelThresholdFlops: 0),
        GEMMConfiguration(maximumThreads: 1, parallelThresholdFlops: 0),
    ]

    /// A larger product on NaN operands fills the cached buffers with NaN; then smaller products of
    /// ragged shapes (no side a multiple of a tile) on the same path must match the Double reference
    /// (tolerance: ``GEMMProblem/check(alpha:beta:configurations:)``, the float32 dot-product error bound):
    /// one stale packed value would make an element NaN.
    @Test("a product after a NaN product of another shape", arguments: GEMMTransposes.all)
    func afterNaNProduct(transposes: GEMMTransposes) {
        for configuration in Self.paths {
            var poison = GEMMProblem(GEMMShape(m: 150, n: 300, k: 260), transposes, padding: 0, seed: 60)
            poison.a = poison.a.map { _ in .nan }
            poison.b = poison.b.map { _ in .nan }
            _ = poison.run(alpha: 1, beta: 0, configuration: configuration)
            for (index, shape) in [GEMMShape(m: 61, n: 77, k: 150), GEMMShape(m: 13, n: 250, k: 257)].enumerated() {
                GEMMProblem(shape, transposes, padding: 3, seed: 61 + UInt64(index))
                    .check(alpha: 0.5, beta: -1.25, configurations: [configuration])
            }
        }
    }

    /// Eight products of different shapes at once (two threads each, on every path) must each give the
    /// bits the same product gives alone: with a buffer shared by two products, one would overwrite the
    /// other's packed operands. The lone results are themselves checked against the Double reference.
    @Test("concurrent products each get their own buffers")
    func concurrentProducts() {
        let problems = (0..<8).map { index in
            GEMMProblem(
                GEMMShape(m: 40 + 13 * index, n: 90 + 7 * index, k: 120 + 11 * index),
                GEMMTransposes.all[index % 4], padding: 1, seed: 70 + UInt64(index))
        }
        for configuration in Self.paths {
            let alone = problems.map { $0.run(alpha: 1, beta: 0.5, configuration: configuration) }
            problems[0].check(alpha: 1, beta: 0.5, configurations: [configuration])
            let results = ConcurrentResults(count: problems.count)
            DispatchQueue.concurrentPerform(iterations: problems.count) { index in
                results.store(index, problems[index].run(alpha: 1, beta: 0.5, configuration: configuration))
            }
            for index in problems.indices {
                let together = results.value(index)
                #expect(together.map(\.bitPattern) == alone[index].map(\.bitPattern), "product \(index), \(configuration)")
            }
        }
    }
}

/// Results written by concurrent iterations, one slot each.
private final class ConcurrentResults: Sendable {
    private let slots: Mutex<[[Float]]>
    init(count: Int) { slots = Mutex(Array(repeating: [], count: count)) }
    func store(_ index: Int, _ value: [Float]) { slots.withLock { $0[index] = value } }
    func value(_ index: Int) -> [Float] { slots.withLock { $0[index] } }
}

/// The depth block switches to ``GEMMConfiguration/largeOutputKC`` for products with a large `C`.
@Suite("GEMM depth block by output size")
struct GEMMDepthBlockTests {
    /// The rule itself: `kc` below the threshold, `largeOutputKC` from it, `kc` when it is 0.
    @Test("depth block rule")
    func rule() {
        var configuration = GEMMConfiguration(kc: 256, largeOutputKC: 512, largeOutputScalars: 1 << 18)
        #expect(configuration.depthBlock(m: 128, n: 256) == 256)
        #expect(configuration.depthBlock(m: 512, n: 512) == 512)
        #expect(configuration.depthBlock(m: 3072, n: 768) == 512)
        configuration.largeOutputKC = 0
        #expect(configuration.depthBlock(m: 3072, n: 768) == 256)
        configuration.setDepthBlock(96)
        #expect(configuration.depthBlock(m: 1, n: 1) == 96 && configuration.depthBlock(m: 3072, n: 768) == 96)
    }

    /// Products on each side of a lowered threshold (600 elements of C), with depth blocks 16 and 56, so
    /// both rules give several depth passes (k = 150: 10 passes of 15 or 3 of 50), on the serial product, the
    /// shared packed `op(B)` and the packed grid, every transposition. Reference and tolerance:
    /// ``GEMMProblem/check(alpha:beta:configurations:)``.
    @Test("products on both sides of the threshold", arguments: GEMMTransposes.all)
    func bothSides(transposes: GEMMTransposes) {
        let configurations = [(1, 1 << 20), (2, 0), (2, 1 << 20)].map { threads, gridLimit in
            GEMMConfiguration(
                maximumThreads: threads, parallelThresholdFlops: 0, kc: 16, packedGridLimit: gridLimit,
                largeOutputKC: 56, largeOutputScalars: 600)
        }
        for (index, shape) in [GEMMShape(m: 20, n: 29, k: 150), GEMMShape(m: 37, n: 41, k: 150)].enumerated() {
            GEMMProblem(shape, transposes, padding: 2, seed: 90 + UInt64(index))
                .check(alpha: 0.75, beta: 1.5, configurations: configurations)
        }
    }
}
