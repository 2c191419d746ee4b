import Foundation
import Squisher
import SquisherCommands
import SquisherTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The hostile checkpoints made by Resources/hostile/generate.py (PyTorch 2.13): a Linear(4, 3)
/// after 2 Adam steps, and optimizer states with one defect each.
enum Hostile {
    static func url(_ name: String) throws -> URL {
        guard let folder = Bundle.module.url(forResource: "hostile", withExtension: nil, subdirectory: "Resources") else {
            throw CommandError("missing test resource folder hostile")
        }
        return folder.appendingPathComponent(name)
    }

    /// A checkpoint folder (model.safetensors, model.pt, optimizer.pt = `optimizer`) under `root`.
    static func checkpoint(in root: URL, optimizer: String = "optimizer.pt", name: String = "ckpt") throws -> URL {
        let folder = root.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: url("model.safetensors"), to: folder.appendingPathComponent("model.safetensors"))
        try FileManager.default.copyItem(at: url("model.pt"), to: folder.appendingPathComponent("model.pt"))
        try FileManager.default.copyItem(at: url(optimizer), to: folder.appendingPathComponent("optimizer.pt"))
        return folder
    }
}

/// A failure: non-zero status, one line on stderr holding every fragment.
func expectRefusal(_ result: (status: Int32, stdout: String, stderr: String), _ fragments: String..., sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(result.status != 0, "expected a failure, got stdout: \(result.stdout)", sourceLocation: sourceLocation)
    let message = result.stderr.trimmingCharacters(in: .whitespacesAndNewlines)
    #expect(!message.isEmpty && !message.contains("\n"), "expected one line on stderr, got: \(result.stderr)", sourceLocation: sourceLocation)
    for fragment in fragments {
        #expect(message.contains(fragment), "stderr lacks '\(fragment)': \(message)", sourceLocation: sourceLocation)
    }
}

/// Every file under `folder` (relative path -> bytes), hidden ones included.
func snapshot(_ folder: URL) throws -> [String: Data] {
    var result: [String: Data] = [:]
    guard let walker = FileManager.default.enumerator(atPath: folder.path) else { return result }
    for case let path as String in walker {
        let url = folder.appendingPathComponent(path)
        if !InputFile.isFolder(url) { result[path] = try Data(contentsOf: url) }
    }
    return result
}

/// Names in `folder` that look like staging (`.<name>.tmp-…`, `.<name>.scratch-…`).
func stagingLeft(in folder: URL) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []).filter { $0.contains(".tmp-") || $0.contains(".scratch-") }
}

@Suite("Reliability: data never lost, inputs never overwritten")
struct DataSafetyTests {
    /// The same estimate twice into one file: the second replaces the first (through rename(2)),
    /// and both give the same bytes (no wall-clock time in the file).
    @Test func estimateTwiceReplacesAndIsByteIdentical() throws {
        let root = try CheckpointFixture.folder()
        defer { try? FileManager.default.removeItem(at: root) }
        let out = root.appendingPathComponent("fisher.safetensors")
        let arguments = ["estimate", "--model", try resourcePath("mlp_spec.json"), "--weights", try resourcePath("mlp_weights.safetensors"),
                         "--data", try resourcePath("mlp_batch.safetensors"), "--output", out.path]
        let first = runTool(arguments)
        #expect(first.status == 0, "stderr: \(first.stderr)")
        let bytes = try Data(contentsOf: out)
        let second = runTool(arguments)
        #expect(second.status == 0, "the second run must replace the first: \(second.stderr)")
        #expect(try Data(contentsOf: out) == bytes, "the same estimate gave different bytes")
        #expect(try FileManager.default.contentsOfDirectory(atPath: root.path) == ["fisher.safetensors"])
    }

