import Foundation
import Squisher
import SquisherCommands
import Testing

/// `squisher merge` with no options on checkpoint folders written by `transformers.Trainer`
/// (two runs of a tiny GPT-2 and of a tiny BERT classifier from one initialization each, and a
/// `BertForMaskedLM` base without the classifier; see the fixtures' README).
@Suite("squisher merge on Hugging Face Trainer checkpoints")
struct RealCheckpointMergeTests {
    /// The default Fisher merge equals `θ = Σ_i F̃_i θ_i / Σ_i F̃_i`, `F̃_i = max(v_i, ε_i)`,
    /// `ε_i = 1e-6 · mean(v_i)`, computed here in Double from each run's `exp_avg_sq` answer key
    /// (written by the generator from the live optimizer). Tolerance: the library sums in Double and
    /// rounds once to float32; 2 ulps of the tensor's largest |θ|. GPT-2's tied `lm_head` stays one
    /// tensor (only `transformer.wte.weight` is written, as the inputs store it).
    @Test(arguments: [("hf_trainer_gpt2", "hf_trainer_gpt2_b"), ("hf_trainer_bert", "hf_trainer_bert_b")])
    func defaultMergeEqualsFormula(a: String, b: String) throws {
        let root = try FormatFixtures.scratch()
        defer { try? FileManager.default.removeItem(at: root) }
        let out = root.appendingPathComponent("merged")
        let result = runTool(["merge", try FormatFixtures.input(a).path, try FormatFixtures.input(b).path, "--output", out.path])
        #expect(result.status == 0, "stderr: \(result.stderr)")
        let merged = try SafeTensorsFile(contentsOf: out.appendingPathComponent("model.safetensors")).allTensors()
        let models = try [a, b].map { try SafeTensorsFile(contentsOf: FormatFixtures.input($0).appendingPathComponent("model.safetensors")).allTensors() }
        let keys = try [a, b].map { try FormatFixtures.answerKey($0).allTensors() }
        #expect(merged.names.sorted() == models[0].names.sorted())
        #expect(merged["lm_head.weight"] == nil)
        let floors = keys.map { key -> Double in
            let all = models[0].names.compactMap { key[$0]?.scalars }.flatMap { $0 }
            return Double(Float(1e-6 * all.reduce(0.0) { $0 + Double($1) } / Double(all.count)))
        }
        for name in models[0].names {
            let got = merged[name]!.scalars
            var worst = 0.0, scale = 0.0
            for j in got.indices {
                var numerator = 0.0, denominator = 0.0
                for i in 0..<2 {
                    // A tensor without optimizer state in some run (none here) is plainly averaged.
                    let covered = keys.allSatisfy { $0[name] != nil }
                    let weight = covered ? max(Double(keys[i][name]!.scalars[j]), floors[i]) : 1
                    numerator += weight * Double(models[i][name]!.scalars[j])
                    denominator += weight
                }
                worst = max(worst, abs(Double(got[j]) - numerator / denominator))
                scale = max(scale, abs(numerator / denominator))
            }
            #expect(worst <= 2 * 0x1p-23 * scale, "\(name): worst error \(worst) at scale \(scale)")
        }
    }

    /// A GPT-2 saved with both halves of its tied pair (as DeepSpeed's tools write it): the merged
    /// `lm_head.weight` is bit-for-bit the merged `transformer.wte.weight`, which is Fisher-merged.
    @Test func tiedPairSavedTwiceStaysTied() throws {
        let root = try FormatFixtures.scratch()
        defer { try? FileManager.default.removeItem(at: root) }
        var folders: [URL] = []
        for fixture in ["hf_trainer_gpt2", "hf_trainer_gpt2_b"] {
            let folder = root.appendingPathComponent(fixture)
            try FileManager.default.copyItem(at: try FormatFixtures.input(fixture), to: folder)
            var tensors = try SafeTensorsFile(contentsOf: folder.appendingPathComponent("model.safetensors")).allTensors()
            tensors["lm_head.weight"] = tensors["transformer.wte.weight"]!
            try FileManager.default.removeItem(at: folder.appendingPathComponent("model.safetensors"))
            try SafeTensorsWriter.write(tensors, to: folder.appendingPathComponent("model.safetensors"))
            folders.append(folder)
        }
        let out = root.appendingPathComponent("merged")
        let result = runTool(["merge", folders[0].path, folders[1].path, "--output", out.path, "--json"])
        #expect(result.status == 0, "stderr: \(result.stderr)")
        let merged = try SafeTensorsFile(contentsOf: out.appendingPathComponent("model.safetensors")).allTensors()
        #expect(merged["lm_head.weight"]!.scalars.map(\.bitPattern) == merged["transformer.wte.weight"]!.scalars.map(\.bitPattern))
        #expect(!result.stdout.contains("\"averaged_tensors\":[\"lm_head.weight\"]"), "stdout: \(result.stdout)")
    }

    /// UBGM into the pretrained `BertForMaskedLM` base (no pooler, no classifier, an MLM head):
    /// runs with no mapping file, writes the fine-tunes' layout, and reports both differences.
    @Test func ubgmWithPretrainedMaskedLMBase() throws {
        let root = try FormatFixtures.scratch()
        defer { try? FileManager.default.removeItem(at: root) }
        let out = root.appendingPathComponent("merged")
        let result = runTool(["merge", "--method", "ubgm", "--base", try FormatFixtures.input("hf_base_bert_mlm").path, "--scaling", "N=64",
                              try FormatFixtures.input("hf_trainer_bert").path, try FormatFixtures.input("hf_trainer_bert_b").path,
                              "--output", out.path, "--json"])
        #expect(result.status == 0, "stderr: \(result.stderr)")
        let expected = try FormatFixtures.expected("hf_base_bert_mlm")
        let summary = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any] ?? [:]
        #expect(Set(summary["tensors_without_base"] as? [String] ?? []) == Set(expected["only_in_fine_tunes"] as! [String]))
        #expect(Set(summary["base_only_tensors"] as? [String] ?? []) == Set(expected["only_in_base"] as! [String]))
        let merged = try SafeTensorsFile(contentsOf: out.appendingPathComponent("model.safetensors"))
        #expect(merged.names.contains("classifier.weight") && !merged.names.contains { $0.hasPrefix("cls.") })
    }
}

/// `squisher importance` follows the output protocol: an output inside the checkpoint it reads is
/// refused and the checkpoint stays byte-identical.
@Suite("squisher importance never writes into its input")
struct ImportanceOutputTests {
    @Test func outputInsideTheCheckpointIsRefused() throws {
        let root = try FormatFixtures.scratch()
        defer { try? FileManager.default.removeItem(at: root) }
        let folder = root.appendingPathComponent("ckpt")
        try FileManager.default.copyItem(at: try FormatFixtures.input("hf_trainer_bert"), to: folder)
        let before = try Data(contentsOf: folder.appendingPathComponent("optimizer.pt"))
        let result = runTool(["importance", "--output", folder.appendingPathComponent("optimizer.pt").path, folder.path])
        #expect(result.status != 0)
        #expect(result.stderr.contains("--output"), "stderr: \(result.stderr)")
        #expect(try Data(contentsOf: folder.appendingPathComponent("optimizer.pt")) == before)
    }
}
