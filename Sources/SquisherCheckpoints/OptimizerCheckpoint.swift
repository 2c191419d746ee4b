import Foundation
import SquisherTensor

/// The optimizer state of a training checkpoint, in any common layout, as second moments keyed by
/// the model's parameter names: one type for every format, for the applications layer.
///
/// ```swift
/// let checkpoint = try OptimizerCheckpoint.open(URL(fileURLWithPath: "checkpoint-500"))
/// print(checkpoint.format, checkpoint.nameSource)       // how it was read
/// let v = try checkpoint.moments.value(of: "bert.encoder.layer.0.attention.self.query.weight")
/// ```
///
/// Formats (``CheckpointFormat``) and how the names are recovered (``ParameterNameSource``):
/// - Hugging Face `Trainer` folders (`optimizer.pt` without names): the Trainer's decay/no-decay
///   grouping over the architecture's registration order (``HuggingFaceParameterOrder``);
/// - PEFT LoRA adapters: stored or ordered names, the adapter name dropped (``PEFTAdapter``);
/// - DeepSpeed ZeRO 1/2/3 (fp32, bf16, any world size, also inside a Trainer folder): `param_shapes`
///   (``DeepSpeedCheckpoint``);
/// - FSDP full state dicts, DCP folders and `dcp_to_torch_save` output: names are the keys
///   (``DistributedCheckpoint``);
/// - plain `optimizer.pt`: `param_names`, an explicit mapping, or `model.pt`'s order.
///
/// Second moments (``SecondMomentSource``): Adam/AdamW/NAdam/RAdam `exp_avg_sq`, RMSprop
/// `square_avg`, Adagrad `sum`, Adafactor's rank-1 reconstruction (``AdafactorState``),
/// bitsandbytes `state2` dequantized (``BitsAndBytesState``). Adamax, SGD, Lion and anything without
/// a second moment are refused with the reason. Pickles are read by ``RestrictedUnpickler`` with the
/// format's own ``PickleAllowList``; nothing is executed.
public struct OptimizerCheckpoint: Sendable {
    /// The layout that was read.
    public var format: CheckpointFormat
    /// The optimizer family.
    public var optimizer: TorchOptimizerState.Kind
    /// How the parameter names were recovered.
    public var nameSource: ParameterNameSource
    /// The second moments by parameter name (float32, parameter shapes), steps, EMA decays and the
    /// parameters without state.
    public var moments: SecondMoments
    /// Tied aliases: alias → the parameter that holds the state (GPT-2's `lm_head.weight` →
    /// `transformer.wte.weight`). One optimizer state serves the pair.
    public var tiedParameters: [String: String]
    /// The file or folder the state was read from (for messages).
    public var path: String

    /// Creates a value from its parts.
    public init(format: CheckpointFormat, optimizer: TorchOptimizerState.Kind, nameSource: ParameterNameSource, moments: SecondMoments, tiedParameters: [String: String], path: String) {
        self.format = format
        self.optimizer = optimizer
        self.nameSource = nameSource
        self.moments = moments
        self.tiedParameters = tiedParameters
        self.path = path
    }

