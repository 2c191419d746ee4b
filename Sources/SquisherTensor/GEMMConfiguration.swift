import CSquisherKernels
import Synchronization

/// Process-wide settings of ``gemm(transposeA:transposeB:m:n:k:alpha:a:lda:b:ldb:beta:c:ldc:)``:
/// thread count, cache-blocking sizes and the micro-kernel's tile shape.
///
/// The defaults are tuned for the AVX-512 Zen 4/Zen 5 machines Squisher is developed on (see
/// BENCHMARKS.md, "Matrix multiply"); most code never changes them. Set ``current`` to change
/// them for the whole process (it is read once per `gemm` call, under a lock).
///
/// The blocking follows Goto & van de Geijn (2008), "Anatomy of high-performance matrix
/// multiplication": a `kc x nc` panel of `op(B)` and an `mc x kc` block of `op(A)` are packed into
/// contiguous slivers, and a register-tiled micro-kernel computes `mr x nr` tiles of `C`.
public struct GEMMConfiguration: Sendable, Hashable {
    /// The largest number of threads one product may use (1 = single-threaded). Products below
    /// ``parallelThresholdFlops`` always run on the calling thread.
    public var maximumThreads: Int

    /// How many threads to split `items` independent pieces of work over (samples of a batch, each
    /// with single-threaded products): ``maximumThreads``, but at least 1 and at most `items`.
    public func threadParts(for items: Int) -> Int { Swift.max(1, Swift.min(maximumThreads, items)) }
    /// Products with fewer flops (`2·m·n·k`) than this run single-threaded.
    public var parallelThresholdFlops: Int
    /// Depth of a packed panel (the `k` extent of one pass), in scalars, for products whose `C` has fewer
    /// than ``largeOutputScalars`` elements.
    public var kc: Int
    /// Depth of a packed panel for products whose `C` has at least ``largeOutputScalars`` elements (0 = use
    /// ``kc`` for every product). Such a `C` does not stay in L2 between depth passes, so fewer, deeper
    /// passes save reloads of it (the `op(B)` sliver then outgrows L1 and streams from L2 with prefetch).
    public var largeOutputKC: Int
    /// Elements of `C` (`m·n`) from which ``largeOutputKC`` applies.
    public var largeOutputScalars: Int
    /// Rows of `op(A)` packed per block (kept in L2), in scalars; rounded up to the tile height.
    public var mc: Int
    /// Columns of `op(B)` packed per panel, in scalars; rounded up to the tile width.
    public var nc: Int
    /// Which micro-kernel tile shape to use for the CPU's instruction set: 0 is the default; see
    /// ``GEMMKernelInfo/available(isaLevel:)`` for the others. For benchmarking tile shapes.
    public var kernelVariant: Int
    /// The instruction-set level to use, capped at what the CPU supports (``GEMMKernelInfo/cpuISALevel``):
    /// 0 = portable C, 2 = AVX2 + FMA, 3 = AVX-512F. Lowering it is for benchmarks and tests.
    public var isaLevel: Int
    /// Multithreaded products whose `op(A)` and `op(B)`, padded to whole tiles, together hold at most
    /// this many scalars split `C` as a grid of tiles, evenly between the threads, a row tile shared by
    /// two threads where needed (mid-sized products, e.g. a batch of 128 through `Linear(784, 256)`:
    /// 11 row tiles); larger ones split whole rows. Both share one packed `op(B)`. 0 turns the grid off.
    public var packedGridLimit: Int

    /// The default settings: all cores, 2 MFLOP threshold, `kc = 256` (512 from 2^18 elements of `C`, 1 MiB),
    /// `mc = 144`, `nc = 4096`, packed-grid limit 2^20 scalars (4 MiB).
    public init(
        maximumThreads: Int = GEMMConfiguration.processorCount, parallelThresholdFlops: Int = 2_000_000,
        kc: Int = 256, mc: Int = 144, nc: Int = 4096, kernelVariant: Int = 0,
        isaLevel: Int = GEMMKernelInfo.cpuISALevel, packedGridLimit: Int = 1 << 20,
        largeOutputKC: Int = 512, largeOutputScalars: Int = 1 << 18
    ) {
        self.maximumThreads = maximumThreads
        self.parallelThresholdFlops = parallelThresholdFlops
        self.kc = kc
        self.largeOutputKC = largeOutputKC
        self.largeOutputScalars = largeOutputScalars
        self.mc = mc
        self.nc = nc
        self.kernelVariant = kernelVariant
        self.isaLevel = isaLevel
        self.packedGridLimit = packedGridLimit
    }

