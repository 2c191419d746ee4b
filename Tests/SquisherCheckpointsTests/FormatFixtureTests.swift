import Foundation
import SquisherCheckpoints
import SquisherIO
import SquisherTensor
import Testing

/// Checkpoints written by the real libraries (transformers, PEFT, DeepSpeed, FSDP/DCP, bitsandbytes,
/// torch; see `Resources/formats/README.md` and `Tests/Generators/make_checkpoint_fixtures.py`), each
/// with an answer key made in the generating process from the live optimizer.
enum FormatFixture {
    /// The folder of fixture `name`.
    static func folder(_ name: String) throws -> URL {
        guard let base = Bundle.module.url(forResource: "formats", withExtension: nil, subdirectory: "Resources") else {
            throw CheckpointError(path: "Resources/formats", problem: "test resource folder missing")
        }
        return base.appendingPathComponent(name)
    }

    /// `expected.json` of fixture `name`.
    static func expected(_ name: String) throws -> [String: Any] {
        let data = try Data(contentsOf: folder(name).appendingPathComponent("expected.json"))
        return try JSONSerialization.jsonObject(with: data) as! [String: Any]
    }

    /// The checkpoint the library wrote (the `input` sub-folder named by `expected.json`).
    static func input(_ name: String) throws -> URL {
        try folder(name).appendingPathComponent(expected(name)["input"] as! String)
    }

    /// The answer key: second moment by parameter name, float32.
    static func answerKey(_ name: String) throws -> SafeTensorsFile {
        try SafeTensorsFile(contentsOf: folder(name).appendingPathComponent("expected.safetensors"))
    }
}

/// `‖a − b‖₂ / ‖b‖₂` in Double (0 when both are zero).
func relativeError(_ a: [Float], _ b: [Double]) -> Double {
    var difference = 0.0, norm = 0.0
    for (x, y) in zip(a, b) {
        difference += (Double(x) - y) * (Double(x) - y)
        norm += y * y
    }
    return norm == 0 ? sqrt(difference) : sqrt(difference / norm)
}

@Suite struct FormatFixtureTests {
    /// Fixtures whose second moments can be read, with the format and name source they must report.
    static let readable: [String] = [
        "hf_trainer_bert", "hf_trainer_gpt2", "hf_trainer_bert_b", "hf_trainer_gpt2_b", "torch_nadam", "torch_radam", "torch_adamw_named", "adafactor",
        "bnb_adamw8bit", "bnb_adamw32bit", "bnb_paged_adamw8bit", "peft_lora",
        "deepspeed_zero1", "deepspeed_zero2", "deepspeed_zero3", "deepspeed_zero2_bf16", "deepspeed_zero2_ws2", "deepspeed_zero3_ws2",
        "hf_trainer_deepspeed", "fsdp_full", "dcp", "dcp_to_torch_save",
    ]

    /// Every parameter's second moment equals the answer key within 1e-6 relative (normwise per
    /// tensor). The reader copies float32 state exactly (error 0), dequantizes bitsandbytes' 8-bit
    /// state with the same float32 product as `dequantize_blockwise` (error 0), or, for Adafactor, computes
    /// row ⊗ col / mean(row) in Double and rounds once, against the generator's float64 value rounded
    /// to float32: at most two float32 roundings, about 1.2e-7 relative, so 1e-6 leaves a margin
    /// while any wrong name (a swapped tensor) or wrong formula is off by O(1).
    @Test(arguments: readable)
    func secondMomentsMatchAnswerKey(fixture: String) throws {
        let checkpoint = try OptimizerCheckpoint.open(FormatFixture.input(fixture))
        let key = try FormatFixture.answerKey(fixture)
        #expect(Set(checkpoint.moments.names) == Set(key.names), "names differ: read \(checkpoint.moments.names.sorted()), key \(key.names.sorted())")
        for name in key.names where checkpoint.moments.shapes[name] != nil {
            let tensor = try checkpoint.moments.value(of: name)
            #expect(tensor.shape == key.entries[name]!.shape, "\(fixture) '\(name)': shape \(tensor.shape) vs \(key.entries[name]!.shape)")
            let error = relativeError(tensor.scalars, try key.doubles(name))
            #expect(error <= 1e-6, "\(fixture) '\(name)': relative error \(error)")
        }
        let expected = try FormatFixture.expected(fixture)
        if let step = expected["step"] as? Int {
            #expect(Set(checkpoint.moments.steps.values) == [step], "\(fixture): steps \(Set(checkpoint.moments.steps.values)), expected \(step)")
        }
        let tied = (expected["tied_weights"] as? [[String]] ?? []).map { [$0[0]: $0[1]] }.reduce(into: [String: String]()) { $0.merge($1) { a, _ in a } }
        #expect(checkpoint.tiedParameters == tied)
    }

