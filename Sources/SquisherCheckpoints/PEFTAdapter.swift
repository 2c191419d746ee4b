/// Names of a PEFT (LoRA) adapter's optimizer state, matched to `adapter_model.safetensors` keys.
///
/// The live model's parameters carry the adapter name (`...query.lora_A.default.weight`,
/// `...classifier.modules_to_save.default.weight`); PEFT's `get_peft_model_state_dict` drops
/// `modules_to_save.` and `.<adapter>` to write the file's keys (`...query.lora_A.weight`,
/// `...classifier.weight`). Stored names (`param_names`) are converted the same way; without them,
/// the optimizer's indices follow the adapter's registration order (``HuggingFaceParameterOrder``
/// over the file's keys, family guessed from the paths), checked against every shape.
public enum PEFTAdapter {
    /// The file key of a live parameter name: PEFT's own rewriting for adapter `adapter`.
    public static func fileKey(of name: String, adapter: String = "default") -> String {
        name.replacingOccurrences(of: "modules_to_save.", with: "").replacingOccurrences(of: ".\(adapter)", with: "")
    }

    /// The file key of every optimizer index and how it was found.
    /// - Throws: ``CheckpointError`` when a name is not in the adapter file, shapes disagree, or the
    ///   order is ambiguous.
    static func names(
        _ state: TorchOptimizerState, weights: [ModelTensorShape], explicit: [Int: String]?, path: String
    ) throws(CheckpointError) -> (names: [Int: String], source: ParameterNameSource) {
        if let explicit {
            let resolved = try OptimizerParameterMapping.resolve(state, modelOrder: weights, explicit: explicit, path: path)
            return (resolved.names, .explicitMapping)
        }
        let adapter = "default"
        if state.groups.contains(where: { $0.parameterNames != nil }) {
            var names = OptimizerCheckpoint.storedNames(state)
            for (index, name) in names { names[index] = fileKey(of: name, adapter: adapter) }
            let resolved = try OptimizerParameterMapping.resolve(state, modelOrder: weights, explicit: names, path: path)
            return (resolved.names, .peftAdapter(adapterName: adapter))
        }
        let order = HuggingFaceParameterOrder(config: [:], weights: weights)
        return (try order.names(for: state, path: path), .peftAdapter(adapterName: adapter))
    }
}
