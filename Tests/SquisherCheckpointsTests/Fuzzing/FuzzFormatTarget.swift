import Foundation
import SquisherCheckpoints

/// A checkpoint-format parser exercised end to end by the fuzzer (`Fuzz/CheckpointFuzzer`, which
/// compiles this file too) and by the corpus replay test, so both run exactly the same code.
///
/// An input is one selector byte and a payload. The selector picks a real fixture (``variants``,
/// modulo their count) from `Resources/formats`; the payload replaces one file of a copy of that
/// fixture folder (the other files are symbolic links to the fixture): a whole file (`config.json`,
/// DCP `.metadata`) or only the `data.pkl` pickle of a `torch.save` archive, whose storages stay the
/// fixture's (``StoredZipArchive``). The folder is then opened with ``OptimizerCheckpoint/open(_:mapping:)``
/// and every second moment is materialized (Adafactor's reconstruction, bitsandbytes' dequantization).
/// Every input must end in a value or a thrown ``CheckpointError``.
enum FuzzFormatTarget: String, CaseIterable, Sendable {
    /// DeepSpeed ZeRO `*_model_states.pt` pickles (`param_shapes`, `shared_params`).
    case deepSpeedModel = "deepspeed-model"
    /// DeepSpeed ZeRO `*_optim_states.pt` pickles (flat partitions, paddings, partition counts).
    case deepSpeedOptimizer = "deepspeed-optim"
    /// `torch.distributed.checkpoint` `.metadata` pickles, read beside the fixture's `.distcp` files.
    case dcpMetadata = "dcp-metadata"
    /// bitsandbytes `optimizer.pt` pickles (nested `__bnb_optimizer_quant_state__`, 8-bit codes).
    case bitsAndBytes = "bnb"
    /// transformers Adafactor `optimizer.pt` pickles (factored row/column states).
    case adafactor
    /// Hugging Face `config.json` (architecture, model type, tied embeddings) for the Trainer's parameter order.
    case huggingFaceConfig = "hf-config"

    /// One fixture folder and the file in it that the payload replaces.
    struct Variant: Sendable {
        /// The folder copied, relative to `Resources/formats`.
        var folder: String
        /// The replaced file, relative to `folder`.
        var file: String
        /// Whether the payload is the `data.pkl` of the file (a `torch.save` archive) or the whole file.
        var pickleInArchive: Bool
    }

    /// The fixtures an input's selector byte chooses from; the seeds' selector bytes index this list.
    var variants: [Variant] {
        switch self {
        case .deepSpeedModel:
            [Variant(folder: "deepspeed_zero2/checkpoint", file: "global_step4/mp_rank_00_model_states.pt", pickleInArchive: true),
             Variant(folder: "deepspeed_zero3_ws2/checkpoint", file: "global_step4/zero_pp_rank_0_mp_rank_00_model_states.pt", pickleInArchive: true),
             Variant(folder: "deepspeed_zero2_bf16/checkpoint", file: "global_step4/mp_rank_00_model_states.pt", pickleInArchive: true),
             Variant(folder: "hf_trainer_deepspeed/checkpoint-6", file: "global_step6/mp_rank_00_model_states.pt", pickleInArchive: true)]
        case .deepSpeedOptimizer:
            [Variant(folder: "deepspeed_zero1/checkpoint", file: "global_step4/zero_pp_rank_0_mp_rank_00_optim_states.pt", pickleInArchive: true),
             Variant(folder: "deepspeed_zero2_bf16/checkpoint", file: "global_step4/bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt", pickleInArchive: true),
             Variant(folder: "deepspeed_zero2_ws2/checkpoint", file: "global_step4/zero_pp_rank_1_mp_rank_00_optim_states.pt", pickleInArchive: true),
             Variant(folder: "deepspeed_zero3/checkpoint", file: "global_step4/zero_pp_rank_0_mp_rank_00_optim_states.pt", pickleInArchive: true),
             Variant(folder: "deepspeed_zero3_ws2/checkpoint", file: "global_step4/zero_pp_rank_1_mp_rank_00_optim_states.pt", pickleInArchive: true)]
        case .dcpMetadata:
            [Variant(folder: "dcp/checkpoint", file: ".metadata", pickleInArchive: false)]
        case .bitsAndBytes:
            [Variant(folder: "bnb_adamw8bit/checkpoint-6", file: "optimizer.pt", pickleInArchive: true),
             Variant(folder: "bnb_adamw32bit/checkpoint-6", file: "optimizer.pt", pickleInArchive: true),
             Variant(folder: "bnb_lion8bit/checkpoint-6", file: "optimizer.pt", pickleInArchive: true),
             Variant(folder: "bnb_paged_adamw8bit/checkpoint-6", file: "optimizer.pt", pickleInArchive: true)]
        case .adafactor:
            [Variant(folder: "adafactor/checkpoint-6", file: "optimizer.pt", pickleInArchive: true)]
        case .huggingFaceConfig:
            [Variant(folder: "hf_trainer_bert/checkpoint-6", file: "config.json", pickleInArchive: false),
             Variant(folder: "hf_trainer_gpt2/checkpoint-6", file: "config.json", pickleInArchive: false),
             Variant(folder: "adafactor/checkpoint-6", file: "config.json", pickleInArchive: false)]
        }
    }
}