    @Test func maskAndEstimateRefuseToOverwriteTheirInputs() throws {
        let root = try CheckpointFixture.folder()
        defer { try? FileManager.default.removeItem(at: root) }
        let checkpoint = try CheckpointFixture.checkpoint("mlp_digits", in: root, name: "ckpt")
        try FileManager.default.createSymbolicLink(at: root.appendingPathComponent("link"), withDestinationURL: checkpoint)
        let before = try snapshot(checkpoint)
        for output in ["ckpt/model.safetensors", "ckpt/optimizer.pt", "ckpt/mask.safetensors", "link/model.safetensors"] {
            expectRefusal(runTool(["mask", "--keep", "0.1", "--output", root.appendingPathComponent(output).path, checkpoint.path]), "--output", "input")
        }
        let spec = root.appendingPathComponent("spec.json"), weights = root.appendingPathComponent("weights.safetensors"), data = root.appendingPathComponent("data.safetensors")
        try FileManager.default.copyItem(atPath: try resourcePath("mlp_spec.json"), toPath: spec.path)
        try FileManager.default.copyItem(atPath: try resourcePath("mlp_weights.safetensors"), toPath: weights.path)
        try FileManager.default.copyItem(atPath: try resourcePath("mlp_batch.safetensors"), toPath: data.path)
        let inputs = try snapshot(root)
        for output in [spec, weights, data] {
            expectRefusal(runTool(["estimate", "--model", spec.path, "--weights", weights.path, "--data", data.path, "--output", output.path]), "--output", "is the input")
        }
        #expect(try snapshot(checkpoint) == before)
        #expect(try snapshot(root) == inputs)
    }

    /// Two merges to one output at the same time: one succeeds, the other refuses (it never deletes
    /// the winner's result), and no staging is left.
    @Test func concurrentMergesOneWinsOneRefuses() throws {
        let root = try CheckpointFixture.folder()
        defer { try? FileManager.default.removeItem(at: root) }
        let a = try CheckpointFixture.checkpoint("mlp_digits", in: root, name: "a")
        let b = try CheckpointFixture.checkpoint("tinylm_adam", in: root, name: "b")
        let out = root.appendingPathComponent("merged")
        for _ in 0..<3 {
            try? FileManager.default.removeItem(at: out)
            let statuses = Statuses()
            DispatchQueue.concurrentPerform(iterations: 2) { i in
                let source = i == 0 ? a : b
                let result = runTool(["merge", "--method", "average", source.path, source.path, "--output", out.path])
                statuses.append(result.status, result.stderr)
            }
            let (codes, messages) = statuses.values
            #expect(codes.sorted() == [0, 1], "\(messages)")
            #expect(messages.contains { $0.contains("appeared while this command ran") || $0.contains("already exists") }, "\(messages)")
            let merged = try SafeTensorsFile(contentsOf: out.appendingPathComponent("model.safetensors"))
            #expect(!merged.names.isEmpty, "a complete result from one of the runs")
            #expect(stagingLeft(in: root).isEmpty, "\(stagingLeft(in: root))")
        }
    }

