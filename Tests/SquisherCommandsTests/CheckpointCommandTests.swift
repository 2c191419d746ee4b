import Foundation
import Squisher
import SquisherCommands
import Testing

/// Fixtures written by PyTorch 2.13 (copied from ../shared/oracles/checkpoints with a `ckpt_` prefix):
/// an MLP 64-32-10 after 100 Adam steps, and a tiny Embedding+LayerNorm+Linear model after 5 Adam
/// steps in two param groups with a never-updated parameter `unused`.
enum CheckpointFixture {
    static func url(_ name: String) throws -> URL {
        guard let url = Bundle.module.url(forResource: "ckpt_" + name, withExtension: nil, subdirectory: "Resources") else {
            throw CommandError("missing test resource ckpt_\(name)")
        }
        return url
    }

    /// A fresh temporary folder, removed by the caller.
    static func folder() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("squisher-ckpt-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// A Hugging Face style checkpoint folder of fixture `model` under `parent/name`:
    /// model.safetensors, optimizer.pt, model.pt, config.json.
    static func checkpoint(_ model: String, in parent: URL, name: String) throws -> URL {
        let folder = parent.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        for (source, target) in [("model.safetensors", "model.safetensors"), ("optimizer.pt", "optimizer.pt"), ("model.pt", "model.pt")] {
            try FileManager.default.copyItem(at: url("\(model).\(source)"), to: folder.appendingPathComponent(target))
        }
        try Data("{\"model_type\": \"\(model)\"}".utf8).write(to: folder.appendingPathComponent("config.json"))
        return folder
    }

    /// The MLP's `exp_avg_sq` by parameter name, read from PyTorch's answer key (not from optimizer.pt).
    static func mlpExpAvgSq() throws -> [String: [Double]] {
        let key = try SafeTensorsFile(contentsOf: url("mlp_digits.optimizer.expected.safetensors"))
        var result: [String: [Double]] = [:]
        for (index, name) in ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"].enumerated() {
            result[name] = try key.doubles("state/\(index)/exp_avg_sq")
        }
        return result
    }
}

/// Runs the tool and returns (status, stdout, stderr); stderr of a failure is one line.
private func run(_ arguments: [String]) -> (status: Int32, stdout: String, stderr: String) { runTool(arguments) }

private func expectOneLineError(_ result: (status: Int32, stdout: String, stderr: String), _ fragments: String..., sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(result.status != 0, "expected a failure, got stdout: \(result.stdout)", sourceLocation: sourceLocation)
    let message = result.stderr.trimmingCharacters(in: .whitespacesAndNewlines)
    #expect(!message.isEmpty && !message.contains("\n"), "expected one line on stderr, got: \(result.stderr)", sourceLocation: sourceLocation)
    for fragment in fragments {
        #expect(message.contains(fragment), "stderr lacks '\(fragment)': \(message)", sourceLocation: sourceLocation)
    }
}

/// `model.safetensors` of `folder` perturbed by seeded noise, as `dtype`.
private func writePerturbed(from source: URL, to target: URL, seed: UInt64, dtype: SafeTensorsDType = .float32) throws -> NamedTensors {
    var generator = SplitMix64(seed: seed)
    let original = try SafeTensorsFile(contentsOf: source).allTensors()
    var perturbed = NamedTensors()
    for (name, tensor) in original {
        let noise = Tensor.normal(shape: tensor.shape, mean: 0, standardDeviation: 0.05, using: &generator)
        perturbed[name] = try tensor + noise
    }
    try SafeTensorsWriter.write(perturbed, dtype: dtype, to: target)
    return try SafeTensorsFile(contentsOf: target).allTensors()  // as stored (rounded to dtype)
}

