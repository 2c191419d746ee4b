import Foundation
import SquisherIO
import SquisherTensor
import SquisherTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("Output protocol: atomic replace, no-replace commit, overlap refusal, staging cleanup")
struct OutputProtocolTests {
    /// The README's main command writes its report twice into one folder: the second write must
    /// replace the first (Foundation's replaceItemAt deleted it on Linux and failed).
    @Test func atomicWriteReplacesAnExistingFileTwice() throws {
        let folder = try TemporaryFolder()
        let url = folder.file("report.md")
        for text in ["first", "second", "third"] {
            try AtomicFile.write(Data(text.utf8), to: url)
            #expect(try String(contentsOf: url, encoding: .utf8) == text)
        }
        #expect(folder.contents() == ["report.md"], "staging files left: \(folder.contents())")
    }

    @Test func atomicWriteOntoAFolderFailsAndLeavesItIntact() throws {
        let folder = try TemporaryFolder()
        let target = folder.file("out")
        try FileManager.default.createDirectory(at: target, withIntermediateDirectories: false)
        _ = try folder.write([1, 2, 3], to: "out/keep.bin")
        #expect {
            try AtomicFile.write(Data("x".utf8), to: target)
        } throws: { error in
            (error as? SafeTensorsError)?.firstCause(ofType: FileAccessError.self)?.reason == .notRegularFile(kind: "a folder")
        }
        #expect(try Data(contentsOf: folder.file("out/keep.bin")) == Data([1, 2, 3]))
        #expect(folder.contents() == ["out"])
    }

    /// Several files all or nothing (ablate's report): when one cannot be staged (here its target is
    /// a folder; a full disk fails the same way), no target changes and no staging is left.
    @Test func severalFilesAreWrittenAllOrNothing() throws {
        let folder = try TemporaryFolder()
        let report = folder.file("report.md"), csv = folder.file("cost.csv"), blocked = folder.file("plot.svg")
        try AtomicFile.write([(report, Data("old report".utf8)), (csv, Data("old csv".utf8))])
        try FileManager.default.createDirectory(at: blocked, withIntermediateDirectories: false)
        #expect(throws: SafeTensorsError.self) {
            try AtomicFile.write([(report, Data("new report".utf8)), (csv, Data("new csv".utf8)), (blocked, Data("<svg/>".utf8))])
        }
        #expect(try String(contentsOf: report, encoding: .utf8) == "old report")
        #expect(try String(contentsOf: csv, encoding: .utf8) == "old csv")
        #expect(folder.contents() == ["cost.csv", "plot.svg", "report.md"], "\(folder.contents())")
    }

    @Test func overlapIsRefusedAfterResolvingSymlinks() throws {
        let folder = try TemporaryFolder()
        let checkpoint = folder.file("ckpt")
        try FileManager.default.createDirectory(at: checkpoint, withIntermediateDirectories: false)
        let model = try folder.write([0], to: "ckpt/model.safetensors")
        try FileManager.default.createSymbolicLink(at: folder.file("link"), withDestinationURL: checkpoint)
        let refused: [(URL, String)] = [
            (checkpoint, "is the input"),
            (checkpoint.appendingPathComponent("model.safetensors"), "lies inside the input"),
            (checkpoint.appendingPathComponent("optimizer.pt"), "lies inside the input"),
            (folder.file("link/model.safetensors"), "lies inside the input"),
            (folder.file("link/../ckpt/new"), "lies inside the input"),
            (folder.url, "contains the input"),
        ]
        for (output, relation) in refused {
            do throws(OutputError) {
                try OutputPaths.refuseOverlap(output: output, inputs: [checkpoint])
                Issue.record("\(output.path) was not refused")
            } catch {
                #expect(error.problem.contains(relation), "\(error)")
            }
        }
        #expect(throws: OutputError.self) { try OutputPaths.refuseOverlap(output: folder.file("link/model.safetensors"), inputs: [model]) }
        try OutputPaths.refuseOverlap(output: folder.file("merged"), inputs: [checkpoint, model])
        try OutputPaths.refuseOverlap(output: folder.file("ckpt-merged"), inputs: [checkpoint])  // a name prefix is not a parent
    }

    @Test func commitRefusesWhatAppearedMeanwhileAndLeavesItIntact() throws {
        let folder = try TemporaryFolder()
        let destination = folder.file("merged")
        let output = try StagedOutputFolder(destination: destination)
        try Data("result".utf8).write(to: output.staging.appendingPathComponent("model.safetensors"))
        // A user (or a concurrent run) creates the destination while the command runs.
        try FileManager.default.createDirectory(at: destination, withIntermediateDirectories: false)
        try Data("mine".utf8).write(to: destination.appendingPathComponent("notes.txt"))
        #expect {
            try output.commit()
        } throws: { error in
            (error as? OutputError)?.problem.contains("appeared while this command ran") == true
        }
        #expect(try String(contentsOf: destination.appendingPathComponent("notes.txt"), encoding: .utf8) == "mine")
        #expect(try FileManager.default.contentsOfDirectory(atPath: destination.path) == ["notes.txt"])
        #expect(folder.contents() == ["merged"], "staging left: \(folder.contents())")
    }

    @Test func commitRefusesAnEmptyFolderThatAppearedButReplacesOneSeenAtTheStart() throws {
        let folder = try TemporaryFolder()
        let appeared = folder.file("a")
        let output = try StagedOutputFolder(destination: appeared)
        try FileManager.default.createDirectory(at: appeared, withIntermediateDirectories: false)
        #expect(throws: OutputError.self) { try output.commit() }
        #expect(try FileManager.default.contentsOfDirectory(atPath: appeared.path).isEmpty)

        let seen = folder.file("b")
        try FileManager.default.createDirectory(at: seen, withIntermediateDirectories: false)
        let second = try StagedOutputFolder(destination: seen)
        try Data("x".utf8).write(to: second.staging.appendingPathComponent("f"))
        try second.commit()
        #expect(try FileManager.default.contentsOfDirectory(atPath: seen.path) == ["f"])
        #expect(folder.contents() == ["a", "b"])
    }

    @Test func existingNonEmptyDestinationIsRefusedUpFront() throws {
        let folder = try TemporaryFolder()
        _ = try folder.write([7], to: "out")
        #expect(throws: OutputError.self) { _ = try StagedOutputFolder(destination: folder.file("out")) }
        #expect(folder.contents() == ["out"])
    }

    /// `kill -9` leaves staging behind; the next run for the same target removes the staging of
    /// processes that no longer exist, and nothing else.
    @Test func staleStagingOfDeadProcessesIsRemoved() throws {
        let folder = try TemporaryFolder()
        let dead = Int32.max - 1  // above any pid_max: no such process
        let names = [
            ".merged.tmp-\(dead)-0badf00d", ".merged.scratch-\(dead)-deadbeef",  // removed
            ".merged.tmp-1-0badf00d",  // pid 1 is alive: kept
            ".merged.tmp-\(dead)-xyz", ".other.tmp-\(dead)-0badf00d", "merged.tmp-\(dead)-0badf00d",  // not this target's staging: kept
        ]
        for name in names {
            try FileManager.default.createDirectory(at: folder.file(name), withIntermediateDirectories: false)
            try Data("partial".utf8).write(to: folder.file(name).appendingPathComponent("model.safetensors"))
        }
        do {
            let output = try StagedOutputFolder(destination: folder.file("merged"))
            try output.commit()
        }
        #expect(folder.contents() == ([".merged.tmp-1-0badf00d", ".merged.tmp-\(dead)-xyz", ".other.tmp-\(dead)-0badf00d", "merged", "merged.tmp-\(dead)-0badf00d"]).sorted())
    }

    @Test func fifoDeviceAndFolderAreRefusedWithoutBlocking() throws {
        let folder = try TemporaryFolder()
        let fifo = folder.file("model.safetensors")
        #expect(mkfifo(fifo.path, 0o644) == 0)
        withoutHanging(unblocking: fifo) {
            #expect {
                _ = try SafeTensorsFile(contentsOf: fifo)
            } throws: { error in
                (error as? SafeTensorsError)?.firstCause(ofType: FileAccessError.self)?.reason == .notRegularFile(kind: "a FIFO (named pipe)")
            }
            #expect(throws: DataFileError.self) { _ = try CSVLoader.load(fifo) }
            #expect(throws: SafeTensorsError.self) { _ = try ShardedSafeTensors(indexURL: fifo) }
        }
        #expect(throws: FileAccessError(path: "/dev/null", reason: .notRegularFile(kind: "a character device"))) { _ = try InputFile.read(URL(fileURLWithPath: "/dev/null")) }
        #expect(throws: FileAccessError(path: folder.url.path, reason: .notRegularFile(kind: "a folder"))) { _ = try InputFile.read(folder.url) }
    }

    /// One error model: a caller tells a missing file from a malformed one by the cause, not the text.
    @Test func missingAndMalformedFilesAreDistinguishedByCause() throws {
        let folder = try TemporaryFolder()
        let missing = folder.file("absent.safetensors")
        let malformed = try folder.write([1, 2, 3], to: "short.safetensors")
        do { _ = try SafeTensorsFile(contentsOf: missing); Issue.record("no error") } catch {
            #expect(error.firstCause(ofType: FileAccessError.self)?.reason == .missing)
            #expect(error.description.contains(missing.path))
        }
        do { _ = try SafeTensorsFile(contentsOf: malformed); Issue.record("no error") } catch {
            #expect(error.firstCause(ofType: FileAccessError.self) == nil)
            #expect(error.rootCause is SafeTensorsError)
        }
    }
}