    /// A model given as a file: only companion files are copied (symlinks resolved), never keys,
    /// logs, optimizer or trainer state; the input's safetensors `__metadata__` is kept.
    @Test func outputsCarryOnlyCompanionFilesAndTheInputMetadata() throws {
        let root = try CheckpointFixture.folder()
        defer { try? FileManager.default.removeItem(at: root) }
        let snapshotFolder = root.appendingPathComponent("snapshot")
        try FileManager.default.createDirectory(at: snapshotFolder, withIntermediateDirectories: true)
        let model = snapshotFolder.appendingPathComponent("model.safetensors")
        try FileManager.default.copyItem(at: Hostile.url("model.safetensors"), to: model)  // __metadata__ {"format": "pt"}
        let blobs = root.appendingPathComponent("blobs")
        try FileManager.default.createDirectory(at: blobs, withIntermediateDirectories: true)
        try Data("{\"model_type\": \"linear\"}".utf8).write(to: blobs.appendingPathComponent("abc123"))
        try FileManager.default.createSymbolicLink(at: snapshotFolder.appendingPathComponent("config.json"), withDestinationURL: blobs.appendingPathComponent("abc123"))
        try Data("{}".utf8).write(to: snapshotFolder.appendingPathComponent("tokenizer.json"))
        for junk in ["id_rsa", "train.log", "trainer_state.json", "training_args.bin", "optimizer.pt", "scheduler.pt", "rng_state_0.pth", "notes.md"] {
            try Data("secret \(junk)".utf8).write(to: snapshotFolder.appendingPathComponent(junk))
        }
        try FileManager.default.createDirectory(at: snapshotFolder.appendingPathComponent("global_step10"), withIntermediateDirectories: true)
        #expect(mkfifo(snapshotFolder.appendingPathComponent("events.log").path, 0o644) == 0)  // not a companion: never opened
        let out = root.appendingPathComponent("merged")
        let result = runTool(["merge", "--method", "average", model.path, model.path, "--output", out.path])
        #expect(result.status == 0, "stderr: \(result.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: out.path).sorted() == ["config.json", "model.safetensors", "tokenizer.json"])
        let config = out.appendingPathComponent("config.json")
        #expect(try FileManager.default.attributesOfItem(atPath: config.path)[.type] as? FileAttributeType == .typeRegular, "config.json must be a copy, not a symlink")
        #expect(try String(contentsOf: config, encoding: .utf8) == "{\"model_type\": \"linear\"}")
        #expect(try SafeTensorsFile(contentsOf: out.appendingPathComponent("model.safetensors")).metadata["format"] == "pt")
    }

    /// The same merge, prune and mask twice give byte-identical files.
    @Test func checkpointCommandsAreRepeatable() throws {
        let root = try CheckpointFixture.folder()
        defer { try? FileManager.default.removeItem(at: root) }
        let a = try CheckpointFixture.checkpoint("mlp_digits", in: root, name: "a")
        let b = try CheckpointFixture.checkpoint("mlp_digits", in: root, name: "b")
        for run in ["1", "2"] {
            for arguments in [["merge", a.path, b.path, "--output", root.appendingPathComponent("merged\(run)").path],
                              ["prune", "--sparsity", "0.5", a.path, "--output", root.appendingPathComponent("pruned\(run)").path],
                              ["mask", "--keep", "0.3", a.path, "--output", root.appendingPathComponent("mask\(run).safetensors").path]] {
                let result = runTool(arguments)
                #expect(result.status == 0, "\(arguments[0]): \(result.stderr)")
            }
        }
        #expect(try snapshot(root.appendingPathComponent("merged1")) == snapshot(root.appendingPathComponent("merged2")))
        #expect(try snapshot(root.appendingPathComponent("pruned1")) == snapshot(root.appendingPathComponent("pruned2")))
        #expect(try Data(contentsOf: root.appendingPathComponent("mask1.safetensors")) == Data(contentsOf: root.appendingPathComponent("mask2.safetensors")))
        #expect(try snapshot(root.appendingPathComponent("merged1")).keys.sorted() == ["config.json", "model.safetensors"])
    }

    @Test func mergeWeightsThatOverflowAreRefused() throws {
        let root = try CheckpointFixture.folder()
        defer { try? FileManager.default.removeItem(at: root) }
        let a = try CheckpointFixture.checkpoint("mlp_digits", in: root, name: "a")
        let out = root.appendingPathComponent("out")
        expectRefusal(runTool(["merge", "--method", "average", "--weights", "1e308,1e308", a.path, a.path, "--output", out.path]), "--weights", "finite sum")
        #expect(!FileManager.default.fileExists(atPath: out.path))
    }
}

/// Thread-safe result collection for concurrent runs.
final class Statuses: @unchecked Sendable {
    private let lock = NSLock()
    private var codes: [Int32] = [], messages: [String] = []
    func append(_ code: Int32, _ message: String) { lock.withLock { codes.append(code); messages.append(message) } }
    var values: ([Int32], [String]) { lock.withLock { (codes, messages) } }
}