@Suite("squisher merge / prune / mask / embed / inspect on PyTorch checkpoints")
struct CheckpointCommandTests {
    /// Must show 2: Fisher merging of the MLP checkpoint (Squisher importance from its optimizer.pt)
    /// with a perturbed copy (importance from a safetensors file) equals
    /// θ = Σ λ_i max(F_i, ε) θ_i / Σ λ_i max(F_i, ε), computed here in Double from PyTorch's own
    /// answer key for exp_avg_sq. Tolerance: the library computes in Double and rounds once to
    /// float32, so 2 ulps of float32 (2⁻²³ relative to the largest |θ| of the tensor) bound it.
    /// Both floors: the default (`ε_i` = 1e-6 × the mean of model i's importance, computed here in
    /// Double over every entry) and an absolute `--epsilon 1e-6`.
    @Test(arguments: [false, true]) func fisherMergeEqualsFormula(absoluteFloor: Bool) throws {
        let root = try CheckpointFixture.folder()
        defer { try? FileManager.default.removeItem(at: root) }
        let a = try CheckpointFixture.checkpoint("mlp_digits", in: root, name: "a")
        let b = root.appendingPathComponent("b")
        try FileManager.default.createDirectory(at: b, withIntermediateDirectories: true)
        let thetaB = try writePerturbed(from: a.appendingPathComponent("model.safetensors"), to: b.appendingPathComponent("model.safetensors"), seed: 11)
        var generator = SplitMix64(seed: 12)
        var fisherB = NamedTensors()
        for (name, tensor) in thetaB {
            // Values below either floor (relative: 1e-6 × mean ≈ 1e-11), so that the floor is exercised.
            fisherB[name] = Tensor.uniform(shape: tensor.shape, low: 0, high: 2e-5, using: &generator)
                .map { $0 < 4e-7 ? $0 * 1e-6 : $0 }
        }
        let importanceB = b.appendingPathComponent("importance.safetensors")
        try SafeTensorsWriter.write(fisherB, to: importanceB)
        let out = root.appendingPathComponent("merged")
        let result = run(["merge", "--method", "fisher", a.path, b.path, "--output", out.path, "--weights", "0.3,0.7",
                          "--importance-source", a.appendingPathComponent("optimizer.pt").path + "," + importanceB.path]
                         + (absoluteFloor ? ["--epsilon", "1e-6"] : []))
        #expect(result.status == 0, "stderr: \(result.stderr)")

        let thetaA = try SafeTensorsFile(contentsOf: a.appendingPathComponent("model.safetensors")).allTensors()
        let fisherA = try CheckpointFixture.mlpExpAvgSq()
        func meanFloor(_ values: [[Double]]) -> Double {
            let all = values.flatMap { $0 }
            return Double(Float(1e-6 * all.reduce(0, +) / Double(all.count)))
        }
        let floorA = absoluteFloor ? Double(Float(1e-6)) : meanFloor(thetaA.names.map { fisherA[$0]!.map { Double(Float($0)) } })
        let floorB = absoluteFloor ? Double(Float(1e-6)) : meanFloor(thetaA.names.map { fisherB[$0]!.scalars.map(Double.init) })
        let merged = try SafeTensorsFile(contentsOf: out.appendingPathComponent("model.safetensors"))
        #expect(merged.names.sorted() == thetaA.names.sorted())
        #expect(FileManager.default.fileExists(atPath: out.appendingPathComponent("config.json").path))
        for name in thetaA.names {
            let got = try merged.doubles(name)
            let ta = thetaA[name]!.scalars, tb = thetaB[name]!.scalars, fb = fisherB[name]!.scalars, fa = fisherA[name]!
            var worst = 0.0, scale = 0.0
            for j in got.indices {
                let wa = 0.3 * max(Double(Float(fa[j])), floorA), wb = 0.7 * max(Double(fb[j]), floorB)
                let expected = (wa * Double(ta[j]) + wb * Double(tb[j])) / (wa + wb)
                worst = max(worst, abs(got[j] - expected))
                scale = max(scale, abs(expected))
            }
            #expect(worst <= 2 * 0x1p-23 * scale, "\(name): worst error \(worst) at scale \(scale)")
        }
    }

