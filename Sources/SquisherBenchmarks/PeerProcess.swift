import Foundation

/// The Python side of a benchmark against PyTorch-based peers: runs one script of `Benchmarks/` with
/// the thread count pinned for OpenMP and MKL, echoes its `INFO` lines and collects its results.
///
/// Protocol: the script prints `RESULT <model> <case> <seconds>` for each case it timed and may print
/// `INFO <text>` lines (versions, skipped peers); everything else is ignored.
enum PeerProcess {
    /// `Benchmarks/<name>` in this repository.
    static func script(_ name: String) -> URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Benchmarks").appendingPathComponent(name)
    }

    /// Runs `python script arguments…` with `threads` OpenMP/MKL threads; returns
    /// `[model: [case: seconds]]`, or nil with the reason printed when Python cannot be started.
    static func run(python: String, script: URL, arguments: [String], threads: Int) -> [String: [String: Double]]? {
        guard FileManager.default.isExecutableFile(atPath: python) else {
            print("PyTorch side skipped: no Python at \(python) (make the venv as in Benchmarks/README.md, or pass --python PATH)")
            return nil
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [script.path] + arguments
        var environment = ProcessInfo.processInfo.environment
        environment["OMP_NUM_THREADS"] = "\(threads)"
        environment["MKL_NUM_THREADS"] = "\(threads)"
        process.environment = environment
        let pipe = Pipe()
        process.standardOutput = pipe
        do { try process.run() } catch {
            print("PyTorch side skipped: could not start \(python): \(error)")
            return nil
        }
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        var results: [String: [String: Double]] = [:]
        for line in output.split(separator: "\n") {
            let fields = line.split(separator: " ")
            if fields.first == "INFO" { print(line) }
            guard fields.count == 4, fields[0] == "RESULT", let seconds = Double(fields[3]) else { continue }
            results[String(fields[1]), default: [:]][String(fields[2])] = seconds
        }
        if process.terminationStatus != 0 { print("PyTorch side exited with status \(process.terminationStatus)") }
        return results
    }

    /// The first three fields of `/proc/loadavg` ("?" where there is none).
    static func loadAverage() -> String {
        (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8))?.split(separator: " ").prefix(3).joined(separator: " ") ?? "?"
    }
}
