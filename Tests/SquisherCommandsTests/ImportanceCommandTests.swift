import Foundation
import Squisher
import SquisherCommands
import Testing

/// The real-library checkpoints of every format, kept once in the checkpoint readers' test
/// resources (`Tests/SquisherCheckpointsTests/Resources/formats`, see its README) and used here in place.
enum FormatFixtures {
    static var root: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("SquisherCheckpointsTests/Resources/formats")
    }

    static func expected(_ fixture: String) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: root.appendingPathComponent("\(fixture)/expected.json"))) as! [String: Any]
    }

    /// The checkpoint folder the library wrote.
    static func input(_ fixture: String) throws -> URL {
        root.appendingPathComponent(fixture).appendingPathComponent(try expected(fixture)["input"] as! String)
    }

    static func answerKey(_ fixture: String) throws -> SafeTensorsFile {
        try SafeTensorsFile(contentsOf: root.appendingPathComponent("\(fixture)/expected.safetensors"))
    }

    /// A fresh temporary folder, removed by the caller.
    static func scratch() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("squisher-importance-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// Every fixture with an answer key (the readable ones).
    static var readable: [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? []
        return names.filter { FileManager.default.fileExists(atPath: root.appendingPathComponent("\($0)/expected.safetensors").path) }.sorted()
    }
}

@Suite struct ImportanceCommandTests {
    /// The fixture list is read from the folder; it must hold every format this suite is about, so a
    /// missing folder cannot make the parameterized test below vacuous.
    @Test func fixturesArePresent() {
        let readable = Set(FormatFixtures.readable)
        for fixture in ["hf_trainer_bert", "hf_trainer_gpt2", "peft_lora", "adafactor", "bnb_adamw8bit", "bnb_adamw32bit", "bnb_paged_adamw8bit",
                        "torch_nadam", "torch_radam", "torch_adamw_named", "deepspeed_zero1", "deepspeed_zero2", "deepspeed_zero3",
                        "deepspeed_zero2_bf16", "deepspeed_zero2_ws2", "deepspeed_zero3_ws2", "hf_trainer_deepspeed", "fsdp_full", "dcp",
                        "dcp_to_torch_save"] {
            #expect(readable.contains(fixture), "missing fixture \(fixture) in \(FormatFixtures.root.path)")
        }
    }

    /// `squisher importance CKPT` (no mapping file) writes raw `v` by parameter name: equal to the
    /// answer key within 1e-6 relative per tensor (the reader copies or dequantizes float32 exactly;
    /// Adafactor's reconstruction is within two float32 roundings, ~1.2e-7), float32, parameter shapes.
    @Test(arguments: FormatFixtures.readable)
    func exportsTheAnswerKey(fixture: String) throws {
        let scratch = try FormatFixtures.scratch()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let output = scratch.appendingPathComponent("importance.safetensors")
        let result = runTool(["importance", "--output", output.path, try FormatFixtures.input(fixture).path])
        #expect(result.status == 0, "stderr: \(result.stderr)")
        #expect(result.stdout.contains("format: ") && result.stdout.contains("names: recovered from"))
        let written = try SafeTensorsFile(contentsOf: output)
        let key = try FormatFixtures.answerKey(fixture)
        #expect(Set(written.names) == Set(key.names))
        #expect(written.metadata["scaling"] == "raw" && written.metadata["bias_correction"] == "off" && written.metadata["format"] != nil)
        for name in key.names where written.entries[name] != nil {
            #expect(written.entries[name]!.dtype == .float32 && written.entries[name]!.shape == key.entries[name]!.shape, "\(name)")
            let got = try written.doubles(name), want = try key.doubles(name)
            var difference = 0.0, norm = 0.0
            for (a, b) in zip(got, want) { difference += (a - b) * (a - b); norm += b * b }
            #expect(norm == 0 ? difference == 0 : (difference / norm).squareRoot() <= 1e-6, "\(fixture) '\(name)'")
        }
    }