@Suite("Reliability: hostile input gets one clear line, never a crash or a hang")
struct HostileInputTests {
    /// Numbers from a file are checked before they are converted: a NaN, infinite or 1e30 step
    /// (Double → Int trapped), β₂ = 1 with bias correction (1 − β₂ᵗ = 0), a zero-stride view of
    /// 2³⁰ elements in exp_avg_sq (4 GB if materialized from a 1.5 KB file), NaN in exp_avg_sq.
    @Test(arguments: [
        ("step_nan.optimizer.pt", "['step'] is nan"), ("step_inf.optimizer.pt", "['step'] is inf"), ("step_huge.optimizer.pt", "['step'] is 1.0000000150474662e+30"),
        ("beta2_one.optimizer.pt", "beta2 in [0, 1)"), ("expand_exp_avg_sq.optimizer.pt", "maxViewExpansion"), ("nan_exp_avg_sq.optimizer.pt", "is nan"),
    ])
    func hostileOptimizerStates(file: String, fragment: String) throws {
        let root = try CheckpointFixture.folder()
        defer { try? FileManager.default.removeItem(at: root) }
        let checkpoint = try Hostile.checkpoint(in: root, optimizer: file)
        let before = try snapshot(checkpoint)
        let out = root.appendingPathComponent("out")
        expectRefusal(runTool(["prune", "--sparsity", "0.5", "--bias-correction", "--output", out.path, checkpoint.path]), fragment, "optimizer.pt")
        expectRefusal(runTool(["merge", "--bias-correction", "--output", out.path, checkpoint.path, checkpoint.path]), fragment)
        #expect(!FileManager.default.fileExists(atPath: out.path))
        #expect(stagingLeft(in: root).isEmpty, "\(stagingLeft(in: root))")
        #expect(try snapshot(checkpoint) == before)
    }

    @Test func inspectBlamesTheValuesNotTheMapping() throws {
        let root = try CheckpointFixture.folder()
        defer { try? FileManager.default.removeItem(at: root) }
        let checkpoint = try Hostile.checkpoint(in: root, optimizer: "nan_exp_avg_sq.optimizer.pt")
        let result = runTool(["inspect", checkpoint.path])
        #expect(result.status == 0, "stderr: \(result.stderr)")
        #expect(result.stdout.contains("importance is invalid") && result.stdout.contains("nan") && !result.stdout.contains("does NOT map"), "\(result.stdout)")
    }

    /// `torch.save(torch.ones(1).expand(32768, 32768))`: 1.5 KB that would materialize 4 GB.
    @Test func zeroStrideViewIsRefusedBeforeAllocating() throws {
        expectRefusal(runTool(["inspect", try Hostile.url("expand_view.pt").path]), "32768, 32768", "storage only 1", "maxViewExpansion")
    }

