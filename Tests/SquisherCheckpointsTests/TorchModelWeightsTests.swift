import Foundation
import SquisherCheckpoints
import SquisherIO
import Testing

/// The answer key of a fixture's model weights: `model_expected.safetensors`, float32, written by the
/// generator from the live torch module (see `Tests/Generators/fixtures_deepspeed.py`,
/// `fixtures_distributed.py`, `fixtures_weights.py`).
func modelAnswerKey(_ fixture: String) throws -> SafeTensorsFile {
    try SafeTensorsFile(contentsOf: FormatFixture.folder(fixture).appendingPathComponent("model_expected.safetensors"))
}

/// Checks that every tensor of `weights` equals `key` bit for bit, read whole and in chunks of
/// `chunk` elements (so that chunks straddle shard and piece boundaries), and that the names agree.
/// Exactness is the requirement: the files hold float32 or bfloat16 values, which float32 represents
/// exactly, so any difference (a wrong offset, stride, shard order or dtype) is a failure.
func expectBitwiseEqual(_ weights: TorchModelWeights, _ key: SafeTensorsFile, chunk: Int = 7, label: String) throws {
    #expect(Set(weights.names) == Set(key.names), "\(label): names read \(weights.names.sorted()), key \(key.names.sorted())")
    #expect(weights.names.count == key.names.count, "\(label): \(weights.names.count) names for \(key.names.count) in the key")
    for name in key.names where weights.names.contains(name) {
        let expected = try key.tensor(name)
        let shape = try weights.shape(name)
        #expect(shape == expected.shape, "\(label) '\(name)': shape \(shape) vs \(expected.shape)")
        let whole = try weights.floats(name)
        let mismatch = zip(whole, expected.scalars).enumerated().first { $0.element.0.bitPattern != $0.element.1.bitPattern }
        #expect(whole.count == expected.scalars.count && mismatch == nil,
                "\(label) '\(name)': element \(mismatch?.offset ?? -1) is \(mismatch?.element.0 ?? .nan), expected \(mismatch?.element.1 ?? .nan)")
        var pieces: [Float] = []
        for start in stride(from: 0, to: whole.count, by: chunk) {
            pieces += try weights.floats(name, range: start..<min(whole.count, start + chunk))
        }
        #expect(pieces.elementsEqual(expected.scalars) { $0.bitPattern == $1.bitPattern }, "\(label) '\(name)': chunked decode differs")
        weights.release(name)
    }
}

@Suite struct TorchModelWeightsTests {
    /// DeepSpeed ZeRO-1/2 (fp32, bf16, world size 1 and 2): `module` of the model-states file equals
    /// the live engine's `module.state_dict()` bit for bit (bf16 weights widen exactly to float32).
    @Test(arguments: ["deepspeed_zero1", "deepspeed_zero2", "deepspeed_zero2_bf16", "deepspeed_zero2_ws2"])
    func deepSpeedModuleMatchesLiveWeights(fixture: String) throws {
        let location = try #require(try DeepSpeedCheckpoint.locate(in: FormatFixture.input(fixture)))
        let weights = try TorchModelWeights.deepSpeed(location)
        try expectBitwiseEqual(weights, modelAnswerKey(fixture), label: fixture)
        #expect(weights.inputs.map(\.lastPathComponent) == ["mp_rank_00_model_states.pt"])
        #expect(weights.source == .deepSpeed(stage: 2, huggingFaceFolder: false))
        let bf16 = fixture.hasSuffix("bf16")
        #expect(try weights.dtype(weights.names[0]) == (bf16 ? .bfloat16 : .float32))
        if fixture == "deepspeed_zero2_ws2" {
            // The tied head is stored beside the embedding (same storage) and declared in shared_params.
            #expect(weights.tiedParameters == ["lm_head.weight": "transformer.wte.weight"])
            #expect(try weights.floats("lm_head.weight") == weights.floats("transformer.wte.weight"))
        }
    }

    /// ZeRO-3 writes shape-[0] placeholders under `module`; the reader refuses, naming the file, the
    /// parameter and the reason, instead of returning empty tensors.
    @Test(arguments: ["deepspeed_zero3", "deepspeed_zero3_ws2"])
    func zero3PlaceholdersAreRefused(fixture: String) throws {
        let location = try #require(try DeepSpeedCheckpoint.locate(in: FormatFixture.input(fixture)))
        let error = #expect(throws: CheckpointError.self) { try TorchModelWeights.deepSpeed(location) }
        #expect(error?.path.hasSuffix("zero_pp_rank_0_mp_rank_00_model_states.pt") == true, "\(String(describing: error))")
        #expect(error?.problem.contains("ZeRO-3") == true && error?.problem.contains("zero_to_fp32") == true, "\(String(describing: error))")
        #expect(error?.problem.contains("has shape [0]") == true, "\(String(describing: error))")
    }

