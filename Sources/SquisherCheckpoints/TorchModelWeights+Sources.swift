import Foundation

extension TorchModelWeights {
    /// Keys under which training scripts commonly nest a model state dict in a `torch.save` bundle;
    /// tried in this order when the saved object is not itself a state dict.
    public static let nestedStateDictKeys = ["model", "state_dict", "model_state_dict", "module"]

    /// The state dict saved by `torch.save` in `url` (a zip archive: `pytorch_model.bin`, `model.pt`,
    /// a `dcp_to_torch_save` file), memory-mapped.
    /// - Parameters:
    ///   - key: the entry of the saved dictionary that holds the state dict (`"model"`); nil to accept
    ///     the saved object itself when it is a state dict, or else the single one of
    ///     ``nestedStateDictKeys`` that holds one.
    ///   - limits: the unpickler's limits; a file of more than 2^30 elements (a 2 GB bfloat16 shard of a
    ///     large model) needs a larger `maxTensorScalars`: nothing is materialized when reading lazily.
    /// - Throws: ``CheckpointError`` naming the file: not a torch.save zip archive, a pickle outside the
    ///   allow-list, no state dict (naming the keys found), an entry that is not a tensor.
    public static func torchStateDict(_ url: URL, key: String? = nil, limits: PickleLimits = PickleLimits()) throws(CheckpointError) -> TorchModelWeights {
        let value = try TorchCheckpoint.load(url, limits: limits)
        guard let top = value.dictionaryValue else {
            throw CheckpointError(path: url.path, problem: "expected a state dict (a dict of names to tensors) but the file holds a \(value.kindName)")
        }
        var chosen = key
        if key == nil, !top.values.allSatisfy({ $0.tensorValue != nil }) {
            let nested = nestedStateDictKeys.filter { top[.string($0)]?.dictionaryValue?.values.contains { $0.tensorValue != nil } == true }
            guard nested.count == 1 else {
                let keys = top.keys.prefix(8).map { $0.stringValue.map { "'\($0)'" } ?? $0.kindName }.joined(separator: ", ")
                throw CheckpointError(path: url.path, problem: nested.isEmpty
                    ? "holds a dictionary (keys \(keys)) that is neither a state dict of tensors nor nests one under \(nestedStateDictKeys.map { "'\($0)'" }.joined(separator: ", ")); name the key that holds the model"
                    : "nests state dicts under several keys (\(nested.joined(separator: ", "))); name the one that holds the model")
            }
            chosen = nested[0]
        }
        let dictionary: PickleDictionary
        if let chosen {
            guard let nested = top[.string(chosen)]?.dictionaryValue else {
                throw CheckpointError(path: url.path, problem: "has no dictionary under key '\(chosen)' (found \(top[.string(chosen)]?.kindName ?? "no such key"))")
            }
            dictionary = nested
        } else {
            dictionary = top
        }
        let (names, tensors) = try namedTensors(dictionary, path: url.path, entryLabel: chosen.map { "['\($0)'] entry" } ?? "state dict entry")
        return TorchModelWeights(names: names, tensors: tensors, inputs: [url], source: .torchStateDict(key: chosen), tiedParameters: [:], path: url.path)
    }

    /// The names (in order) and tensors of a dictionary of `str` to tensor.
    static func namedTensors(_ dictionary: PickleDictionary, path: String, entryLabel: String) throws(CheckpointError) -> ([String], [String: TorchTensor]) {
        var names: [String] = []
        var tensors: [String: TorchTensor] = [:]
        for (key, item) in dictionary.entries {
            guard let name = key.stringValue else {
                throw CheckpointError(path: path, problem: "\(entryLabel) key of type \(key.kindName) is not a string")
            }
            guard let tensor = item.tensorValue else {
                throw CheckpointError(path: path, problem: "\(entryLabel) '\(name)' is a \(item.kindName), not a tensor")
            }
            names.append(name)
            tensors[name] = tensor
        }
        return (names, tensors)
    }