    @Test func fifoDeviceAndFolderInputsAreRefusedWithoutHanging() throws {
        let root = try CheckpointFixture.folder()
        defer { try? FileManager.default.removeItem(at: root) }
        let good = try Hostile.checkpoint(in: root)
        let fifoFolder = root.appendingPathComponent("fifo")
        try FileManager.default.createDirectory(at: fifoFolder, withIntermediateDirectories: true)
        let fifo = fifoFolder.appendingPathComponent("model.safetensors")
        #expect(mkfifo(fifo.path, 0o644) == 0)
        let shard = root.appendingPathComponent("sharded")
        try FileManager.default.createDirectory(at: shard, withIntermediateDirectories: true)
        try Data("{\"weight_map\": {\"weight\": \"model-1.safetensors\", \"bias\": \"model-1.safetensors\"}}".utf8).write(to: shard.appendingPathComponent("model.safetensors.index.json"))
        #expect(mkfifo(shard.appendingPathComponent("model-1.safetensors").path, 0o644) == 0)
        let vocab = try Hostile.checkpoint(in: root, name: "vocab")
        #expect(mkfifo(vocab.appendingPathComponent("vocab.txt").path, 0o644) == 0)
        let folderImportance = root.appendingPathComponent("importance.safetensors")
        try FileManager.default.createDirectory(at: folderImportance, withIntermediateDirectories: true)
        let out = root.appendingPathComponent("out").path
        withoutHanging(unblocking: fifo) {
            expectRefusal(runTool(["inspect", fifoFolder.path]), "is a FIFO (named pipe), expected a regular file")
            expectRefusal(runTool(["merge", "--method", "average", fifoFolder.path, "--output", out]), fifo.path, "FIFO")
            expectRefusal(runTool(["merge", "--output", out, "--importance-source", fifo.path, good.path]), fifo.path, "FIFO")
            expectRefusal(runTool(["inspect", shard.path]), "model-1.safetensors", "FIFO")
            expectRefusal(runTool(["inspect", "/dev/null"]), "is a character device")
            expectRefusal(runTool(["prune", "--sparsity", "0.5", "--importance-source", folderImportance.path, "--output", out, good.path]), "is a folder, expected a regular file")
        }
        withoutHanging(unblocking: vocab.appendingPathComponent("vocab.txt")) {
            expectRefusal(runTool(["merge", "--method", "average", vocab.path, "--output", out]), "vocab.txt", "FIFO")
        }
        #expect(!FileManager.default.fileExists(atPath: out))
        #expect(stagingLeft(in: root).isEmpty, "\(stagingLeft(in: root))")
    }

    /// A label past the model's outputs used to trap in the last row and silently feed the next
    /// row's gradient in earlier rows; Int.max overflowed --classes' default.
    @Test func estimateChecksLabelsAgainstTheModel() throws {
        let root = try CheckpointFixture.folder()
        defer { try? FileManager.default.removeItem(at: root) }
        let batch = try SafeTensorsFile(contentsOf: URL(fileURLWithPath: try resourcePath("mlp_batch.safetensors")))
        let inputs = try batch.tensor("inputs")
        for (name, label) in [("ten", 10), ("max", Int.max), ("negative", -1)] {
            var labels = try batch.integers("labels")
            labels[3] = label
            let data = root.appendingPathComponent("\(name).safetensors")
            let writer = try SafeTensorsStreamWriter(to: data, tensors: [.init(name: "inputs", shape: inputs.shape), .init(name: "labels", dtype: .int64, shape: [labels.count])])
            try writer.write("inputs", inputs)
            try writer.write("labels", integers: labels)
            try writer.finish()
            let out = root.appendingPathComponent("out-\(name).safetensors")
            expectRefusal(runTool(["estimate", "--model", try resourcePath("mlp_spec.json"), "--weights", try resourcePath("mlp_weights.safetensors"),
                                   "--data", data.path, "--output", out.path]), "label of sample 3", "\(label)")
            #expect(!FileManager.default.fileExists(atPath: out.path))
        }
        let base = ["estimate", "--model", try resourcePath("mlp_spec.json"), "--weights", try resourcePath("mlp_weights.safetensors"),
                    "--data", try resourcePath("mlp_batch.safetensors"), "--output", root.appendingPathComponent("x.safetensors").path]
        expectRefusal(runTool(base + ["--classes", "11"]), "--classes 11", "10 outputs")
        expectRefusal(runTool(base + ["--input-shape", "4611686018427387904,4"]), "--input-shape")
        expectRefusal(runTool(base + ["--input-shape", "1,8,9"]), "--input-shape")
    }