    /// In a Trainer + DeepSpeed folder the `module` equals the `model.safetensors` the Trainer wrote
    /// from the same live model, bit for bit.
    @Test func trainerDeepSpeedModuleMatchesSafetensors() throws {
        let folder = try FormatFixture.input("hf_trainer_deepspeed")
        let location = try #require(try DeepSpeedCheckpoint.locate(in: folder))
        let weights = try TorchModelWeights.deepSpeed(location)
        #expect(weights.source == .deepSpeed(stage: 2, huggingFaceFolder: true))
        try expectBitwiseEqual(weights, SafeTensorsFile(contentsOf: folder.appendingPathComponent("model.safetensors")), label: "hf_trainer_deepspeed")
    }

    /// DCP, world size 2: every `model.*` tensor reassembled from the dimension-0 shards of
    /// `__0_0.distcp` and `__1_0.distcp` equals the full model state dict of the same run, bit for bit,
    /// in chunks that cross the boundary between the shards (the classifier's 3 rows split 2 + 1).
    @Test func distributedCheckpointMatchesFullStateDict() throws {
        let weights = try TorchModelWeights.distributedCheckpoint(FormatFixture.input("dcp"))
        try expectBitwiseEqual(weights, modelAnswerKey("dcp"), chunk: 5, label: "dcp")
        #expect(weights.inputs.map(\.lastPathComponent) == [".metadata", "__0_0.distcp", "__1_0.distcp"])
        #expect(weights.source == .distributedCheckpoint(prefix: "model.", files: 2))
        #expect(weights.names.first == "bert.embeddings.word_embeddings.weight" && !weights.names.contains { $0.hasPrefix("optim.") || $0.hasPrefix("model.") })
        // A tensor assembled from two shards has no single contiguous run of bytes.
        #expect(try weights.withContiguousBytes("classifier.weight") { $0.count } == nil)
    }

    /// `dcp_to_torch_save` output: the state dict nested under "model" is found and matches.
    @Test func nestedStateDictMatches() throws {
        let file = try FormatFixture.input("dcp_to_torch_save").appendingPathComponent("checkpoint.pt")
        let weights = try TorchModelWeights.torchStateDict(file)
        #expect(weights.source == .torchStateDict(key: "model"))
        try expectBitwiseEqual(weights, modelAnswerKey("dcp_to_torch_save"), label: "dcp_to_torch_save")
    }

    /// Views as `torch.save` writes them: a transpose, a 3-d permutation, storage offsets into a shared
    /// storage (one of them a column slice with a row stride), float16, bfloat16, float64 (rounded to
    /// nearest even, as torch's `.float()`), int64 and a 0-dim tensor; names in registration order.
    @Test func stridedViewsAndOffsetsMatch() throws {
        let fixture = "torch_state_dict_views"
        let expected = try FormatFixture.expected(fixture)
        let weights = try TorchModelWeights.torchStateDict(FormatFixture.input(fixture).appendingPathComponent("model.pt"), key: "model")
        #expect(weights.names == expected["names"] as? [String])
        try expectBitwiseEqual(weights, modelAnswerKey(fixture), chunk: 3, label: fixture)
        let layouts = try #require(expected["layouts"] as? [String: [String: Any]])
        for (name, layout) in layouts {
            #expect(try weights.dtype(name).rawValue == layout["dtype"] as? String, "\(name)")
            let contiguous = try weights.withContiguousBytes(name) { $0.count }
            #expect((contiguous != nil) == (layout["contiguous"] as? Bool), "\(name): contiguous bytes \(String(describing: contiguous))")
        }
        // The contiguous slice at storage offset 18 hands out exactly its own bytes.
        let bytes = try #require(try weights.withContiguousBytes("rows_of_shared") { Array($0.bindMemory(to: Float.self)) })
        #expect(bytes == (try modelAnswerKey(fixture).tensor("rows_of_shared").scalars))
    }

    /// A plain `torch.save(model.state_dict())` equals the same model's safetensors file.
    @Test func plainStateDictMatchesSafetensors() throws {
        let weights = try TorchModelWeights.torchStateDict(Fixture.url("tinylm_adam.model.pt"))
        #expect(weights.source == .torchStateDict(key: nil))
        try expectBitwiseEqual(weights, SafeTensorsFile(contentsOf: Fixture.url("tinylm_adam.model.safetensors")), chunk: 97, label: "tinylm_adam")
    }

