import Foundation
import Squisher
import SquisherCommands
import Testing
#if canImport(Glibc)
import Glibc
#endif

extension Tag {
    /// Tests that kill a child `squisher` process mid-write (run alone: `swift test --filter InterruptionTests`).
    @Tag static var faultInjection: Self
}

/// Kills the built `squisher` executable in the middle of a merge of 2 × 128 MB and checks the
/// guarantees: the target is absent, the inputs are byte-identical, SIGTERM and SIGINT leave no
/// staging, and after `kill -9` the next run removes the dead run's staging.
@Suite("Interrupted merges leave no trace", .tags(.faultInjection), .serialized)
struct InterruptionTests {
    /// The `squisher` executable beside the test bundle in the build folder.
    static func executable() throws -> URL {
        var candidates: [URL] = []
        if let executable = Bundle.main.executableURL { candidates.append(executable.deletingLastPathComponent()) }
        candidates.append(Bundle.main.bundleURL.deletingLastPathComponent())
        candidates.append(URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent())
        for folder in candidates {
            for url in [folder.appendingPathComponent("squisher"), folder.deletingLastPathComponent().appendingPathComponent("squisher")]
            where FileManager.default.isExecutableFile(atPath: url.path) { return url }
        }
        throw CommandError("the squisher executable was not found beside the test bundle (looked in \(candidates.map(\.path)))")
    }

    /// A model.safetensors of 8 float32 tensors of 4 Mi elements (128 MiB), values from `seed`.
    static func writeModel(in folder: URL, seed: UInt32) throws {
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let count = 1 << 22, tensorBytes = count * 4
        var header = "{"
        for t in 0..<8 { header += (t > 0 ? "," : "") + "\"layer\(t).weight\":{\"dtype\":\"F32\",\"shape\":[\(count)],\"data_offsets\":[\(t * tensorBytes),\((t + 1) * tensorBytes)]}" }
        header += "}"
        while header.utf8.count % 8 != 0 { header += " " }
        var prefix = Data(count: 8)
        prefix.withUnsafeMutableBytes { $0.storeBytes(of: UInt64(header.utf8.count).littleEndian, as: UInt64.self) }
        let chunk = [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            var state = seed &* 2654435761
            for i in 0..<count { state = state &* 1664525 &+ 1013904223; buffer[i] = Float(Int32(bitPattern: state) >> 8) / 8388608 }
            initialized = count
        }
        let url = folder.appendingPathComponent("model.safetensors")
        #expect(FileManager.default.createFile(atPath: url.path, contents: prefix + Data(header.utf8)), "writing the fixture \(url.path)")
        let handle = try FileHandle(forWritingTo: url)
        defer { try? handle.close() }
        try handle.seekToEnd()
        let bytes = chunk.withUnsafeBytes { Data($0) }
        for _ in 0..<8 { try handle.write(contentsOf: bytes) }
    }

    /// A 64-bit FNV-1a digest of a file, read in 4 MB chunks.
    static func digest(_ url: URL) throws -> UInt64 {
        let handle = try FileHandle(forReadingFrom: url)
        defer { try? handle.close() }
        var hash: UInt64 = 0xcbf29ce484222325
        while let data = try handle.read(upToCount: 1 << 22), !data.isEmpty {
            data.withUnsafeBytes { raw in
                let words = raw.bindMemory(to: UInt64.self)
                for w in words { hash = (hash ^ w) &* 0x100000001b3 }
            }
        }
        return hash
    }

    /// Starts a merge and waits until it is writing into its staging folder (a temporary model
    /// file of at least 16 MB); returns the process.
    static func startMerge(_ squisher: URL, _ a: URL, _ b: URL, output: URL) throws -> Process {
        let process = Process()
        process.executableURL = squisher
        process.arguments = ["merge", "--method", "average", a.path, b.path, "--output", output.path]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(15)
        while Date() < deadline, process.isRunning {
            if let staging = stagingLeft(in: output.deletingLastPathComponent()).first(where: { $0.contains(".tmp-") }) {
                let folder = output.deletingLastPathComponent().appendingPathComponent(staging)
                let sizes = ((try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []).compactMap {
                    (try? FileManager.default.attributesOfItem(atPath: folder.appendingPathComponent($0).path))?[.size] as? Int
                }
                if sizes.contains(where: { $0 >= 16 << 20 }) { return process }
            }
            usleep(2_000)
        }
        Issue.record("the merge finished or never started writing before it could be interrupted")
        return process
    }

    @Test func signalsMidMergeLeaveTheTargetAbsentAndTheInputsIntact() throws {
        let squisher = try Self.executable()
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("squisher-interrupt-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        let a = root.appendingPathComponent("a"), b = root.appendingPathComponent("b")
        try Self.writeModel(in: a, seed: 1)
        try Self.writeModel(in: b, seed: 2)
        let inputs = [a, b].map { $0.appendingPathComponent("model.safetensors") }
        let digests = try inputs.map(Self.digest)
        let output = root.appendingPathComponent("merged")

        // SIGTERM: the handler removes the staging, then the process ends with the signal.
        let terminated = try Self.startMerge(squisher, a, b, output: output)
        terminated.terminate()
        terminated.waitUntilExit()
        #expect(terminated.terminationReason == .uncaughtSignal && terminated.terminationStatus == SIGTERM)
        #expect(!FileManager.default.fileExists(atPath: output.path))
        #expect(stagingLeft(in: root).isEmpty, "SIGTERM left \(stagingLeft(in: root))")

        // SIGINT (Ctrl-C): the same cleanup.
        let interrupted = try Self.startMerge(squisher, a, b, output: output)
        interrupted.interrupt()
        interrupted.waitUntilExit()
        #expect(interrupted.terminationReason == .uncaughtSignal && interrupted.terminationStatus == SIGINT)
        #expect(!FileManager.default.fileExists(atPath: output.path))
        #expect(stagingLeft(in: root).isEmpty, "SIGINT left \(stagingLeft(in: root))")

        // kill -9: nothing can run, the staging stays until the next run.
        let killed = try Self.startMerge(squisher, a, b, output: output)
        kill(killed.processIdentifier, SIGKILL)
        killed.waitUntilExit()
        #expect(killed.terminationReason == .uncaughtSignal && killed.terminationStatus == SIGKILL)
        #expect(!FileManager.default.fileExists(atPath: output.path))
        #expect(!stagingLeft(in: root).isEmpty, "kill -9 cannot clean up; the next run must")
        #expect(try inputs.map(Self.digest) == digests, "inputs changed")

        // The next run removes the dead run's staging and commits.
        let next = Process()
        next.executableURL = squisher
        next.arguments = ["merge", "--method", "average", a.path, b.path, "--output", output.path]
        next.standardOutput = FileHandle.nullDevice
        try next.run()
        next.waitUntilExit()
        #expect(next.terminationStatus == 0)
        #expect(stagingLeft(in: root).isEmpty, "left behind: \(stagingLeft(in: root))")
        #expect(try SafeTensorsFile(contentsOf: output.appendingPathComponent("model.safetensors")).names.count == 8)
        #expect(try inputs.map(Self.digest) == digests, "inputs changed")
    }
}