/// Scratch copies of fixture folders in which fuzz inputs replace one file; one per process or test.
/// Not thread-safe: one input at a time.
final class FuzzWorkspace {
    /// `Resources/formats`, holding the real fixtures.
    let formats: URL
    /// The scratch folder (deleted by ``remove()``).
    let root: URL
    private var prepared: [String: URL] = [:]
    private var archives: [String: StoredZipArchive] = [:]

    /// A workspace under the temporary directory for the fixtures in `formats`.
    init(formats: URL) {
        self.formats = formats
        root = FileManager.default.temporaryDirectory.appendingPathComponent("squisher-fuzz-\(ProcessInfo.processInfo.processIdentifier)-\(UUID().uuidString)")
    }

    /// Deletes the scratch folder.
    func remove() { try? FileManager.default.removeItem(at: root) }

    /// Copies every fixture of `target` and lays out its archives, so that running inputs allocates
    /// nothing that outlives them (the fuzzer's leak check counts what one input leaves behind).
    func prepare(_ target: FuzzFormatTarget) throws {
        for variant in target.variants {
            _ = try copy(variant.folder)
            if variant.pickleInArchive { _ = try archive(variant) }
        }
    }

    /// Runs one input (selector byte + payload) through `target`: the checkpoint's second moments, or
    /// the ``CheckpointError`` that refused it. An empty input is refused before any parsing.
    func run(_ input: Data, target: FuzzFormatTarget) throws -> Result<[String], CheckpointError> {
        guard let selector = input.first else { return .failure(CheckpointError(path: "input", problem: "empty")) }
        let variant = target.variants[Int(selector) % target.variants.count]
        let folder = try copy(variant.folder)
        let file = folder.appendingPathComponent(variant.file)
        let payload = Data(input.dropFirst())
        if variant.pickleInArchive {
            try archive(variant).replacingPickle(with: payload).write(to: file, options: .atomic)
        } else {
            try payload.write(to: file, options: .atomic)
        }
        do throws(CheckpointError) {
            let checkpoint = try OptimizerCheckpoint.open(folder)
            return .success(try checkpoint.moments.allValues().names)
        } catch {
            return .failure(error)
        }
    }

    /// The fixture archive of `variant`, laid out once.
    private func archive(_ variant: FuzzFormatTarget.Variant) throws -> StoredZipArchive {
        let key = variant.folder + "/" + variant.file
        if let archive = archives[key] { return archive }
        let archive = try StoredZipArchive(formats.appendingPathComponent(key))
        archives[key] = archive
        return archive
    }

    /// A scratch copy of the fixture folder `relative`: the same tree, files as symbolic links.
    private func copy(_ relative: String) throws -> URL {
        if let folder = prepared[relative] { return folder }
        let source = formats.appendingPathComponent(relative)
        let destination = root.appendingPathComponent(relative)
        let manager = FileManager.default
        try manager.createDirectory(at: destination, withIntermediateDirectories: true)
        for path in try manager.subpathsOfDirectory(atPath: source.path) {
            var isDirectory: ObjCBool = false
            _ = manager.fileExists(atPath: source.appendingPathComponent(path).path, isDirectory: &isDirectory)
            let target = destination.appendingPathComponent(path)
            if isDirectory.boolValue {
                try manager.createDirectory(at: target, withIntermediateDirectories: true)
            } else {
                try manager.createSymbolicLink(at: target, withDestinationURL: source.appendingPathComponent(path))
            }
        }
        prepared[relative] = destination
        return destination
    }
}