    /// UBGM into a base whose importance F₀ is its own Squisher (optimizer.pt), two perturbed task
    /// models with importance files: θ = θ₀ + Σ_t (F_t + F₀ + δ₀)(θ_t − θ₀) / (Σ_t F_t + F₀ + δ₀),
    /// δ₀ = 1e-12, computed here in Double from PyTorch's exp_avg_sq answer key. Tolerance: one
    /// float32 rounding of the result plus float32 rounding of the inputs' difference, 4 ulps of the
    /// largest |θ| of the tensor.
    @Test func ubgmEqualsFormula() throws {
        let root = try CheckpointFixture.folder()
        defer { try? FileManager.default.removeItem(at: root) }
        let base = try CheckpointFixture.checkpoint("mlp_digits", in: root, name: "base")
        let theta0 = try SafeTensorsFile(contentsOf: base.appendingPathComponent("model.safetensors")).allTensors()
        var tasks: [NamedTensors] = [], fishers: [NamedTensors] = [], folders: [String] = [], files: [String] = []
        var generator = SplitMix64(seed: 21)
        for t in 0..<2 {
            let folder = root.appendingPathComponent("task\(t)")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            tasks.append(try writePerturbed(from: base.appendingPathComponent("model.safetensors"), to: folder.appendingPathComponent("model.safetensors"), seed: UInt64(30 + t)))
            var fisher = NamedTensors()
            for name in theta0.names { fisher[name] = Tensor.uniform(shape: theta0[name]!.shape, low: 0, high: 1e-5, using: &generator) }
            let file = folder.appendingPathComponent("fisher.safetensors")
            try SafeTensorsWriter.write(fisher, to: file)
            fishers.append(fisher)
            folders.append(folder.path)
            files.append(file.path)
        }
        let out = root.appendingPathComponent("ubgm")
        let result = run(["merge", "--method", "ubgm", "--base", base.path] + folders + ["--importance-source", files.joined(separator: ","), "--base-importance", "optimizer", "--output", out.path])
        #expect(result.status == 0, "stderr: \(result.stderr)")
        let merged = try SafeTensorsFile(contentsOf: out.appendingPathComponent("model.safetensors"))
        let f0 = try CheckpointFixture.mlpExpAvgSq()
        for name in theta0.names {
            let got = try merged.doubles(name)
            var worst = 0.0, scale = 0.0
            for j in got.indices {
                let prior = Double(Float(f0[name]![j])) + Double(Float(1e-12))
                var precision = prior, update = 0.0
                for t in 0..<2 {
                    let ft = Double(fishers[t][name]!.scalars[j])
                    precision += ft
                    update += (ft + prior) * (Double(tasks[t][name]!.scalars[j]) - Double(theta0[name]!.scalars[j]))
                }
                let expected = Double(theta0[name]!.scalars[j]) + update / precision
                worst = max(worst, abs(got[j] - expected))
                scale = max(scale, abs(expected))
            }
            #expect(worst <= 4 * 0x1p-23 * scale, "\(name): worst error \(worst) at scale \(scale)")
        }
    }