    /// Optimizers without a second moment are refused with the reason (not "buffers []").
    @Test(arguments: [("torch_adamax", "exp_inf"), ("torch_sgd_momentum", "momentum_buffer"), ("bnb_lion8bit", "state1")])
    func refusalNamesTheReason(fixture: String, reason: String) throws {
        let error = #expect(throws: CheckpointError.self) { try OptimizerCheckpoint.open(FormatFixture.input(fixture)) }
        #expect(error?.problem.contains(reason) == true, "\(String(describing: error))")
        #expect(error?.problem.contains("not a second moment") == true || error?.problem.contains("no second moment") == true, "\(String(describing: error))")
    }

    /// The format and the way names were recovered are reported as values.
    @Test func formatAndNameSource() throws {
        let bert = try OptimizerCheckpoint.open(FormatFixture.input("hf_trainer_bert"))
        #expect(bert.format == .huggingFaceTrainer)
        #expect(bert.nameSource == .huggingFaceTrainerOrder(architecture: "BertForSequenceClassification", family: .bert))
        #expect(bert.optimizer == .adamW)
        let gpt2 = try OptimizerCheckpoint.open(FormatFixture.input("hf_trainer_gpt2"))
        #expect(gpt2.nameSource == .huggingFaceTrainerOrder(architecture: "GPT2LMHeadModel", family: .gpt2))
        #expect(gpt2.tiedParameters == ["lm_head.weight": "transformer.wte.weight"])
        #expect(try OptimizerCheckpoint.open(FormatFixture.input("torch_adamw_named")).nameSource == .storedNames)
        #expect(try OptimizerCheckpoint.open(FormatFixture.input("torch_nadam")).optimizer == .nadam)
        #expect(try OptimizerCheckpoint.open(FormatFixture.input("torch_radam")).optimizer == .radam)
        let lora = try OptimizerCheckpoint.open(FormatFixture.input("peft_lora"))
        #expect(lora.format == .peftLoRA && lora.nameSource == .peftAdapter(adapterName: "default"))
        let bnb = try OptimizerCheckpoint.open(FormatFixture.input("bnb_adamw8bit"))
        #expect(bnb.optimizer == .bitsAndBytes && bnb.moments.source == .bitsAndBytesState2)
        // The 8-bit fixture exercises the blockwise codes (a parameter of >= 4096 elements), not only 32-bit state.
        let raw = try TorchOptimizerState(contentsOf: FormatFixture.input("bnb_adamw8bit").appendingPathComponent("optimizer.pt"))
        #expect(raw.states.values.contains { $0.buffers["state2"]?.dtype == .uint8 })
        for (fixture, stage, worldSize, bf16, trainer) in [
            ("deepspeed_zero1", 1, 1, false, false), ("deepspeed_zero2_bf16", 2, 1, true, false), ("deepspeed_zero2_ws2", 2, 2, false, false),
            ("deepspeed_zero3_ws2", 3, 2, false, false), ("hf_trainer_deepspeed", 2, 1, false, true),
        ] {
            let deepSpeed = try OptimizerCheckpoint.open(FormatFixture.input(fixture))
            #expect(deepSpeed.format == .deepSpeedZeRO(stage: stage, worldSize: worldSize, bf16: bf16, huggingFaceFolder: trainer), "\(fixture): \(deepSpeed.format)")
            #expect(deepSpeed.nameSource == .deepSpeedParamShapes)
        }
        #expect(try OptimizerCheckpoint.open(FormatFixture.input("fsdp_full")).format == .fsdpFullStateDict)
        #expect(try OptimizerCheckpoint.open(FormatFixture.input("dcp")).format == .distributedCheckpoint(files: 2))
        #expect(try OptimizerCheckpoint.open(FormatFixture.input("dcp_to_torch_save")).format == .dcpToTorchSave)
        let adafactor = try OptimizerCheckpoint.open(FormatFixture.input("adafactor"))
        #expect(adafactor.optimizer == .adafactor && adafactor.moments.source == .adafactorFactored)
    }
}