    /// Opens a checkpoint folder or optimizer file and reads its second moments by parameter name.
    /// - Parameters:
    ///   - url: a checkpoint folder (`checkpoint-N/`, a DeepSpeed `global_stepN/` or its parent, a
    ///     DCP folder), an optimizer file (`optimizer.pt`, an FSDP full state dict, a
    ///     `dcp_to_torch_save` file) or a DCP `.metadata` file.
    ///   - mapping: an explicit optimizer index → parameter name map; takes precedence for formats
    ///     with unnamed indices.
    /// - Throws: ``CheckpointError`` naming the file and why: no recognisable state, a hostile or
    ///   malformed file, names that cannot be recovered without guessing, no second moment (with the
    ///   optimizer's reason), an invalid step.
    public static func open(_ url: URL, mapping: [Int: String]? = nil) throws(CheckpointError) -> OptimizerCheckpoint {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) else {
            throw CheckpointError(path: url.path, problem: "no such file or folder")
        }
        guard isDirectory.boolValue else {
            if url.lastPathComponent == ".metadata" { return try DistributedCheckpoint.read(folder: url.deletingLastPathComponent()) }
            return try openTorchFile(url, folder: url.deletingLastPathComponent(), mapping: mapping)
        }
        let entries = Set((try? FileManager.default.contentsOfDirectory(atPath: url.path)) ?? [])
        if entries.contains(".metadata") { return try DistributedCheckpoint.read(folder: url) }
        if entries.contains("optimizer.pt") {
            return try openTorchFile(url.appendingPathComponent("optimizer.pt"), folder: url, mapping: mapping)
        }
        if let deepSpeed = try DeepSpeedCheckpoint.locate(in: url) { return try DeepSpeedCheckpoint.read(deepSpeed) }
        let notOptimizer: Set<String> = ["scheduler.pt", "training_args.bin", "pytorch_model.bin", "model.pt", "rng_state.pth"]
        let candidates = entries.filter { ["pt", "pth", "bin"].contains(($0 as NSString).pathExtension) && !notOptimizer.contains($0) && !$0.hasPrefix("rng_state") }
        if candidates.count == 1, let only = candidates.first {
            return try openTorchFile(url.appendingPathComponent(only), folder: url, mapping: mapping)
        }
        throw CheckpointError(path: url.path, problem: "no optimizer.pt or other optimizer state found: expected optimizer.pt (torch, Hugging Face Trainer, PEFT), a DeepSpeed global_stepN/ folder or 'latest' file, a torch.distributed.checkpoint .metadata file, or a single optimizer .pt file\(candidates.isEmpty ? "" : " (found several: \(candidates.sorted().joined(separator: ", ")))")")
    }

    /// Reads a `torch.save` file holding an optimizer state dict (or `{"model", "optim"}`).
    static func openTorchFile(_ file: URL, folder: URL, mapping: [Int: String]?) throws(CheckpointError) -> OptimizerCheckpoint {
        let name = file.lastPathComponent
        if name.hasSuffix("_optim_states.pt") || name.hasSuffix("_model_states.pt") {  // one file of a DeepSpeed tag folder
            guard let deepSpeed = try DeepSpeedCheckpoint.locate(in: folder) else {
                throw CheckpointError(path: file.path, problem: "a DeepSpeed states file, but its folder holds no *_optim_states.pt partitions")
            }
            return try DeepSpeedCheckpoint.read(deepSpeed)
        }
        let value = try TorchCheckpoint.load(file)
        if let optim = value["optim"], value["model"] != nil {  // dcp_to_torch_save output
            let state = try TorchOptimizerState(optim, path: file.path + " ['optim']")
            guard state.keyedByName else {
                throw CheckpointError(path: file.path, problem: "['optim'] lists parameter indices, not names; a dcp_to_torch_save file keys its optimizer state by parameter name")
            }
            return try fromState(state, names: storedNames(state), format: .dcpToTorchSave, source: .stateKeys, tied: [:], path: file.path)
        }
        let state = try TorchOptimizerState(value, path: file.path)
        if state.keyedByName {
            return try fromState(state, names: storedNames(state), format: .fsdpFullStateDict, source: .stateKeys, tied: [:], path: file.path)
        }
        let weights = try ModelWeightsListing.find(in: folder)
        let config = try ModelWeightsListing.json("config.json", in: folder)
        if let weights, weights.isAdapter {
            let adapter = try PEFTAdapter.names(state, weights: weights.weights, explicit: mapping, path: file.path)
            return try fromState(state, names: adapter.names, format: .peftLoRA, source: adapter.source, tied: [:], path: file.path)
        }
        let trainerFiles = ["trainer_state.json", "training_args.bin"].contains { FileManager.default.fileExists(atPath: folder.appendingPathComponent($0).path) }
        let format: CheckpointFormat = trainerFiles ? .huggingFaceTrainer : .torchOptimizer
        if mapping != nil || state.groups.contains(where: { $0.parameterNames != nil }) {
            let resolved = try OptimizerParameterMapping.resolve(state, modelOrder: weights?.weights, explicit: mapping, path: file.path)
            return try fromState(state, names: resolved.names, format: format, source: resolved.source == .explicitMapping ? .explicitMapping : .storedNames, tied: [:], path: file.path)
        }
        guard let weights else {
            throw CheckpointError(path: file.path, problem: "the optimizer state stores no parameter names and the folder holds no model weights (model.safetensors, model.pt) to recover them from; pass a mapping file {\"0\": \"fc1.weight\", ...}")
        }
        if weights.isRegistrationOrder {
            let resolved = try OptimizerParameterMapping.resolve(state, modelOrder: weights.weights, path: file.path)
            return try fromState(state, names: resolved.names, format: format, source: .modelOrder, tied: [:], path: file.path)
        }
        let order = HuggingFaceParameterOrder(config: config ?? [:], weights: weights.weights)
        let names = try order.names(for: state, path: file.path)
        return try fromState(state, names: names, format: format, source: .huggingFaceTrainerOrder(architecture: order.architecture, family: order.family),
                             tied: order.tiedParameters, path: file.path)
    }

    /// Names stored in the groups (`param_names`, or the keys of a name-keyed state).
    static func storedNames(_ state: TorchOptimizerState) -> [Int: String] {
        var names: [Int: String] = [:]
        for group in state.groups {
            for (index, name) in zip(group.parameterIndices, group.parameterNames ?? []) { names[index] = name }
        }
        return names
    }

    static func fromState(
        _ state: TorchOptimizerState, names: [Int: String], format: CheckpointFormat, source: ParameterNameSource, tied: [String: String], path: String
    ) throws(CheckpointError) -> OptimizerCheckpoint {
        let moments = try SecondMoments(state, names: names, path: path)
        return OptimizerCheckpoint(format: format, optimizer: state.kind, nameSource: source, moments: moments, tiedParameters: tied, path: path)
    }
}