    /// `--scaling N=n` multiplies by n; `--bias-correction` divides by 1 − β₂ᵗ with the fixture's
    /// β₂ and step (from expected.json), both checked against the answer key in Double.
    @Test func scalingAndBiasCorrection() throws {
        let scratch = try FormatFixtures.scratch()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let output = scratch.appendingPathComponent("scaled.safetensors")
        let input = try FormatFixtures.input("hf_trainer_bert").path
        let result = runTool(["importance", "--scaling", "N=1000", "--bias-correction", "--output", output.path, input])
        #expect(result.status == 0, "stderr: \(result.stderr)")
        let expected = try FormatFixtures.expected("hf_trainer_bert")
        let beta2 = (expected["betas"] as! [Double])[1], step = expected["step"] as! Int
        let factor = 1000 / (1 - pow(beta2, Double(step)))
        let written = try SafeTensorsFile(contentsOf: output), key = try FormatFixtures.answerKey("hf_trainer_bert")
        for name in key.names {
            let got = try written.doubles(name), want = try key.doubles(name)
            for (a, b) in zip(got, want) { #expect(abs(a - factor * b) <= 1e-6 * abs(factor * b) + 1e-30, "\(name)") }
        }
        // Adafactor's decay changes every step: bias correction is refused with the reason.
        let refused = runTool(["importance", "--bias-correction", "--output", output.path, try FormatFixtures.input("adafactor").path])
        #expect(refused.status != 0 && refused.stderr.contains("Adafactor's beta2 changes every step"), "\(refused.stderr)")
    }

    /// Refusals end in one line naming why (Adamax's infinity norm, SGD's momentum, Lion's first moment).
    @Test(arguments: [("torch_adamax", "exp_inf"), ("torch_sgd_momentum", "momentum_buffer"), ("bnb_lion8bit", "state1")])
    func refusals(fixture: String, reason: String) throws {
        let scratch = try FormatFixtures.scratch()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let output = scratch.appendingPathComponent("x.safetensors")
        let result = runTool(["importance", "--output", output.path, try FormatFixtures.input(fixture).path])
        #expect(result.status == 1 && result.stderr.contains(reason) && result.stderr.contains("second moment"), "\(result.stderr)")
        #expect(!FileManager.default.fileExists(atPath: output.path))
    }

    /// `inspect` says which format it read and how it recovered the names; `merge --method fisher`
    /// and `prune` run on a Trainer folder with no mapping file.
    @Test func inspectAndApplicationsOnTrainerFolders() throws {
        let scratch = try FormatFixtures.scratch()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let bert = try FormatFixtures.input("hf_trainer_bert").path
        let inspect = runTool(["inspect", bert])
        #expect(inspect.status == 0)
        #expect(inspect.stdout.contains("format: Hugging Face Trainer checkpoint"), "\(inspect.stdout)")
        #expect(inspect.stdout.contains("names: recovered from the Trainer's decay/no-decay grouping over BertForSequenceClassification"))
        #expect(inspect.stdout.contains("maps to"), "\(inspect.stdout)")
        let gpt2 = runTool(["inspect", try FormatFixtures.input("hf_trainer_gpt2").path])
        #expect(gpt2.stdout.contains("tied: lm_head.weight is transformer.wte.weight"))
        let merged = scratch.appendingPathComponent("merged")
        let merge = runTool(["merge", "--method", "fisher", bert, try FormatFixtures.input("adafactor").path, "--output", merged.path])
        #expect(merge.status == 0, "stderr: \(merge.stderr)")
        let pruned = runTool(["prune", "--sparsity", "0.5", "--output", scratch.appendingPathComponent("pruned").path, try FormatFixtures.input("peft_lora").path])
        #expect(pruned.status == 0, "stderr: \(pruned.stderr)")
    }

    /// Fisher merging runs with no mapping file on folders whose model is a safetensors file and whose
    /// optimizer state is any format: HF + DeepSpeed (no optimizer.pt), FSDP names, bitsandbytes 8-bit,
    /// tied GPT-2; a DeepSpeed tag folder without weights is described by inspect from its state alone.
    @Test(arguments: ["hf_trainer_deepspeed", "fsdp_full", "bnb_adamw8bit", "hf_trainer_gpt2"])
    func fisherMergeWithoutMapping(fixture: String) throws {
        let scratch = try FormatFixtures.scratch()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let input = try FormatFixtures.input(fixture).path
        let merge = runTool(["merge", "--method", "fisher", input, input, "--output", scratch.appendingPathComponent("merged").path])
        #expect(merge.status == 0, "\(fixture) stderr: \(merge.stderr)")
    }

    @Test func inspectDeepSpeedTagFolder() throws {
        let inspect = runTool(["inspect", try FormatFixtures.input("deepspeed_zero3_ws2").path])
        #expect(inspect.status == 0, "\(inspect.stderr)")
        #expect(inspect.stdout.contains("format: DeepSpeed ZeRO-3 checkpoint (world size 2, fp32)"), "\(inspect.stdout)")
        #expect(inspect.stdout.contains("names: recovered from DeepSpeed's param_shapes"))
        #expect(inspect.stdout.contains("tied: lm_head.weight is transformer.wte.weight"))
    }
}