/// Copies a fixture's checkpoint into a fresh temporary folder so a test can alter one file.
func copyOfFixture(_ fixture: String) throws -> URL {
    let target = FileManager.default.temporaryDirectory.appendingPathComponent("squisher-format-\(UUID().uuidString)")
    try FileManager.default.copyItem(at: FormatFixture.input(fixture), to: target)
    return target
}

@Suite struct HuggingFaceOrderTests {
    /// The real BERT Trainer checkpoint, with config.json naming an architecture no table knows: the
    /// generic rule cannot tell `query`, `key` and `value` apart (same shapes in the same groups), so
    /// the reader refuses and names them instead of picking an order.
    @Test func unknownArchitectureIsAmbiguous() throws {
        let folder = try copyOfFixture("hf_trainer_bert")
        defer { try? FileManager.default.removeItem(at: folder) }
        try Data(#"{"architectures": ["MysteryModelForSequenceClassification"], "model_type": "mystery"}"#.utf8)
            .write(to: folder.appendingPathComponent("config.json"))
        let error = #expect(throws: CheckpointError.self) { try OptimizerCheckpoint.open(folder) }
        let message = error?.problem ?? ""
        #expect(message.contains("ambiguous parameter order for MysteryModelForSequenceClassification"), "\(message)")
        #expect(message.contains("attention.self.key'") && message.contains("attention.self.query'"), "\(message)")
    }

    /// With the architecture known, the same folder maps (the BERT table orders query, key, value).
    @Test func bertOrderIsTheRegistrationOrder() throws {
        let expected = try FormatFixture.expected("hf_trainer_bert")["parameter_names"] as! [String]
        let folder = try FormatFixture.input("hf_trainer_bert")
        let weights = try SafeTensorsFile(contentsOf: folder.appendingPathComponent("model.safetensors"))
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: folder.appendingPathComponent("config.json"))) as! [String: Any]
        let order = HuggingFaceParameterOrder(config: config, weights: weights.names.map { ModelTensorShape(name: $0, shape: weights.entries[$0]!.shape) })
        #expect(order.decayGroup + order.noDecayGroup == expected)
    }

    /// A group-size mismatch (a parameter frozen) is an error that says so, not a shifted mapping.
    @Test func groupSizesAreChecked() throws {
        let folder = try copyOfFixture("hf_trainer_gpt2")
        defer { try? FileManager.default.removeItem(at: folder) }
        var config = try JSONSerialization.jsonObject(with: Data(contentsOf: folder.appendingPathComponent("config.json"))) as! [String: Any]
        config["tie_word_embeddings"] = false  // lm_head would then be its own parameter, but the file has none
        try JSONSerialization.data(withJSONObject: config).write(to: folder.appendingPathComponent("config.json"))
        let checkpoint = try OptimizerCheckpoint.open(folder)
        #expect(checkpoint.tiedParameters.isEmpty)
        // Drop one tensor from the weights: the Trainer rule now gives one decay parameter too few.
        let weights = try SafeTensorsFile(contentsOf: folder.appendingPathComponent("model.safetensors")).allTensors()
        var fewer = NamedTensors()
        for (name, tensor) in weights where name != "transformer.wpe.weight" { fewer[name] = tensor }
        try SafeTensorsWriter.write(fewer, to: folder.appendingPathComponent("model.safetensors"))
        let error = #expect(throws: CheckpointError.self) { try OptimizerCheckpoint.open(folder) }
        #expect(error?.problem.contains("the param groups have [10, 18] parameters") == true, "\(String(describing: error))")
    }
}