    /// The depth block of an `m x n` product: ``largeOutputKC`` when it is set and `m·n` reaches
    /// ``largeOutputScalars``, else ``kc`` (at least 1).
    public func depthBlock(m: Int, n: Int) -> Int {
        Swift.max(1, largeOutputKC > 0 && m * n >= largeOutputScalars ? largeOutputKC : kc)
    }

    /// Sets ``kc`` and ``largeOutputKC`` to one depth block for every product (for blocking benchmarks).
    public mutating func setDepthBlock(_ depth: Int) {
        kc = depth
        largeOutputKC = depth
    }

    /// The number of active processors (cores) of this machine.
    public static var processorCount: Int { max(1, _gemmProcessorCount) }

    /// The settings every `gemm` call uses from now on. Thread-safe.
    public static var current: GEMMConfiguration {
        get { _gemmConfiguration.withLock { $0 } }
        set { _gemmConfiguration.withLock { $0 = newValue } }
    }
}

private let _gemmProcessorCount: Int = {
    #if canImport(Glibc) || canImport(Darwin)
    return Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
    #else
    return 1
    #endif
}()

private let _gemmConfiguration = Mutex(GEMMConfiguration())

/// A GEMM micro-kernel from the C shim target: its tile shape and instruction-set level.
public struct GEMMKernelInfo: Sendable, Hashable, CustomStringConvertible {
    /// Rows of the register tile (`mr`).
    public let tileRows: Int
    /// Columns of the register tile (`nr`).
    public let tileColumns: Int
    /// Instruction-set level the kernel uses: 0 = portable C, 2 = AVX2 + FMA, 3 = AVX-512F.
    public let isaLevel: Int
    /// How far ahead, in depth steps, the kernel prefetches its packed `op(A)` and `op(B)` slivers into
    /// L1 (0 = no software prefetch).
    public let prefetchDistance: Int

    /// The instruction-set level this CPU supports (probed once per process with `cpuid`).
    public static let cpuISALevel: Int = Int(csq_isa_level())

    /// The kernel `gemm` uses for a level and variant (level capped at ``cpuISALevel``).
    public static func selected(isaLevel: Int, variant: Int) -> GEMMKernelInfo {
        let info = csq_sgemm_kernel_for(Int32(min(isaLevel, cpuISALevel)), Int32(variant))
        return GEMMKernelInfo(
            tileRows: Int(info.mr), tileColumns: Int(info.nr), isaLevel: Int(info.level), prefetchDistance: Int(info.prefetch))
    }

    /// The kernel variants available at a level (variant index = position), for tile-shape benchmarks:
    /// AVX-512 0 = 12x32, 1 = 14x32, 2 = 6x64, 3 = 8x48 (all with software prefetch), 4 = 12x32 without.
    public static func available(isaLevel: Int) -> [GEMMKernelInfo] {
        let level = min(isaLevel, cpuISALevel)
        let count = level >= 3 ? 5 : level >= 2 ? 2 : 1
        return (0..<count).map { selected(isaLevel: level, variant: $0) }
    }

    /// Name of the instruction set of a level.
    public static func isaName(_ level: Int) -> String {
        switch level {
        case 3...: "AVX-512F + FMA"
        case 2: "AVX2 + FMA"
        default: "portable C (baseline x86-64 SSE2)"
        }
    }

    /// Measures this core's float32 FMA peak at an ISA level (2 or 3), in flop/s, by timing independent
    /// FMA chains without memory traffic on the calling thread for about `milliseconds`. Returns nil at
    /// levels without FMA. For benchmarks: the ceiling against which GEMM efficiency is reported.
    public static func measuredPeakFlopsPerSecond(isaLevel: Int, milliseconds: Int = 200) -> Double? {
        let level = Int32(min(isaLevel, cpuISALevel))
        var flops = 0.0
        _ = csq_fma_peak_probe(level, 1000, &flops)
        guard flops > 0 else { return nil }
        var iterations = 100_000
        var best = 0.0
        let clock = ContinuousClock()
        var spent = Duration.zero
        while spent < .milliseconds(milliseconds) {
            let elapsed = clock.measure { _ = csq_fma_peak_probe(level, iterations, &flops) }
            spent += elapsed
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
            if seconds < 0.005 { iterations *= 4; continue }
            best = max(best, flops / seconds)
        }
        return best
    }

    /// For example `12x32 AVX-512F + FMA, prefetch 16`.
    public var description: String {
        "\(tileRows)x\(tileColumns) \(GEMMKernelInfo.isaName(isaLevel))" + (prefetchDistance > 0 ? ", prefetch \(prefetchDistance)" : "")
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