    /// Tensors larger than one 2¹⁸-element chunk, with many tied scores straddling the threshold
    /// (parameters and importances drawn from 4 values each): the streaming Fisher merge equals the
    /// in-memory ``FisherMerging`` bit for bit (same per-element arithmetic), and the streaming
    /// two-histogram top-k prunes exactly the in-memory ``FisherPruning`` mask (same ties kept).
    @Test func multiChunkTensorsAndTies() throws {
        let root = try CheckpointFixture.folder()
        defer { try? FileManager.default.removeItem(at: root) }
        var generator = SplitMix64(seed: 77)
        func quantized(_ shape: [Int], _ levels: [Float]) -> Tensor {
            let count = shape.reduce(1, *)
            return Tensor(uncheckedShape: shape, scalars: (0..<count).map { _ in levels[Int(generator.next() % UInt64(levels.count))] })
        }
        var models: [NamedTensors] = [], importances: [Importance] = [], folders: [String] = [], files: [String] = []
        for m in 0..<2 {
            var model = NamedTensors(), fisher = NamedTensors()
            for (name, shape) in [("big.weight", [600, 500]), ("small.weight", [7, 3]), ("big.bias", [600])] {
                model[name] = quantized(shape, [-0.5, 0.25, 1, 2])
                fisher[name] = quantized(shape, [0, 1e-3, 4e-3, 1e-2])
            }
            let folder = root.appendingPathComponent("m\(m)")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            try SafeTensorsWriter.write(model, to: folder.appendingPathComponent("model.safetensors"))
            try SafeTensorsWriter.write(fisher, to: folder.appendingPathComponent("fisher.safetensors"))
            // The checkpoint's order is the file's data order.
            let stored = try SafeTensorsFile(contentsOf: folder.appendingPathComponent("model.safetensors"))
            models.append(try NamedTensors(stored.names.map { ($0, model[$0]!) }))
            importances.append(Importance(unchecked: fisher, estimator: "f\(m)"))
            folders.append(folder.path)
            files.append(folder.appendingPathComponent("fisher.safetensors").path)
        }
        let merged = root.appendingPathComponent("merged")
        let mergeResult = run(["merge", "--method", "fisher"] + folders + ["--importance-source", files.joined(separator: ","), "--weights", "1,3", "--output", merged.path])
        #expect(mergeResult.status == 0, "stderr: \(mergeResult.stderr)")
        let expected = try FisherMerging().merge(models: models, importances: importances, weights: [1, 3]).parameters
        let got = try SafeTensorsFile(contentsOf: merged.appendingPathComponent("model.safetensors"))
        for name in models[0].names { #expect(try got.tensor(name) == expected[name]!, "\(name)") }

        let pruned = root.appendingPathComponent("pruned")
        let pruneResult = run(["prune", folders[0], "--sparsity", "0.37", "--importance-source", files[0], "--output", pruned.path])
        #expect(pruneResult.status == 0, "stderr: \(pruneResult.stderr)")
        let mask = try FisherPruning().mask(parameters: models[0], importance: importances[0], sparsity: 0.37)
        let file = try SafeTensorsFile(contentsOf: pruned.appendingPathComponent("mask.safetensors"))
        #expect(file.names.sorted() == ["big.weight", "small.weight"])
        for name in file.names { #expect(try file.integers(name).map(Float.init) == mask.masks[name]!.scalars, "\(name)") }
    }

    /// F16 and BF16 inputs give outputs of the same dtype; averaging two F16/BF16 models equals the
    /// Double average rounded to the dtype: within its unit roundoff (2⁻¹¹ / 2⁻⁸) relative to the value,
    /// plus float32 rounding of the sum.
    @Test(arguments: [SafeTensorsDType.float16, .bfloat16])
    func dtypePreserved(dtype: SafeTensorsDType) throws {
        let root = try CheckpointFixture.folder()
        defer { try? FileManager.default.removeItem(at: root) }
        let source = try CheckpointFixture.url("mlp_digits.model.safetensors")
        var models: [NamedTensors] = []
        var folders: [String] = []
        for (i, seed) in [UInt64(1), 2].enumerated() {
            let folder = root.appendingPathComponent("m\(i)")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            models.append(try writePerturbed(from: source, to: folder.appendingPathComponent("model.safetensors"), seed: seed, dtype: dtype))
            folders.append(folder.path)
        }
        let out = root.appendingPathComponent("avg")
        let result = run(["merge", "--method", "average"] + folders + ["--output", out.path])
        #expect(result.status == 0, "stderr: \(result.stderr)")
        let merged = try SafeTensorsFile(contentsOf: out.appendingPathComponent("model.safetensors"))
        let roundoff = dtype.unitRoundoff!
        for name in models[0].names {
            #expect(try merged.entry(name).dtype == dtype)
            let got = try merged.doubles(name)
            for j in got.indices {
                let expected = (Double(models[0][name]!.scalars[j]) + Double(models[1][name]!.scalars[j])) / 2
                #expect(abs(got[j] - expected) <= roundoff * abs(expected) + 1e-7 * abs(expected) + 1e-30, "\(name)[\(j)]: \(got[j]) vs \(expected)")
            }
        }
    }

    /// A merged value that is not finite (a NaN weight in one input) stops the merge with the tensor
    /// and element named, whichever thread merged it, and leaves no output. The NaN sits in the
    /// second of two 2¹⁶-element work items, so the other thread's items are clean.
    @Test func nonFiniteMergedValueNamesTheElement() throws {
        let root = try CheckpointFixture.folder()
        defer { try? FileManager.default.removeItem(at: root) }
        var folders: [String] = []
        for (i, poisoned) in [false, true].enumerated() {
            var tensors = NamedTensors()
            var scalars = (0..<150_000).map { Float($0 % 97) / 97 }
            if poisoned { scalars[70_001] = .nan }
            tensors["w"] = try Tensor(shape: [150_000], scalars: scalars)
            tensors["b"] = try Tensor(shape: [3], scalars: [1, 2, 3])
            let folder = root.appendingPathComponent("m\(i)")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            try SafeTensorsWriter.write(tensors, dtype: .bfloat16, to: folder.appendingPathComponent("model.safetensors"))
            folders.append(folder.path)
        }
        let out = root.appendingPathComponent("avg")
        let result = run(["merge", "--method", "average"] + folders + ["--output", out.path])
        #expect(result.status != 0)
        #expect(result.stderr.contains("tensor 'w' element 70001 merged to nan"), "\(result.stderr)")
        #expect(!FileManager.default.fileExists(atPath: out.path))
    }

    /// Sharded in, sharded out: the same shard file names, each holding the same tensors, an index
    /// whose weight_map equals the input's, non-tensor files copied; values are the Fisher merge of
    /// two sharded checkpoints whose importances come from optimizer.pt mapped through model.pt.
    /// Merging a model with itself must reproduce it: a weighted average of equal values is exact
    /// up to one float32 rounding (1 ulp).
    @Test func shardedInShardedOut() throws {
        let root = try CheckpointFixture.folder()
        defer { try? FileManager.default.removeItem(at: root) }
        let single = try CheckpointFixture.checkpoint("mlp_digits", in: root, name: "single")
        let tensors = try SafeTensorsFile(contentsOf: single.appendingPathComponent("model.safetensors")).allTensors()
        let shardOf = ["fc1.weight": "model-00001-of-00002.safetensors", "fc1.bias": "model-00001-of-00002.safetensors",
                       "fc2.weight": "model-00002-of-00002.safetensors", "fc2.bias": "model-00002-of-00002.safetensors"]
        var folders: [String] = []
        for name in ["s0", "s1"] {
            let folder = try CheckpointFixture.checkpoint("mlp_digits", in: root, name: name)
            try FileManager.default.removeItem(at: folder.appendingPathComponent("model.safetensors"))
            for shard in Set(shardOf.values) {
                var part = NamedTensors()
                for tensorName in tensors.names where shardOf[tensorName] == shard { part[tensorName] = tensors[tensorName]! }
                try SafeTensorsWriter.write(part, to: folder.appendingPathComponent(shard))
            }
            let index = try JSONSerialization.data(withJSONObject: ["metadata": ["total_size": 9640], "weight_map": shardOf])
            try index.write(to: folder.appendingPathComponent("model.safetensors.index.json"))
            try Data("{}".utf8).write(to: folder.appendingPathComponent("tokenizer.json"))
            folders.append(folder.path)
        }
        let out = root.appendingPathComponent("merged")
        let result = run(["merge", "--method", "fisher"] + folders + ["--output", out.path])
        #expect(result.status == 0, "stderr: \(result.stderr)")
        let files = Set(try FileManager.default.contentsOfDirectory(atPath: out.path))
        #expect(files == ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "model.safetensors.index.json", "config.json", "tokenizer.json"])
        let index = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("model.safetensors.index.json"))) as? [String: Any]
        #expect(index?["weight_map"] as? [String: String] == shardOf)
        let sharded = try ShardedSafeTensors(folder: out)
        try sharded.validateAll()
        for name in tensors.names {
            let got = try sharded.doubles(name), expected = tensors[name]!.scalars
            for j in got.indices { #expect(abs(got[j] - Double(expected[j])) <= 0x1p-23 * abs(Double(expected[j])), "\(name)[\(j)]") }
        }
    }

    /// tinylm: the model order cannot decide the mapping (two groups, `unused` first in the model but
    /// last in the optimizer): a one-line error asking for --mapping; with the mapping file the merge
    /// runs and reports `unused` (no optimizer state) as without importance, merged by plain averaging.
    @Test func tinylmNeedsMapping() throws {
        let root = try CheckpointFixture.folder()
        defer { try? FileManager.default.removeItem(at: root) }
        let a = try CheckpointFixture.checkpoint("tinylm_adam", in: root, name: "a")
        let failure = run(["merge", a.path, a.path, "--output", root.appendingPathComponent("o1").path])
        expectOneLineError(failure, "optimizer.pt", "mapping file")
        #expect(!FileManager.default.fileExists(atPath: root.appendingPathComponent("o1").path))
        let mapping = try CheckpointFixture.url("tinylm_adam.optimizer.expected.json")
        let ok = run(["merge", a.path, a.path, "--output", root.appendingPathComponent("o2").path, "--mapping", mapping.path])
        #expect(ok.status == 0, "stderr: \(ok.stderr)")
        #expect(ok.stdout.contains("no importance (frozen or never updated): unused"))
        #expect(ok.stdout.contains("plainly averaged (some model has no importance): unused"))
        let inspect = run(["inspect", a.path])
        #expect(inspect.status == 0)
        #expect(inspect.stdout.contains("kind adam") && inspect.stdout.contains("step 5") && inspect.stdout.contains("does NOT map"))
        let inspectMapped = run(["inspect", a.path, "--mapping", mapping.path])
        #expect(inspectMapped.stdout.contains("by explicitMapping"))
        let mlp = run(["inspect", try CheckpointFixture.checkpoint("mlp_digits", in: root, name: "m").path])
        #expect(mlp.stdout.contains("fc1.weight") && mlp.stdout.contains("step 100") && mlp.stdout.contains("maps to") && mlp.stdout.contains("by modelOrder"))
    }

    /// Bad inputs end in one line naming the file, tensor or argument, a non-zero status, and no output.
    @Test func badInputs() throws {
        let root = try CheckpointFixture.folder()
        defer { try? FileManager.default.removeItem(at: root) }
        let a = try CheckpointFixture.checkpoint("mlp_digits", in: root, name: "a")
        let tensors = try SafeTensorsFile(contentsOf: a.appendingPathComponent("model.safetensors")).allTensors()
        func variant(_ name: String, _ edit: (inout NamedTensors) throws -> Void) throws -> String {
            let folder = root.appendingPathComponent(name)
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            var copy = tensors
            try edit(&copy)
            try SafeTensorsWriter.write(copy, to: folder.appendingPathComponent("model.safetensors"))
            return folder.path
        }
        let out = root.appendingPathComponent("out").path
        let missing = try variant("missing") { t in t = try NamedTensors(t.names.filter { $0 != "fc2.bias" }.map { ($0, t[$0]!) }) }
        expectOneLineError(run(["merge", "--method", "average", a.path, missing, "--output", out]), "no tensor 'fc2.bias'")
        let reshaped = try variant("reshaped") { t in t["fc1.bias"] = Tensor(zeros: [31]) }
        expectOneLineError(run(["merge", "--method", "average", a.path, reshaped, "--output", out]), "'fc1.bias'", "[31]", "[32]")
        // No optimizer.pt in the second folder, importances from optimizers.
        expectOneLineError(run(["merge", a.path, reshaped, "--output", out]), "no optimizer.pt")
        expectOneLineError(run(["prune", a.path, "--sparsity", "1", "--output", out]), "--sparsity", "[0, 1)")
        expectOneLineError(run(["prune", a.path, "--sparsity", "-0.1", "--output", out]), "--sparsity")
        expectOneLineError(run(["mask", a.path, "--keep", "0", "--output", out]), "--keep")
        expectOneLineError(run(["merge", "--method", "median", a.path, "--output", out]), "--method", "median")
        expectOneLineError(run(["merge", "--method", "average", a.path, a.path, "--output", out, "--weights", "1"]), "--weights")
        // Corrupt files: a truncated model, a truncated optimizer state, a hostile pickle global.
        let truncated = root.appendingPathComponent("truncated")
        try FileManager.default.createDirectory(at: truncated, withIntermediateDirectories: true)
        let bytes = try Data(contentsOf: a.appendingPathComponent("model.safetensors"))
        try bytes.prefix(bytes.count - 100).write(to: truncated.appendingPathComponent("model.safetensors"))
        expectOneLineError(run(["merge", "--method", "average", a.path, truncated.path, "--output", out]), "truncated/model.safetensors")
        let badOptimizer = try variant("badopt") { _ in }
        let optimizerBytes = try Data(contentsOf: a.appendingPathComponent("optimizer.pt"))
        try optimizerBytes.prefix(optimizerBytes.count / 2).write(to: URL(fileURLWithPath: badOptimizer).appendingPathComponent("optimizer.pt"))
        expectOneLineError(run(["prune", badOptimizer, "--sparsity", "0.5", "--output", out]), "badopt/optimizer.pt")
        #expect(!FileManager.default.fileExists(atPath: out), "no output may be left after a failure")
        // An output folder that exists and is not empty is refused; inputs are never written.
        expectOneLineError(run(["merge", "--method", "average", a.path, a.path, "--output", a.path]), "input")
        let original = try Data(contentsOf: a.appendingPathComponent("model.safetensors"))
        #expect(original == bytes)
        let occupied = root.appendingPathComponent("occupied")
        try FileManager.default.createDirectory(at: occupied, withIntermediateDirectories: true)
        try Data("x".utf8).write(to: occupied.appendingPathComponent("keep.txt"))
        expectOneLineError(run(["merge", "--method", "average", a.path, a.path, "--output", occupied.path]), "not an empty folder")
    }

    /// Pruning writes exactly the mask of the in-memory ``FisherPruning`` (same saliency, same
    /// top-k and tie-breaking) for each scope, and the pruned model is θ·mask. Exact equality: both
    /// compute the saliency with the same float32 expression and select the same set.
    @Test(arguments: [("global", FisherPruning.Scope.global), ("global-normalized", .globalNormalized), ("per-tensor", .perTensor)])
    func pruneMatchesInMemory(scopeName: String, scope: FisherPruning.Scope) throws {
        let root = try CheckpointFixture.folder()
        defer { try? FileManager.default.removeItem(at: root) }
        let a = try CheckpointFixture.checkpoint("mlp_digits", in: root, name: "a")
        let out = root.appendingPathComponent("pruned")
        let result = run(["prune", a.path, "--sparsity", "0.6", "--scope", scopeName, "--output", out.path])
        #expect(result.status == 0, "stderr: \(result.stderr)")
        let theta = try SafeTensorsFile(contentsOf: a.appendingPathComponent("model.safetensors")).allTensors()
        var values = NamedTensors()
        for (name, v) in try CheckpointFixture.mlpExpAvgSq() { values[name] = Tensor(uncheckedShape: theta[name]!.shape, scalars: v.map(Float.init)) }
        // The checkpoint's tensor order (data order of the file) decides ties; use the same order.
        let ordered = try NamedTensors(theta.names.map { ($0, theta[$0]!) })
        let expected = try FisherPruning(scope: scope).mask(parameters: ordered, importance: Importance(unchecked: values, estimator: "oracle"), sparsity: 0.6)
        let mask = try SafeTensorsFile(contentsOf: out.appendingPathComponent("mask.safetensors"))
        let pruned = try SafeTensorsFile(contentsOf: out.appendingPathComponent("model.safetensors"))
        #expect(Set(mask.names) == Set(expected.masks.names))
        for name in expected.masks.names {
            #expect(try mask.entry(name).dtype == .uint8)
            let got = try mask.integers(name).map(Float.init)
            #expect(got == expected.masks[name]!.scalars, "mask of \(name)")
            #expect(try pruned.tensor(name).scalars == zip(theta[name]!.scalars, got).map { $0 * $1 }, "pruned \(name)")
        }
        #expect(try pruned.tensor("fc1.bias") == theta["fc1.bias"]!, "biases stay dense")
    }

    /// The FISH mask file equals ``FishMask`` in memory (classifier kept, one global top-k).
    @Test func maskMatchesInMemory() throws {
        let root = try CheckpointFixture.folder()
        defer { try? FileManager.default.removeItem(at: root) }
        let a = try CheckpointFixture.checkpoint("mlp_digits", in: root, name: "a")
        let out = root.appendingPathComponent("mask.safetensors")
        let result = run(["mask", a.path, "--keep", "0.2", "--classifier", "fc2.weight,fc2.bias", "--output", out.path])
        #expect(result.status == 0, "stderr: \(result.stderr)")
        let theta = try SafeTensorsFile(contentsOf: a.appendingPathComponent("model.safetensors")).allTensors()
        let ordered = try NamedTensors(theta.names.map { ($0, theta[$0]!) })
        var values = NamedTensors()
        for (name, v) in try CheckpointFixture.mlpExpAvgSq() { values[name] = Tensor(uncheckedShape: theta[name]!.shape, scalars: v.map(Float.init)) }
        let expected = try FishMask(keepFraction: 0.2, classifierParameters: ["fc2.weight", "fc2.bias"]).mask(parameters: ordered, importance: Importance(unchecked: values, estimator: "oracle"))
        let mask = try SafeTensorsFile(contentsOf: out)
        for name in ordered.names { #expect(try mask.integers(name).map(Float.init) == expected.masks[name]!.scalars, "\(name)") }
    }

    /// Task2Vec distances between checkpoints equal ``Task2Vec`` on the whole importances in memory
    /// (1e-12: the same Double arithmetic, summed in a different grouping), and a checkpoint is at
    /// distance 0 from itself.
    @Test func embedMatchesInMemory() throws {
        let root = try CheckpointFixture.folder()
        defer { try? FileManager.default.removeItem(at: root) }
        let a = try CheckpointFixture.checkpoint("mlp_digits", in: root, name: "a")
        let theta = try SafeTensorsFile(contentsOf: a.appendingPathComponent("model.safetensors")).allTensors()
        var generator = SplitMix64(seed: 5)
        var other = NamedTensors()
        for name in theta.names { other[name] = Tensor.uniform(shape: theta[name]!.shape, low: 0, high: 1e-4, using: &generator) }
        let otherURL = root.appendingPathComponent("other.safetensors")
        try SafeTensorsWriter.write(other, to: otherURL)
        let result = run(["embed", a.path, a.path, "--importance-source", "\(a.path)/optimizer.pt,\(otherURL.path)", "--skip", "fc2.weight,fc2.bias", "--json"])
        #expect(result.status == 0, "stderr: \(result.stderr)")
        let json = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        let distances = try #require(json?["distances"] as? [[Double]])
        var mine = NamedTensors(), theirs = NamedTensors()
        let fisher = try CheckpointFixture.mlpExpAvgSq()
        for name in theta.names where !name.hasPrefix("fc2") {
            mine[name] = Tensor(uncheckedShape: theta[name]!.shape, scalars: fisher[name]!.map(Float.init))
            theirs[name] = other[name]!
        }
        let rule = Task2Vec(skippedParameters: [])
        let expected = try Task2Vec.distance(rule.embedding(Importance(unchecked: mine, estimator: "a")), rule.embedding(Importance(unchecked: theirs, estimator: "b")))
        #expect(abs(distances[0][1] - expected) <= 1e-12, "\(distances[0][1]) vs \(expected)")
        #expect(distances[0][0] == 0)
        let same = run(["embed", a.path, a.path, "--json"])
        let sameJSON = try JSONSerialization.jsonObject(with: Data(same.stdout.utf8)) as? [String: Any]
        #expect((sameJSON?["distances"] as? [[Double]])?[0][1] ?? 1 <= 1e-12)
    }

    @Test(arguments: ["inspect", "merge", "prune", "mask", "embed"])
    func help(command: String) {
        let result = run([command, "--help"])
        #expect(result.status == 0 && result.stdout.contains("USAGE: squisher \(command)"))
    }
}
