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
        guard let process = pythonProcess(python: python, script: script, arguments: arguments, threads: threads) else { return nil }
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

    /// Starts `python script arguments…` as a ``PeerServer`` (the script's `--serve` mode) with `threads`
    /// OpenMP/MKL threads, or returns nil with the reason printed when Python cannot be started.
    static func serve(python: String, script: URL, arguments: [String], threads: Int) -> PeerServer? {
        guard let process = pythonProcess(python: python, script: script, arguments: arguments + ["--serve"], threads: threads) else {
            return nil
        }
        let input = Pipe(), output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        do { try process.run() } catch {
            print("PyTorch side skipped: could not start \(python): \(error)")
            return nil
        }
        return PeerServer(process: process, commands: input.fileHandleForWriting, answers: output.fileHandleForReading)
    }

    /// `python script arguments…` with `threads` OpenMP/MKL threads, not yet started; nil with the
    /// reason printed when there is no such Python.
    private static func pythonProcess(python: String, script: URL, arguments: [String], threads: Int) -> Process? {
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
        return process
    }

    /// The first three fields of `/proc/loadavg` ("?" where there is none).
    static func loadAverage() -> String {
        (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8))?.split(separator: " ").prefix(3).joined(separator: " ") ?? "?"
    }
}

/// A running Python peer script in its `--serve` mode: one command line in, one answer line out
/// (`INFO` lines before an answer are printed), so that the two sides can alternate run by run.
final class PeerServer {
    private let process: Process
    private let commands: FileHandle
    private let answers: FileHandle
    private var buffered = Data()

    init(process: Process, commands: FileHandle, answers: FileHandle) {
        self.process = process
        self.commands = commands
        self.answers = answers
    }

    /// Builds `peerCase` of `model` and runs it once (the warm-up); false with the reason printed when it fails.
    func prepare(model: String, peerCase: String) -> Bool {
        guard let answer = ask("PREPARE \(model) \(peerCase)") else { return false }
        if answer.hasPrefix("PREPARED ") { return true }
        print("INFO \(model) \(peerCase) failed: \(answer.split(separator: " ", maxSplits: 3).dropFirst(3).first ?? Substring(answer))")
        return false
    }

    /// Wall-clock seconds of one run of a prepared case, or nil with the reason printed.
    func time(model: String, peerCase: String) -> Double? {
        guard let answer = ask("TIME \(model) \(peerCase)") else { return nil }
        let fields = answer.split(separator: " ")
        guard fields.count == 4, fields[0] == "TIME", let seconds = Double(fields[3]) else {
            print("INFO \(model) \(peerCase) failed: \(answer)")
            return nil
        }
        return seconds
    }

    /// Drops every prepared case on the Python side (their models and data).
    func release() { _ = ask("RELEASE") }

    /// Closes the script's input (it exits at the end of input) and waits for it.
    func finish() {
        try? commands.close()
        process.waitUntilExit()
        if process.terminationStatus != 0 { print("PyTorch side exited with status \(process.terminationStatus)") }
    }

    /// Sends one command and returns the first answer line that is not `INFO` (printed), or nil when
    /// the script has ended.
    private func ask(_ command: String) -> String? {
        do { try commands.write(contentsOf: Data((command + "\n").utf8)) } catch {
            print("PyTorch side ended before `\(command)`: \(error)")
            return nil
        }
        while let line = readLine() {
            if line.hasPrefix("INFO ") { print(line); continue }
            return line
        }
        print("PyTorch side ended before answering `\(command)`")
        return nil
    }

    private func readLine() -> String? {
        while true {
            if let end = buffered.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: buffered[buffered.startIndex..<end], as: UTF8.self)
                buffered.removeSubrange(buffered.startIndex...end)
                return line
            }
            let chunk = answers.availableData
            if chunk.isEmpty { return nil }
            buffered.append(chunk)
        }
    }
}