    /// Sizes in a model spec are checked (overflow, and against the weights file's values) before
    /// anything is allocated.
    @Test(arguments: [
        "{\"layers\": [{\"type\": \"Linear\", \"in_features\": 4611686018427387904, \"out_features\": 4}]}",
        "{\"layers\": [{\"type\": \"Linear\", \"in_features\": 100000, \"out_features\": 100000}]}",
        "{\"layers\": [{\"type\": \"Embedding\", \"num_embeddings\": 3037000500, \"embedding_dim\": 3037000500}]}",
    ])
    func hugeModelSpecsAreRefusedBeforeAllocating(spec: String) throws {
        let root = try CheckpointFixture.folder()
        defer { try? FileManager.default.removeItem(at: root) }
        let url = root.appendingPathComponent("spec.json")
        try Data(spec.utf8).write(to: url)
        expectRefusal(runTool(["estimate", "--model", url.path, "--weights", try resourcePath("mlp_weights.safetensors"),
                               "--data", try resourcePath("mlp_batch.safetensors"), "--output", root.appendingPathComponent("o.safetensors").path]), "layer 0")
    }

    @Test func embedRefusesEmptyHugeTensorsAndUnknownSkips() throws {
        let root = try CheckpointFixture.folder()
        defer { try? FileManager.default.removeItem(at: root) }
        let folder = root.appendingPathComponent("empty")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        var tensors = NamedTensors()
        tensors["w"] = Tensor(uncheckedShape: [300_000_000, 0], scalars: [])
        try SafeTensorsWriter.write(tensors, to: folder.appendingPathComponent("model.safetensors"))
        try SafeTensorsWriter.write(tensors, to: root.appendingPathComponent("importance.safetensors"))
        let importance = root.appendingPathComponent("importance.safetensors").path
        expectRefusal(runTool(["embed", "--importance-source", importance, folder.path]), "'w'", "no elements")
        let a = try CheckpointFixture.checkpoint("mlp_digits", in: root, name: "a")
        expectRefusal(runTool(["embed", "--skip", "fc9.weight", a.path, a.path]), "--skip", "fc9.weight")
    }

    /// One error model: the library's errors keep their cause, so a caller tells a missing
    /// checkpoint from a malformed one without reading the message.
    @Test func errorsKeepTheirCause() throws {
        let root = try CheckpointFixture.folder()
        defer { try? FileManager.default.removeItem(at: root) }
        do { _ = try CheckpointModel(contentsOf: root.appendingPathComponent("absent")); Issue.record("no error") } catch {
            #expect(error.firstCause(ofType: FileAccessError.self)?.reason == .missing, "\(error.causeChain)")
        }
        let truncated = root.appendingPathComponent("truncated.safetensors")
        try Data(try Data(contentsOf: Hostile.url("model.safetensors")).prefix(100)).write(to: truncated)
        do { _ = try CheckpointModel(contentsOf: truncated); Issue.record("no error") } catch {
            #expect(error.firstCause(ofType: FileAccessError.self) == nil)
            #expect(error.firstCause(ofType: SafeTensorsError.self)?.path == truncated.path, "\(error.causeChain)")
        }
        let checkpoint = try Hostile.checkpoint(in: root, optimizer: "step_nan.optimizer.pt")
        do { _ = try CheckpointImportance(.optimizer, model: CheckpointModel(contentsOf: checkpoint)); Issue.record("no error") } catch {
            #expect(error.firstCause(ofType: CheckpointError.self)?.problem.contains("['step'] is nan") == true, "\(error.causeChain)")
        }
    }

    /// Mapping keys "0" and "00" named the same index and one won at random.
    @Test func mappingKeysMustBeCanonical() throws {
        let root = try CheckpointFixture.folder()
        defer { try? FileManager.default.removeItem(at: root) }
        let a = try CheckpointFixture.checkpoint("mlp_digits", in: root, name: "a")
        let mapping = root.appendingPathComponent("mapping.json")
        try Data("{\"0\": \"fc1.weight\", \"00\": \"fc1.bias\", \"1\": \"fc1.bias\", \"2\": \"fc2.weight\", \"3\": \"fc2.bias\"}".utf8).write(to: mapping)
        expectRefusal(runTool(["prune", "--sparsity", "0.5", "--mapping", mapping.path, "--output", root.appendingPathComponent("o").path, a.path]), "mapping key '00'")
    }
}
