import Foundation
import Squisher

/// `squisher-bench gemm`: GFLOP/s of Squisher's `gemm` against numpy (OpenBLAS) in the same run.
///
/// Protocol (both sides): warm-up, then `samples` samples, each the mean time per call over enough calls
/// to last `minSeconds`; the median sample is reported. numpy runs as
/// `python3 Benchmarks/numpy_gemm.py` with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE removed from its
/// environment (only there) and OPENBLAS_NUM_THREADS set to the thread count being measured.
enum GEMMBenchmark {
    static let optionsHelp = """
        options: --threads 1,2   --samples 7   --min-seconds 0.05   --no-numpy
                           --sizes 256,512,1024   --only TEXT (cases whose label contains TEXT)
                           --grid-limit N (GEMMConfiguration.packedGridLimit; 0 = no grid split)
                           --best (report the fastest sample instead of the median)   --kc N (depth block, all products)
                           --cold MiB (rotate operand copies of about MiB in all: operands read from memory)
                           --tune (sweep tile shapes and kc/mc at 1024, 1 thread)
                           --compare-splits (packed grid against the row split, interleaved, best samples)
                           --compare-variants 0,4 (micro-kernel variants, interleaved, CPU time)
                           --compare-kc 192,256,384, --compare-mc 144,288 (blocking, likewise)
                           --torch-python PATH (also time torch.mm with that Python, e.g. a CPU PyTorch venv)
        """

    /// One product: `op(A)` is m x k, `op(B)` is k x n.
    struct Case {
        let label: String
        let m: Int, n: Int, k: Int
        let transposeA: Bool, transposeB: Bool
        var flops: Double { 2 * Double(m) * Double(n) * Double(k) }
        var spec: String { "\(m),\(n),\(k),\(transposeA ? 1 : 0),\(transposeB ? 1 : 0)" }
    }

    struct Options {
        var threads = [1, 2]
        var samples = 7
        var minSeconds = 0.05
        var numpy = true
        var sizes = [256, 512, 1024]
        var tune = false
        var only: String? = nil
        var gridLimit: Int? = nil
        var kc: Int? = nil
        var compareSplits = false
        var best = false
        var torchPython: String? = nil
        var compareVariants: [Int]? = nil
        var compareKC: [Int]? = nil
        var compareMC: [Int]? = nil
        /// Operand copies to rotate through, about this many MiB in all (0: one set, cache-warm).
        var coldMiB = 0
    }

    static func parse(_ arguments: [String]) -> Options? {
        var options = Options()
        var iterator = arguments.makeIterator()
        func integers(_ text: String?) -> [Int]? {
            guard let list = text?.split(separator: ",").compactMap({ Int($0) }), !list.isEmpty else { return nil }
            return list
        }
        while let argument = iterator.next() {
            switch argument {
            case "--threads": guard let v = integers(iterator.next()) else { return nil }; options.threads = v
            case "--sizes": guard let v = integers(iterator.next()) else { return nil }; options.sizes = v
            case "--samples": guard let v = iterator.next().flatMap({ Int($0) }), v > 0 else { return nil }; options.samples = v
            case "--min-seconds": guard let v = iterator.next().flatMap({ Double($0) }), v > 0 else { return nil }; options.minSeconds = v
            case "--no-numpy": options.numpy = false
            case "--tune": options.tune = true
            case "--grid-limit": guard let v = iterator.next().flatMap({ Int($0) }), v >= 0 else { return nil }; options.gridLimit = v
            case "--best": options.best = true
            case "--cold": guard let v = iterator.next().flatMap({ Int($0) }), v >= 0 else { return nil }; options.coldMiB = v
            case "--compare-splits": options.compareSplits = true
            case "--kc": guard let v = iterator.next().flatMap({ Int($0) }), v > 0 else { return nil }; options.kc = v
            case "--compare-variants": guard let v = integers(iterator.next()) else { return nil }; options.compareVariants = v
            case "--compare-kc": guard let v = integers(iterator.next()) else { return nil }; options.compareKC = v
            case "--compare-mc": guard let v = integers(iterator.next()) else { return nil }; options.compareMC = v
            case "--torch-python": guard let v = iterator.next(), !v.isEmpty else { return nil }; options.torchPython = v
            case "--only": guard let v = iterator.next(), !v.isEmpty else { return nil }; options.only = v
            default: return nil
            }
        }
        return options
    }

