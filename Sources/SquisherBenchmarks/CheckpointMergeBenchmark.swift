import Foundation
import Squisher
#if canImport(Glibc)
import Glibc
#endif

/// `squisher-bench merge`: peak resident memory and throughput of the streaming Fisher merge on
/// synthetic sharded checkpoints of several GB.
///
/// Generates `--models` (default 3) sharded BF16 checkpoints of `--gb` (default 1.4) GB each, in
/// `--shards` shards (default 4) of 4096×4096 tensors, each with a BF16 importance file of the same
/// size and a config.json; times a plain copy of all those input bytes (read, write, fsync: the
/// bandwidth floor of any tool that reads them); then runs `squisher merge --method fisher` on them
/// as a **child process** and reads its peak resident set size with `getrusage(RUSAGE_CHILDREN)`
/// (`ru_maxrss`, which counts mapped file pages the process touched, so it is an honest bound).
/// Removes everything afterwards unless `--keep`. Needs a release build of the `squisher`
/// executable beside this one (`swift build -c release`).
///
/// With `--checkpoints A,B,C` it merges existing checkpoint folders instead (as written by the real
/// libraries, e.g. by `Benchmarks/make_large_checkpoints.py`: Hugging Face Trainer, DeepSpeed ZeRO,
/// FSDP/DCP), importances from their optimizer states (`--importance-source optimizer`, the
/// command's default), and the copy baseline copies every regular file under those folders.
public enum CheckpointMergeBenchmark {
    /// A failure of the benchmark, with a one-line message.
    struct BenchmarkFailure: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }

    /// Runs the benchmark; `arguments` are the options after `merge`.
    public static func run(arguments: [String]) throws {
        var gigabytes = 1.4, models = 3, shards = 4, keep = false
        var existing: [URL] = []
        var folder = FileManager.default.temporaryDirectory.appendingPathComponent("squisher-merge-bench-\(getpid())")
        var index = 0
        func value() throws -> String {
            index += 1
            guard index < arguments.count else { throw BenchmarkFailure("squisher-bench merge: \(arguments[index - 1]) expects a value") }
            return arguments[index]
        }
        while index < arguments.count {
            switch arguments[index] {
            case "--gb": gigabytes = Double(try value()) ?? gigabytes
            case "--models": models = Int(try value()) ?? models
            case "--shards": shards = Int(try value()) ?? shards
            case "--dir": folder = URL(fileURLWithPath: try value()).appendingPathComponent("squisher-merge-bench-\(getpid())")
            case "--keep": keep = true
            case "--checkpoints": existing = try value().split(separator: ",").map { URL(fileURLWithPath: String($0)) }
            case let other: throw BenchmarkFailure("squisher-bench merge: unknown option \(other) (expected --gb, --models, --shards, --dir, --keep, --checkpoints)")
            }
            index += 1
        }
        let executable = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent().appendingPathComponent("squisher")
        guard FileManager.default.isExecutableFile(atPath: executable.path) else {
            throw BenchmarkFailure("squisher-bench merge: no squisher executable at \(executable.path); run swift build -c release first")
        }
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { if !keep { try? FileManager.default.removeItem(at: folder) } }
        if !existing.isEmpty {
            try runOnCheckpoints(existing, folder: folder, executable: executable)
            return
        }

        // 1. Synthetic checkpoints.
        let side = 4096
        let tensorBytes = side * side * 2
        let tensorsPerModel = max(shards, Int((gigabytes * 1e9 / Double(tensorBytes)).rounded()))
        let generationStart = Date()
        var inputs: [URL] = []
        var importanceFiles: [URL] = []
        for m in 0..<models {
            let checkpoint = folder.appendingPathComponent("model\(m)")
            try FileManager.default.createDirectory(at: checkpoint, withIntermediateDirectories: true)
            try Data("{\"model_type\": \"synthetic\", \"hidden_size\": \(side)}".utf8).write(to: checkpoint.appendingPathComponent("config.json"))
            var weightMap: [String: String] = [:]
            var generator = SplitMix64(seed: UInt64(100 + m))
            let perShard = (tensorsPerModel + shards - 1) / shards
            var importance: [SafeTensorsStreamWriter.TensorSpec] = []
            for s in 0..<shards {
                let shardName = String(format: "model-%05d-of-%05d.safetensors", s + 1, shards)
                let names = (s * perShard..<min((s + 1) * perShard, tensorsPerModel)).map { "layers.\($0).weight" }
                let writer = try SafeTensorsStreamWriter(to: checkpoint.appendingPathComponent(shardName), tensors: names.map { .init(name: $0, dtype: .bfloat16, shape: [side, side]) })
                for name in names {
                    try writer.write(name, Tensor.normal(shape: [side, side], mean: 0, standardDeviation: 0.02, using: &generator))
                    weightMap[name] = shardName
                    importance.append(.init(name: name, dtype: .bfloat16, shape: [side, side]))
                }
                try writer.finish()
            }
            let indexData = try JSONSerialization.data(withJSONObject: ["metadata": ["total_size": tensorsPerModel * tensorBytes], "weight_map": weightMap], options: [.sortedKeys])
            try indexData.write(to: checkpoint.appendingPathComponent("model.safetensors.index.json"))
            let importanceURL = folder.appendingPathComponent("importance\(m).safetensors")
            let writer = try SafeTensorsStreamWriter(to: importanceURL, tensors: importance, metadata: ["estimator": "synthetic"])
            for spec in importance { try writer.write(spec.name, Tensor.uniform(shape: spec.shape, low: 0, high: 1e-4, using: &generator)) }
            try writer.finish()
            inputs.append(checkpoint)
            importanceFiles.append(importanceURL)
        }
        let generationSeconds = Date().timeIntervalSince(generationStart)
        var inputFiles: [URL] = importanceFiles
        for checkpoint in inputs {
            inputFiles += try FileManager.default.contentsOfDirectory(at: checkpoint, includingPropertiesForKeys: nil)
        }
        let inputBytes = inputFiles.reduce(0) { $0 + ((try? FileManager.default.attributesOfItem(atPath: $1.path)[.size] as? Int) ?? 0) }
        let modelBytes = models * tensorsPerModel * tensorBytes

        // 2. Baseline: copy every input byte (read + write + fsync).
        let copySeconds = try timeCopy(inputFiles, into: folder.appendingPathComponent("copy"))

        // 3. The streaming Fisher merge, as a child process.
        let output = folder.appendingPathComponent("merged")
        let (mergeSeconds, peakMB) = try timeMerge(
            executable: executable,
            arguments: ["merge", "--method", "fisher"] + inputs.map(\.path) + ["--importance-source", importanceFiles.map(\.path).joined(separator: ","), "--output", output.path])
        let outputBytes = try FileManager.default.contentsOfDirectory(at: output, includingPropertiesForKeys: nil)
            .reduce(0) { $0 + ((try? FileManager.default.attributesOfItem(atPath: $1.path)[.size] as? Int) ?? 0) }

        let gb = { (bytes: Int) in String(format: "%.2f GB", Double(bytes) / 1e9) }
        print("""
            Streaming Fisher merge of \(models) synthetic sharded BF16 checkpoints (\(shards) shards, \(tensorsPerModel) tensors of \(side)x\(side) each)
            models: \(gb(modelBytes)) in total (\(gb(modelBytes / models)) each); with importance files: \(gb(inputBytes)) read; output \(gb(outputBytes))
            generation: \(String(format: "%.1f", generationSeconds)) s
            | step | wall time | throughput (input bytes) | peak RSS |
            |---|---|---|---|
            | copy of all inputs (read+write+fsync) | \(String(format: "%.2f", copySeconds)) s | \(String(format: "%.2f", Double(inputBytes) / copySeconds / 1e9)) GB/s | - |
            | squisher merge --method fisher | \(String(format: "%.2f", mergeSeconds)) s | \(String(format: "%.2f", Double(inputBytes) / mergeSeconds / 1e9)) GB/s | \(String(format: "%.0f", peakMB)) MB |
            merge throughput as a fraction of the copy: \(String(format: "%.2f", copySeconds / mergeSeconds)) (merge takes \(String(format: "%.2f", mergeSeconds / copySeconds))x the copy's time)
            """)
    }

    /// Merges existing checkpoint folders (importances from their optimizer states) and compares
    /// with a copy of every regular file under them.
    static func runOnCheckpoints(_ checkpoints: [URL], folder: URL, executable: URL) throws {
        var inputFiles: [URL] = []
        for checkpoint in checkpoints {
            guard let walker = FileManager.default.enumerator(at: checkpoint, includingPropertiesForKeys: [.isRegularFileKey]) else {
                throw BenchmarkFailure("squisher-bench merge: cannot list \(checkpoint.path)")
            }
            for case let file as URL in walker where (try? file.resourceValues(forKeys: [.isRegularFileKey]).isRegularFile) == true { inputFiles.append(file) }
        }
        let inputBytes = inputFiles.reduce(0) { $0 + fileSize($1) }
        let copySeconds = try timeCopy(inputFiles, into: folder.appendingPathComponent("copy"))
        let output = folder.appendingPathComponent("merged")
        let (mergeSeconds, peakMB) = try timeMerge(executable: executable, arguments: ["merge", "--method", "fisher"] + checkpoints.map(\.path) + ["--output", output.path])
        let outputBytes = try FileManager.default.contentsOfDirectory(at: output, includingPropertiesForKeys: nil).reduce(0) { $0 + fileSize($1) }
        let gb = { (bytes: Int) in String(format: "%.2f GB", Double(bytes) / 1e9) }
        print("""
            Streaming Fisher merge of \(checkpoints.count) checkpoints (\(checkpoints.map(\.lastPathComponent).joined(separator: ", "))), importances from their optimizer states
            inputs: \(inputFiles.count) files, \(gb(inputBytes)) in total; output \(gb(outputBytes))
            | step | wall time | throughput (input bytes) | peak RSS |
            |---|---|---|---|
            | copy of all input files (read+write+fsync) | \(String(format: "%.2f", copySeconds)) s | \(String(format: "%.2f", Double(inputBytes) / copySeconds / 1e9)) GB/s | - |
            | squisher merge --method fisher | \(String(format: "%.2f", mergeSeconds)) s | \(String(format: "%.2f", Double(inputBytes) / mergeSeconds / 1e9)) GB/s | \(String(format: "%.0f", peakMB)) MB |
            merge throughput as a fraction of the copy: \(String(format: "%.2f", copySeconds / mergeSeconds))
            """)
    }

    static func fileSize(_ url: URL) -> Int { (try? FileManager.default.attributesOfItem(atPath: url.path)[.size] as? Int) ?? 0 }

    /// Copies `files` into `folder` (then removes it); the wall time.
    static func timeCopy(_ files: [URL], into folder: URL) throws -> Double {
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let start = Date()
        for (i, file) in files.enumerated() { try copy(file, to: folder.appendingPathComponent("\(i)-\(file.lastPathComponent)")) }
        let seconds = Date().timeIntervalSince(start)
        try FileManager.default.removeItem(at: folder)
        return seconds
    }

    /// Runs `squisher arguments` as a child process: wall time and the child's peak RSS in MB.
    static func timeMerge(executable: URL, arguments: [String]) throws -> (seconds: Double, peakMB: Double) {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        let start = Date()
        try process.run()
        process.waitUntilExit()
        let seconds = Date().timeIntervalSince(start)
        guard process.terminationStatus == 0 else { throw BenchmarkFailure("squisher-bench merge: squisher \(arguments.joined(separator: " ")) exited with \(process.terminationStatus)") }
        var usage = rusage()
        getrusage(RUSAGE_CHILDREN.rawValue, &usage)
        return (seconds, Double(usage.ru_maxrss) / 1024)  // KB on Linux
    }

    /// Copies `source` to `target` through an 8 MB buffer and flushes it to disk.
    static func copy(_ source: URL, to target: URL) throws {
        let input = open(source.path, O_RDONLY)
        let output = open(target.path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard input >= 0, output >= 0 else { throw BenchmarkFailure("squisher-bench merge: cannot copy \(source.path)") }
        defer { close(input); close(output) }
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: 8 << 20, alignment: 4096)
        defer { buffer.deallocate() }
        while true {
            let n = read(input, buffer, 8 << 20)
            if n <= 0 { break }
            var done = 0
            while done < n { let w = write(output, buffer + done, n - done); if w <= 0 { throw BenchmarkFailure("squisher-bench merge: write failed") }; done += w }
        }
        fsync(output)
    }
}