    /// The `module` of the DeepSpeed ZeRO checkpoint at `location` (`global_stepN/`, found by
    /// ``DeepSpeedCheckpoint/locate(in:)``): `mp_rank_00_model_states.pt`, the weights in the module's
    /// dtype (bfloat16 for a bf16 run), with `shared_params` as ``tiedParameters``.
    ///
    /// Inside a Hugging Face `Trainer` folder the same weights are also in `model.safetensors`, which
    /// callers should prefer. ZeRO-3 saves empty placeholders under `module` (the weights exist only as
    /// the ranks' fp32 partitions in the optimizer files), so it is refused.
    /// - Parameter limits: the unpickler's limits (see ``torchStateDict(_:key:limits:)``).
    /// - Throws: ``CheckpointError`` naming the file: no model-states file, no `module`, a ZeRO-3
    ///   placeholder, an entry that is not a tensor.
    public static func deepSpeed(_ location: DeepSpeedCheckpoint.Location, limits: PickleLimits = PickleLimits()) throws(CheckpointError) -> TorchModelWeights {
        let folder = location.folder
        let stage12 = folder.appendingPathComponent("mp_rank_00_model_states.pt")
        let stage3 = folder.appendingPathComponent("zero_pp_rank_0_mp_rank_00_model_states.pt")
        let manager = FileManager.default
        guard let url = [stage12, stage3].first(where: { manager.fileExists(atPath: $0.path) }) else {
            throw CheckpointError(path: folder.path, problem: "has no mp_rank_00_model_states.pt (nor zero_pp_rank_0_mp_rank_00_model_states.pt): no DeepSpeed model states to read the weights from")
        }
        let value = try TorchCheckpoint.load(url, limits: limits, allowList: .deepSpeed)
        guard let module = value["module"]?.dictionaryValue else {
            throw CheckpointError(path: url.path, problem: "has no 'module' dictionary of weights (found \(value["module"]?.kindName ?? "no 'module' key"))")
        }
        let (names, tensors) = try namedTensors(module, path: url.path, entryLabel: "module entry")
        let (groups, tied) = try DeepSpeedCheckpoint.parameterShapes(value, path: url.path)
        let stage = url == stage3 ? 3 : 2
        for parameter in groups.joined() where parameter.shape.reduce(1, *) > 0 {
            guard let tensor = tensors[parameter.name], tensor.shape == parameter.shape else {
                let found = tensors[parameter.name].map { "shape \($0.shape)" } ?? "no entry"
                let why = stage == 3 || tensors[parameter.name]?.count == 0
                    ? "ZeRO-3 saves empty placeholders under 'module' and keeps the weights only as the ranks' fp32 partitions in the optimizer files; consolidate them first with DeepSpeed's zero_to_fp32.py"
                    : "param_shapes and module disagree"
                throw CheckpointError(path: url.path, problem: "module['\(parameter.name)'] has \(found), but param_shapes gives \(parameter.shape): \(why)")
            }
        }
        return TorchModelWeights(names: names, tensors: tensors, inputs: [url], source: .deepSpeed(stage: stage, huggingFaceFolder: location.insideTrainerFolder),
                                 tiedParameters: tied, path: url.path)
    }

    /// The entries of the DCP folder `folder` whose keys start with `prefix` (`model.` as saved by
    /// `dcp.save({"model": get_model_state_dict(model), ...})`), named without the prefix, in
    /// `.metadata` order. Each tensor's chunks (FSDP2 shards dimension 0 across ranks) are byte ranges
    /// of the `__R_S.distcp` files, each a standalone `torch.save` archive; `decode` reads every row
    /// from the shard that holds it.
    /// - Throws: ``CheckpointError`` naming the file: unreadable `.metadata`, a missing `.distcp` file,
    ///   chunks that do not tile a tensor, a byte range outside its file, an entry that is not a tensor,
    ///   no entry with the prefix.
    public static func distributedCheckpoint(_ folder: URL, prefix: String = "model.") throws(CheckpointError) -> TorchModelWeights {
        let metadataURL = folder.appendingPathComponent(".metadata")
        let (entries, storage) = try DistributedCheckpoint.metadata(folder: folder)
        var reader = DistributedCheckpoint.ChunkReader(folder: folder, storage: storage, metadataPath: metadataURL.path)
        var names: [String] = []
        var tensors: [String: TorchTensor] = [:]
        for (keyValue, entry) in entries.entries {
            guard let key = keyValue.stringValue, key.hasPrefix(prefix) else { continue }
            let name = String(key.dropFirst(prefix.count))
            guard entry["chunks"] != nil else {
                throw CheckpointError(path: metadataURL.path, problem: "entry '\(key)' is a pickled object, not a tensor; model weights must be tensors")
            }
            guard let tensor = try reader.value(key: key, entry: entry).tensorValue else {
                throw CheckpointError(path: metadataURL.path, problem: "entry '\(key)' did not load as a tensor")
            }
            names.append(name)
            tensors[name] = tensor
        }
        guard !names.isEmpty else {
            throw CheckpointError(path: metadataURL.path, problem: "has no entry whose key starts with '\(prefix)' (\(entries.count) entries, e.g. \(entries.keys.prefix(3).compactMap(\.stringValue).joined(separator: ", ")))")
        }
        let files = reader.filesRead.sorted().map { folder.appendingPathComponent($0) }
        return TorchModelWeights(names: names, tensors: tensors, inputs: [metadataURL] + files,
                                 source: .distributedCheckpoint(prefix: prefix, files: files.count), tiedParameters: [:], path: folder.path)
    }
}