@Suite struct StepValidationTests {
    /// NaN, infinite, huge and negative steps are errors naming the file and parameter, never a trap
    /// in a Double → Int conversion.
    @Test(arguments: [Double.nan, .infinity, 1e30, -1, 2.5])
    func invalidStepIsAnError(step: Double) {
        let error = #expect(throws: CheckpointError.self) { try SecondMoments.stepCount(step, parameter: "fc1.weight", path: "optimizer.pt") }
        #expect(error?.path == "optimizer.pt")
        #expect(error?.problem.contains("step of parameter 'fc1.weight'") == true)
    }

    @Test func validStepConverts() throws {
        #expect(try SecondMoments.stepCount(6, parameter: "w", path: "p") == 6)
        #expect(try SecondMoments.stepCount(9_007_199_254_740_992, parameter: "w", path: "p") == 9_007_199_254_740_992)
    }
}

/// What `named_parameters()`, `Trainer.get_decay_parameter_names` and tying give for tiny models of
/// each supported architecture, written by transformers (`Tests/Generators/make_architecture_orders.py`).
@Suite struct ArchitectureOrderTests {
    static let architectures = [
        "BertModel", "BertForMaskedLM", "RobertaForSequenceClassification", "GPT2Model", "GPT2LMHeadModel", "LlamaForCausalLM",
    ]

    /// From config.json and the safetensors listing alone (sorted names), the derived registration
    /// order, Trainer groups and tied pairs equal transformers' own, and no sibling order is left
    /// uncertain for these known families.
    @Test(arguments: architectures)
    func orderGroupsAndTiesMatchTransformers(architecture: String) throws {
        guard let url = Bundle.module.url(forResource: architecture, withExtension: "json", subdirectory: "Resources/orders") else {
            throw CheckpointError(path: "Resources/orders/\(architecture).json", problem: "test resource missing")
        }
        let record = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        let weights = (record["weights"] as! [[Any]]).map { ModelTensorShape(name: $0[0] as! String, shape: $0[1] as! [Int]) }
        let order = HuggingFaceParameterOrder(config: record["config"] as! [String: Any], weights: weights)
        #expect(order.architecture == architecture)
        #expect(order.family != .generic)
        #expect(order.parameters.map(\.name) == record["named_parameters"] as! [String])
        #expect(order.decayGroup == record["decay"] as! [String])
        #expect(order.noDecayGroup == record["no_decay"] as! [String])
        let tied = (record["tied"] as! [[String]]).reduce(into: [String: String]()) { $0[$1[0]] = $1[1] }
        #expect(order.tiedParameters == tied)
        #expect(order.uncertainSiblings.isEmpty, "\(order.uncertainSiblings.prefix(3))")
    }
}