    /// Decoding again after `release` reads the same values back from the page cache.
    @Test func decodeAfterReleaseRereads() throws {
        let location = try #require(try DeepSpeedCheckpoint.locate(in: FormatFixture.input("deepspeed_zero2")))
        let weights = try TorchModelWeights.deepSpeed(location)
        let name = weights.names[0]
        let first = try weights.floats(name)
        weights.release(name)
        #expect(try weights.floats(name) == first)
    }
}

@Suite struct TorchModelWeightsErrorTests {
    /// A model-states file cut in half: the zip reader names the file and says it is truncated.
    @Test func truncatedFileIsNamed() throws {
        let folder = try copyOfFixture("deepspeed_zero2")
        defer { try? FileManager.default.removeItem(at: folder) }
        let location = try #require(try DeepSpeedCheckpoint.locate(in: folder))
        let file = location.folder.appendingPathComponent("mp_rank_00_model_states.pt")
        let data = try Data(contentsOf: file)
        try data.prefix(data.count / 2).write(to: file)
        let error = #expect(throws: CheckpointError.self) { try TorchModelWeights.deepSpeed(location) }
        #expect(error?.path == file.path, "\(String(describing: error))")
        #expect(error?.problem.contains("truncated") == true, "\(String(describing: error))")
    }

    /// A state dict cut short: the same, through `torchStateDict`.
    @Test func truncatedStateDictIsNamed() throws {
        let folder = try copyOfFixture("torch_state_dict_views")
        defer { try? FileManager.default.removeItem(at: folder) }
        let file = folder.appendingPathComponent("model.pt")
        let data = try Data(contentsOf: file)
        try data.prefix(data.count - 40).write(to: file)
        let error = #expect(throws: CheckpointError.self) { try TorchModelWeights.torchStateDict(file) }
        #expect(error?.path == file.path && error?.problem.contains("truncated") == true, "\(String(describing: error))")
    }

    /// A `.distcp` file listed by `.metadata` but missing: the error names that file.
    @Test func missingShardFileIsNamed() throws {
        let folder = try copyOfFixture("dcp")
        defer { try? FileManager.default.removeItem(at: folder) }
        try FileManager.default.removeItem(at: folder.appendingPathComponent("__1_0.distcp"))
        let error = #expect(throws: CheckpointError.self) { try TorchModelWeights.distributedCheckpoint(folder) }
        #expect(error?.path.hasSuffix("__1_0.distcp") == true && error?.problem.contains(".metadata lists it") == true, "\(String(describing: error))")
    }

    /// A name the checkpoint does not hold, a range past the end, a buffer too short and a prefix with
    /// no entries: errors naming the tensor (or prefix), never a trap or zeros.
    @Test func namesWithoutDataAreRefused() throws {
        let weights = try TorchModelWeights.distributedCheckpoint(FormatFixture.input("dcp"))
        let missing = #expect(throws: CheckpointError.self) { try weights.floats("bert.pooler.dense.weight.missing") }
        #expect(missing?.problem.contains("no tensor 'bert.pooler.dense.weight.missing'") == true, "\(String(describing: missing))")
        #expect(throws: CheckpointError.self) { try weights.dtype("nope") }
        let count = try weights.shape("classifier.weight").reduce(1, *)
        let past = #expect(throws: CheckpointError.self) { try weights.floats("classifier.weight", range: 0..<(count + 1)) }
        #expect(past?.problem.contains("'classifier.weight'") == true, "\(String(describing: past))")
        var small = [Float](repeating: 0, count: 2)
        #expect(throws: CheckpointError.self) { try small.withUnsafeMutableBufferPointer { try weights.decode("classifier.weight", range: 0..<3, into: $0) } }
        let prefix = #expect(throws: CheckpointError.self) { try TorchModelWeights.distributedCheckpoint(FormatFixture.input("dcp"), prefix: "ema.") }
        #expect(prefix?.problem.contains("'ema.'") == true, "\(String(describing: prefix))")
    }

    /// A bundle whose entries hold no state dict (an optimizer file) is refused with the keys it has.
    @Test func optimizerFileIsNotAStateDict() throws {
        let file = try FormatFixture.input("fsdp_full").appendingPathComponent("optimizer.pt")
        let error = #expect(throws: CheckpointError.self) { try TorchModelWeights.torchStateDict(file) }
        #expect(error?.problem.contains("'state'") == true && error?.problem.contains("name the key") == true, "\(String(describing: error))")
    }
}