    static func cases(sizes: [Int]) -> [Case] {
        var cases: [Case] = []
        for size in sizes {
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let name = (ta ? "Aᵀ" : "A") + "·" + (tb ? "Bᵀ" : "B")
                cases.append(Case(label: "\(size)³ \(name)", m: size, n: size, k: size, transposeA: ta, transposeB: tb))
            }
        }
        // Linear(784 -> 256) at batch 128, as SquisherLayers.Linear computes it (weight W is [256, 784]):
        cases.append(Case(label: "784x256 b128 fwd X·Wᵀ", m: 128, n: 256, k: 784, transposeA: false, transposeB: true))
        cases.append(Case(label: "784x256 b128 dW=dYᵀ·X", m: 256, n: 784, k: 128, transposeA: true, transposeB: false))
        cases.append(Case(label: "784x256 b128 dX=dY·W", m: 128, n: 784, k: 256, transposeA: false, transposeB: false))
        cases += gpt2Cases()
        // A tiny MLP's product (single-threaded by the 2 MFLOP threshold): per-call overhead matters.
        cases.append(Case(label: "small 128x64x32 A·B", m: 128, n: 64, k: 32, transposeA: false, transposeB: false))
        cases.append(Case(label: "small 128x64x32 A·Bᵀ", m: 128, n: 64, k: 32, transposeA: false, transposeB: true))
        return cases
    }

    /// The products of one GPT-2-small block (width 768, MLP 3072) on 1024 tokens (batch 8 x 128), as
    /// `SquisherLayers.TransposedLinear` (Hugging Face `Conv1D`, weight `[in, out]`) computes them:
    /// forward `X·W` (m = tokens, n = out, k = in), weight gradient `Xᵀ·dY` (m = in, n = out, k = tokens),
    /// input gradient `dY·Wᵀ` (m = tokens, n = in, k = out).
    static func gpt2Cases() -> [Case] {
        let tokens = 1024
        let layers = [("qkv", 768, 2304), ("attn proj", 768, 768), ("fc", 768, 3072), ("mlp proj", 3072, 768)]
        var cases: [Case] = []
        for (name, inputs, outputs) in layers {
            cases.append(Case(label: "gpt2 \(name) fwd X·W", m: tokens, n: outputs, k: inputs, transposeA: false, transposeB: false))
            cases.append(Case(label: "gpt2 \(name) dW=Xᵀ·dY", m: inputs, n: outputs, k: tokens, transposeA: true, transposeB: false))
            cases.append(Case(label: "gpt2 \(name) dX=dY·Wᵀ", m: tokens, n: inputs, k: outputs, transposeA: false, transposeB: true))
        }
        return cases
    }

    /// Median (or, with `best`, minimum) seconds per call of `body`, after warm-up.
    static func time(samples: Int, minSeconds: Double, best: Bool = false, _ body: () -> Void) -> Double {
        for _ in 0..<3 { body() }
        let clock = ContinuousClock()
        let once = seconds(clock.measure(body))
        let calls = max(1, Int(minSeconds / max(once, 1e-7)))
        var times: [Double] = []
        for _ in 0..<samples {
            let elapsed = clock.measure { for _ in 0..<calls { body() } }
            times.append(seconds(elapsed) / Double(calls))
        }
        times.sort()
        return best ? times[0] : times[times.count / 2]
    }

    static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
    }

    /// Seconds per call of Squisher's gemm on random operands.
    static func measureSquisher(_ c: Case, configuration: GEMMConfiguration, options: Options, best: Bool = false) -> Double {
        var seconds = 0.0
        withOperands(c, coldMiB: options.coldMiB) { run in
            seconds = time(samples: options.samples, minSeconds: options.minSeconds, best: best) { run(configuration) }
        }
        return seconds
    }

    /// The numpy script, found next to this source file's package or in the current directory.
    static func numpyScript() -> URL? {
        let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let candidates = [
            packageRoot.appendingPathComponent("Benchmarks/numpy_gemm.py"),
            URL(fileURLWithPath: FileManager.default.currentDirectoryPath).appendingPathComponent("Benchmarks/numpy_gemm.py"),
        ]
        return candidates.first { FileManager.default.fileExists(atPath: $0.path) }
    }

    /// Runs numpy on the cases with `threads` OpenBLAS threads: seconds per call by case spec, or an
    /// explanation of why numpy could not run.
    /// With `torchPython`, runs the same script with that interpreter and `--torch` (`torch.mm`, with
    /// `torch.set_num_threads(threads)`) instead.
    static func measureNumpy(
        _ cases: [Case], threads: Int, options: Options, torchPython: String? = nil
    ) -> Result<[String: Double], NumpyUnavailable> {
        guard let script = numpyScript() else { return .failure(NumpyUnavailable(reason: "Benchmarks/numpy_gemm.py not found")) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: torchPython ?? "/usr/bin/env")
        let interpreter = torchPython == nil ? ["python3"] : []
        let backend = torchPython == nil ? [] : ["--torch"]
        process.arguments = interpreter + [script.path] + backend + [String(options.samples), String(options.minSeconds)] + cases.map(\.spec)
        var environment = ProcessInfo.processInfo.environment
        // Older OpenBLAS builds misbehave on these CPUs, so the environment pins a slower kernel;
        // numpy's own best is measured without those two variables (only in this subprocess).
        environment.removeValue(forKey: "OPENBLAS_CORETYPE")
        environment.removeValue(forKey: "OPENBLAS_L2_SIZE")
        environment["OPENBLAS_NUM_THREADS"] = String(threads)
        environment["OMP_NUM_THREADS"] = String(threads)
        process.environment = environment
        let output = Pipe()
        let errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        do { try process.run() } catch {
            return .failure(NumpyUnavailable(reason: "could not start \(torchPython ?? "python3"): \(error)"))
        }
        let data = output.fileHandleForReading.readDataToEndOfFile()
        let errorData = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            let message = String(decoding: errorData, as: UTF8.self).split(separator: "\n").last.map(String.init) ?? ""
            return .failure(NumpyUnavailable(reason: "\(torchPython.map { "\($0) --torch" } ?? "python3/numpy") failed (status \(process.terminationStatus)): \(message)"))
        }
        var results: [String: Double] = [:]
        for line in String(decoding: data, as: UTF8.self).split(separator: "\n") {
            let fields = line.split(separator: " ")
            if fields.count >= 3, fields[0] == "RESULT", let seconds = Double(fields[options.best && fields.count >= 5 ? 4 : 2]) {
                results[String(fields[1])] = seconds
            } else if fields.first == "INFO" {
                let version = fields.dropFirst().joined(separator: " ")
                if torchPython == nil { numpyVersion = version } else { torchVersion = version }
            }
        }
        return .success(results)
    }

    struct NumpyUnavailable: Error { let reason: String }
    nonisolated(unsafe) static var numpyVersion = "numpy"
    nonisolated(unsafe) static var torchVersion = "torch"

    static func gflops(_ c: Case, _ seconds: Double) -> String { String(format: "%.1f", c.flops / seconds / 1e9) }

    static func run(arguments: [String]) -> Int32 {
        guard let options = parse(arguments) else {
            print("usage: squisher-bench gemm \(optionsHelp)")
            return 2
        }
        let level = GEMMKernelInfo.cpuISALevel
        let defaults = GEMMConfiguration()
        let kernel = GEMMKernelInfo.selected(isaLevel: defaults.isaLevel, variant: defaults.kernelVariant)
        print("# Matrix multiply (float32, row-major), squisher-bench gemm")
        print("CPU: \(cpuModelName()), \(GEMMConfiguration.processorCount) cores")
        print("ISA level used: \(level) (\(GEMMKernelInfo.isaName(level))), micro-kernel \(kernel), kc \(defaults.kc) (\(defaults.largeOutputKC) from \(defaults.largeOutputScalars) elements of C), mc \(defaults.mc), nc \(defaults.nc)")
        if let peak = GEMMKernelInfo.measuredPeakFlopsPerSecond(isaLevel: level) {
            print(String(format: "Measured float32 FMA peak: %.1f GFLOP/s per core (%.1f on %d cores)",
                         peak / 1e9, peak * Double(GEMMConfiguration.processorCount) / 1e9, GEMMConfiguration.processorCount))
        }
        print("Load average at start: \(PeerProcess.loadAverage())")
        print("Protocol: median of \(options.samples) samples, each >= \(options.minSeconds) s of calls, after warm-up; numpy in the same run")
        if options.tune {
            tune(options: options)
            return 0
        }
        let cases = cases(sizes: options.sizes).filter { c in options.only.map { c.label.contains($0) } ?? true }
        if options.compareSplits {
            compareSplits(cases, options: options)
            return 0
        }
        if let variants = options.compareVariants {
            let level = GEMMKernelInfo.cpuISALevel
            compareConfigurations(
                variants.map { v in ("\(v): \(GEMMKernelInfo.selected(isaLevel: level, variant: v))", { $0.kernelVariant = v }) },
                cases, options: options)
            return 0
        }
        if let blocks = options.compareKC {
            compareConfigurations(blocks.map { kc in ("kc \(kc)", { $0.setDepthBlock(kc) }) }, cases, options: options)
            return 0
        }
        if let blocks = options.compareMC {
            compareConfigurations(blocks.map { mc in ("mc \(mc)", { $0.mc = mc }) }, cases, options: options)
            return 0
        }
        var numpyProblem: String? = nil
        var torchProblem: String? = nil
        for threads in options.threads {
            var configuration = defaults
            configuration.maximumThreads = threads
            if let limit = options.gridLimit { configuration.packedGridLimit = limit }
            if let kc = options.kc { configuration.setDepthBlock(kc) }
            // Each case runs on both sides back to back (numpy in a fresh process per case), so that
            // both see the same load from other processes on this shared machine.
            var squisher: [Double] = []
            var numpy: [String: Double]? = options.numpy && numpyProblem == nil ? [:] : nil
            var torch: [String: Double]? = options.torchPython != nil && torchProblem == nil ? [:] : nil
            for c in cases {
                squisher.append(measureSquisher(c, configuration: configuration, options: options, best: options.best))
                if numpy != nil {
                    switch measureNumpy([c], threads: threads, options: options) {
                    case .success(let results): numpy?.merge(results) { $1 }
                    case .failure(let problem):
                        numpyProblem = problem.reason
                        numpy = nil
                        print("numpy unavailable, Squisher only: \(problem.reason)")
                    }
                }
                if torch != nil {
                    switch measureNumpy([c], threads: threads, options: options, torchPython: options.torchPython) {
                    case .success(let results): torch?.merge(results) { $1 }
                    case .failure(let problem):
                        torchProblem = problem.reason
                        torch = nil
                        print("torch unavailable: \(problem.reason)")
                    }
                }
            }
            printTable(cases: cases, squisher: squisher, numpy: numpy, torch: torch, threads: threads)
        }
        print("")
        print("Load average at end: \(PeerProcess.loadAverage())")
        return 0
    }

    /// Prints one thread count's table: GFLOP/s, ratios against numpy (and torch.mm when measured), µs per call.
    static func printTable(cases: [Case], squisher: [Double], numpy: [String: Double]?, torch: [String: Double]?, threads: Int) {
        print("")
        var title = "## \(threads) thread\(threads == 1 ? "" : "s")"
        if numpy != nil { title += " (\(numpyVersion), OPENBLAS_NUM_THREADS=\(threads))" }
        if torch != nil { title += " (\(torchVersion), torch.set_num_threads(\(threads)))" }
        print(title)
        let torchHeader = torch == nil ? "" : " torch.mm GFLOP/s | Squisher / torch |"
        let torchRule = torch == nil ? "" : "---:|---:|"
        print("| case | m x n x k | Squisher GFLOP/s | numpy GFLOP/s | Squisher / numpy |\(torchHeader) Squisher µs/call | numpy µs/call |")
        print("|---|---|---:|---:|---:|\(torchRule)---:|---:|")
        for (c, seconds) in zip(cases, squisher) {
            let np = numpy?[c.spec]
            let npFlops = np.map { gflops(c, $0) } ?? "-"
            let ratio = np.map { String(format: "%.2f", $0 / seconds) } ?? "-"
            let npMicro = np.map { String(format: "%.1f", $0 * 1e6) } ?? "-"
            var torchCells = ""
            if let torch {
                let t = torch[c.spec]
                torchCells = " \(t.map { gflops(c, $0) } ?? "-") | \(t.map { String(format: "%.2f", $0 / seconds) } ?? "-") |"
            }
            print("| \(c.label) | \(c.m)x\(c.n)x\(c.k) | \(gflops(c, seconds)) | \(npFlops) | \(ratio) |\(torchCells) \(String(format: "%.1f", seconds * 1e6)) | \(npMicro) |")
        }
    }

    /// Sweeps kernel tile shapes and kc/mc at 1024³ (A·B, 1 thread). Configurations are interleaved over
    /// several rounds and each keeps its best sample, so that load from other processes (this machine is
    /// shared) spreads over all of them instead of sinking a few.
    static func tune(options: Options) {
        let c = Case(label: "1024³ A·B", m: 1024, n: 1024, k: 1024, transposeA: false, transposeB: false)
        let level = GEMMKernelInfo.cpuISALevel
        var configurations: [(GEMMKernelInfo, GEMMConfiguration)] = []
        for (variant, kernel) in GEMMKernelInfo.available(isaLevel: level).enumerated() {
            for kc in [128, 192, 256, 384, 512] {
                for mcTiles in [12, 24] {
                    var configuration = GEMMConfiguration(
                        maximumThreads: 1, mc: mcTiles * kernel.tileRows, kernelVariant: variant, isaLevel: level)
                    configuration.setDepthBlock(kc)
                    configurations.append((kernel, configuration))
                }
            }
        }
        var best = [Double](repeating: .infinity, count: configurations.count)
        var rng = SplitMix64(seed: 1)
        let a = (0..<(c.m * c.k)).map { _ in rng.nextUniformFloat() * 2 - 1 }
        let b = (0..<(c.k * c.n)).map { _ in rng.nextUniformFloat() * 2 - 1 }
        var out = [Float](repeating: 0, count: c.m * c.n)
        for _ in 0..<options.samples {
            for (index, (_, configuration)) in configurations.enumerated() {
                a.withUnsafeBufferPointer { pa in
                    b.withUnsafeBufferPointer { pb in
                        out.withUnsafeMutableBufferPointer { pc in
                            let (aBase, bBase, cBase) = (pa.baseAddress!, pb.baseAddress!, pc.baseAddress!)
                            let call = {
                                gemm(
                                    transposeA: false, transposeB: false, m: c.m, n: c.n, k: c.k, a: aBase,
                                    lda: c.k, b: bBase, ldb: c.n, c: cBase, ldc: c.n, configuration: configuration)
                            }
                            call()
                            let start = threadCPUSeconds()
                            for _ in 0..<3 { call() }
                            best[index] = min(best[index], (threadCPUSeconds() - start) / 3)
                        }
                    }
                }
            }
        }
        print("Tuning: thread CPU time (not wall time, so that time lost to other processes on this shared machine")
        print("does not count), best of \(options.samples) interleaved rounds of 3 calls")
        print("| kernel | kc | mc | GFLOP/s (1024³ A·B, 1 thread) |")
        print("|---|---:|---:|---:|")
        for ((kernel, configuration), seconds) in zip(configurations, best) {
            print("| \(kernel) | \(configuration.kc) | \(configuration.mc) | \(gflops(c, seconds)) |")
        }
    }

    /// The multithreaded splits side by side: the packed grid (default) and the shared panel / column
    /// split (`packedGridLimit = 0`), interleaved call by call over `samples` rounds on every case, each
    /// keeping its fastest round, so that load from other processes hits both alike.
    static func compareSplits(_ cases: [Case], options: Options) {
        print("Wall: GFLOP/s of the fastest round. CPU: process CPU time per call (both threads summed) in the")
        print("round with the least, which other processes do not inflate: it compares the work of the two splits")
        print("on a busy machine, but not their balance between the threads.")
        print("| case | threads | grid wall | row split wall | grid / row split (wall) | grid CPU µs | row split CPU µs | row split / grid (CPU) |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for threads in options.threads where threads > 1 {
            for c in cases {
                var grid = GEMMConfiguration(maximumThreads: threads)
                if let kc = options.kc { grid.setDepthBlock(kc) }
                var rows = grid
                rows.packedGridLimit = 0
                var wall = (grid: Double.infinity, rows: Double.infinity)
                var cpu = (grid: Double.infinity, rows: Double.infinity)
                let calls = max(1, Int(options.minSeconds * 100e9 / c.flops))
                withOperands(c) { call in
                    for round in 0..<options.samples {
                        // Alternating which split goes first, so that neither always follows the other.
                        let order = [(grid, true), (rows, false)]
                        for (configuration, isGrid) in round % 2 == 0 ? order : order.reversed() {
                            call(configuration)
                            let (cpuStart, wallStart) = (processCPUSeconds(), ContinuousClock.now)
                            for _ in 0..<calls { call(configuration) }
                            let wallTime = seconds(ContinuousClock.now - wallStart) / Double(calls)
                            let cpuTime = (processCPUSeconds() - cpuStart) / Double(calls)
                            if isGrid {
                                (wall.grid, cpu.grid) = (min(wall.grid, wallTime), min(cpu.grid, cpuTime))
                            } else {
                                (wall.rows, cpu.rows) = (min(wall.rows, wallTime), min(cpu.rows, cpuTime))
                            }
                        }
                    }
                }
                print("| \(c.label) | \(threads) | \(gflops(c, wall.grid)) | \(gflops(c, wall.rows)) | \(String(format: "%.2f", wall.rows / wall.grid)) | "
                    + "\(String(format: "%.1f", cpu.grid * 1e6)) | \(String(format: "%.1f", cpu.rows * 1e6)) | \(String(format: "%.2f", cpu.rows / cpu.grid)) |")
            }
        }
    }

    /// Settings side by side on each case (micro-kernel variants, depth blocks: each entry a column label
    /// and a change to the default configuration), interleaved round by round; each keeps its round with
    /// the least process CPU time per call (both threads summed), which other processes inflate least.
    /// Columns: GFLOP/s from that CPU time, per thread.
    static func compareConfigurations(
        _ variants: [(label: String, change: (inout GEMMConfiguration) -> Void)], _ cases: [Case], options: Options
    ) {
        print("GFLOP/s per thread from the least process CPU time per call of \(options.samples) interleaved rounds")
        print("| case | threads | " + variants.map(\.label).joined(separator: " | ") + " |")
        print("|---|---:|" + String(repeating: "---:|", count: variants.count))
        for threads in options.threads {
            for c in cases {
                let configurations = variants.map { variant in
                    var configuration = GEMMConfiguration(maximumThreads: threads)
                    if let kc = options.kc { configuration.setDepthBlock(kc) }
                    variant.change(&configuration)
                    return configuration
                }
                var cpu = [Double](repeating: .infinity, count: variants.count)
                let calls = max(1, Int(options.minSeconds * 100e9 / c.flops))
                withOperands(c) { call in
                    for round in 0..<options.samples {
                        for offset in 0..<variants.count {
                            let index = (round + offset) % variants.count
                            call(configurations[index])
                            let start = processCPUSeconds()
                            for _ in 0..<calls { call(configurations[index]) }
                            cpu[index] = min(cpu[index], (processCPUSeconds() - start) / Double(calls))
                        }
                    }
                }
                let cells = cpu.map { String(format: "%.1f", c.flops / $0 / 1e9) }
                print("| \(c.label) | \(threads) | " + cells.joined(separator: " | ") + " |")
            }
        }
    }

    /// Calls `body` with a function that runs Squisher's gemm of case `c` on fixed random operands.
    ///
    /// With `coldMiB > 0`, enough copies of the operands and the output to fill about that many MiB,
    /// used in turn by successive calls: each call then reads its operands from memory and writes an
    /// output that is not in cache, as a layer of a real training pass does.
    static func withOperands(_ c: Case, coldMiB: Int = 0, _ body: ((GEMMConfiguration) -> Void) -> Void) {
        var rng = SplitMix64(seed: 1)
        let setBytes = 4 * (c.m * c.k + c.k * c.n + c.m * c.n)
        let copies = max(1, coldMiB << 20 / max(1, setBytes))
        let a = (0..<(c.m * c.k * copies)).map { _ in rng.nextUniformFloat() * 2 - 1 }
        let b = (0..<(c.k * c.n * copies)).map { _ in rng.nextUniformFloat() * 2 - 1 }
        var out = [Float](repeating: 0, count: c.m * c.n * copies)
        let lda = c.transposeA ? c.m : c.k
        let ldb = c.transposeB ? c.k : c.n
        var next = 0
        a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                out.withUnsafeMutableBufferPointer { pc in
                    body { configuration in
                        let copy = next % copies
                        next += 1
                        gemm(
                            transposeA: c.transposeA, transposeB: c.transposeB, m: c.m, n: c.n, k: c.k,
                            a: pa.baseAddress! + copy * c.m * c.k, lda: lda, b: pb.baseAddress! + copy * c.k * c.n, ldb: ldb,
                            c: pc.baseAddress! + copy * c.m * c.n, ldc: c.n, configuration: configuration)
                    }
                }
            }
        }
    }

    /// CPU time consumed by all threads of this process, in seconds.
    static func processCPUSeconds() -> Double {
        var t = timespec()
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t)
        return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
    }


    /// CPU time consumed by the calling thread, in seconds.
    static func threadCPUSeconds() -> Double {
        var t = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t)
        return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
    }

    static func cpuModelName() -> String {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return "unknown CPU" }
        for line in text.split(separator: "\n") where line.hasPrefix("model name") {
            if let colon = line.firstIndex(of: ":") {
                return line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
        }
        return "unknown CPU"
    }
}