/// Real checkpoints, damaged one way each: every reader ends in an error naming the file and what is
/// wrong, never a trap or a silent result.
@Suite struct DamagedFormatTests {
    /// NaN, infinite and huge steps written into the real NAdam optimizer.pt (its 4-byte scalar
    /// storages: `step` and `mu_product`) are an error naming the file and the parameter.
    @Test(arguments: [Float.nan, .infinity, 1e30])
    func invalidStepInFile(step: Float) throws {
        let folder = try copyOfFixture("torch_nadam")
        defer { try? FileManager.default.removeItem(at: folder) }
        let url = folder.appendingPathComponent("optimizer.pt")
        var bytes = try Data(contentsOf: url)
        let archive = try ZipArchive(data: bytes, path: "optimizer.pt")
        let scalars = archive.entries.filter { $0.name.contains("/data/") && $0.size == 4 }
        #expect(!scalars.isEmpty)
        for entry in scalars {
            withUnsafeBytes(of: step.bitPattern.littleEndian) { bytes.replaceSubrange(entry.dataRange, with: $0) }
        }
        try bytes.write(to: url)
        let error = #expect(throws: CheckpointError.self) { try OptimizerCheckpoint.open(folder) }
        #expect(error?.path == url.path, "\(String(describing: error))")
        // Refused where the step is read (the state dict's ['step'] check) or where it is used.
        #expect(error?.problem.contains("['step'] is") == true || error?.problem.contains("step of parameter '") == true, "\(String(describing: error))")
    }

    /// A world-size-2 ZeRO-3 checkpoint with rank 1's file removed: the partition count says 2.
    @Test func deepSpeedMissingRank() throws {
        let folder = try copyOfFixture("deepspeed_zero3_ws2")
        defer { try? FileManager.default.removeItem(at: folder) }
        let tag = folder.appendingPathComponent(String(decoding: try Data(contentsOf: folder.appendingPathComponent("latest")), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
        try FileManager.default.removeItem(at: tag.appendingPathComponent("zero_pp_rank_1_mp_rank_00_optim_states.pt"))
        let error = #expect(throws: CheckpointError.self) { try OptimizerCheckpoint.open(folder) }
        #expect(error?.problem.contains("partition_count [2] does not match the 1 rank file(s)") == true, "\(String(describing: error))")
    }

    /// A `latest` file naming a tag outside the folder is refused, not followed.
    @Test func deepSpeedLatestOutsideFolder() throws {
        let folder = try copyOfFixture("deepspeed_zero2")
        defer { try? FileManager.default.removeItem(at: folder) }
        try Data("../../etc".utf8).write(to: folder.appendingPathComponent("latest"))
        let error = #expect(throws: CheckpointError.self) { try OptimizerCheckpoint.open(folder) }
        #expect(error?.problem.contains("names tag '../../etc'") == true, "\(String(describing: error))")
    }

    /// A DCP folder whose second shard file is truncated: the byte range `.metadata` lists is outside it.
    @Test func distributedCheckpointTruncatedShard() throws {
        let folder = try copyOfFixture("dcp")
        defer { try? FileManager.default.removeItem(at: folder) }
        let shard = folder.appendingPathComponent("__1_0.distcp")
        try Data(try Data(contentsOf: shard).prefix(1000)).write(to: shard)
        let error = #expect(throws: CheckpointError.self) { try OptimizerCheckpoint.open(folder) }
        #expect(error?.path == shard.path && error?.problem.contains("is outside the 1000-byte file") == true, "\(String(describing: error))")
        try FileManager.default.removeItem(at: shard)
        let missing = #expect(throws: CheckpointError.self) { try OptimizerCheckpoint.open(folder) }
        #expect(missing?.path == shard.path && missing?.problem.contains(".metadata lists it") == true, "\(String(describing: missing))")
    }

    /// The DeepSpeed model states file read as a plain torch.save file refuses DeepSpeed's classes by name.
    @Test func deepSpeedClassesNeedTheDeepSpeedAllowList() throws {
        let folder = try FormatFixture.input("deepspeed_zero2")
        let tag = folder.appendingPathComponent(String(decoding: try Data(contentsOf: folder.appendingPathComponent("latest")), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
        let error = #expect(throws: CheckpointError.self) { try TorchCheckpoint.load(tag.appendingPathComponent("zero_pp_rank_0_mp_rank_00_optim_states.pt")) }
        #expect(error?.problem.contains("is not allowed when reading a torch.save checkpoint") == true, "\(String(describing: error))")
        _ = try TorchCheckpoint.load(tag.appendingPathComponent("zero_pp_rank_0_mp_rank_00_optim_states.pt"), allowList: .deepSpeed)
    }
}
