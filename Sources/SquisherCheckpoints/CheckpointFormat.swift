/// The on-disk layout an optimizer checkpoint was read from (see ``OptimizerCheckpoint/open(_:mapping:)``).
public enum CheckpointFormat: Sendable, Hashable, CustomStringConvertible {
    /// A plain `torch.save(optimizer.state_dict())` file (`optimizer.pt`), names from the file, a
    /// mapping, or `model.pt`'s registration order.
    case torchOptimizer
    /// A Hugging Face `Trainer` folder: `model.safetensors` (or shards), `config.json`, `optimizer.pt`.
    case huggingFaceTrainer
    /// A PEFT LoRA adapter folder: `adapter_model.safetensors`, `adapter_config.json`, `optimizer.pt`.
    case peftLoRA
    /// DeepSpeed ZeRO (`global_stepN/` with `mp_rank_00_model_states.pt` and per-rank optimizer
    /// partitions); `bf16` for `bf16_zero_pp_rank_*` files; `huggingFaceFolder` when found inside a
    /// `Trainer` `checkpoint-N/` (its `latest` file naming the tag).
    case deepSpeedZeRO(stage: Int, worldSize: Int, bf16: Bool, huggingFaceFolder: Bool)
    /// An FSDP full optimizer state dict (`torch.save` of `get_optimizer_state_dict(...,
    /// full_state_dict=True)`): `state` keyed by parameter names.
    case fsdpFullStateDict
    /// A `torch.distributed.checkpoint` folder: `.metadata` and `__R_S.distcp` files.
    case distributedCheckpoint(files: Int)
    /// The output of `dcp_to_torch_save`: one `torch.save` of `{"model": ..., "optim": ...}`.
    case dcpToTorchSave

    /// A short human-readable name (`"DeepSpeed ZeRO-2 checkpoint (world size 2, fp32)"`).
    public var description: String {
        switch self {
        case .torchOptimizer: "torch.save optimizer state"
        case .huggingFaceTrainer: "Hugging Face Trainer checkpoint"
        case .peftLoRA: "PEFT LoRA adapter checkpoint"
        case .deepSpeedZeRO(let stage, let worldSize, let bf16, let hf):
            "DeepSpeed ZeRO-\(stage) checkpoint (world size \(worldSize)\(bf16 ? ", bf16" : ", fp32")\(hf ? ", inside a Hugging Face Trainer folder" : ""))"
        case .fsdpFullStateDict: "FSDP full optimizer state dict"
        case .distributedCheckpoint(let files): "torch.distributed.checkpoint folder (\(files) .distcp file(s))"
        case .dcpToTorchSave: "dcp_to_torch_save output"
        }
    }
}

/// How the parameter name of each optimizer state was recovered.
public enum ParameterNameSource: Sendable, Hashable, CustomStringConvertible {
    /// An explicit index → name mapping supplied by the user.
    case explicitMapping
    /// `param_names` stored in the optimizer's param groups (`AdamW(model.named_parameters())`).
    case storedNames
    /// The state is keyed by parameter names (FSDP full state dict, `dcp_to_torch_save`, DCP keys).
    case stateKeys
    /// The registration order of a `model.pt`/`pytorch_model.bin` state dict beside the optimizer.
    case modelOrder
    /// The Hugging Face `Trainer`'s grouping (decay, then no-decay) over the parameter registration
    /// order of `architecture` (`config.json`), checked against every shape and group size.
    case huggingFaceTrainerOrder(architecture: String, family: HuggingFaceParameterOrder.Family)
    /// PEFT: the adapter's parameter order or stored names, with the adapter name (`.default`) dropped
    /// to match `adapter_model.safetensors` keys.
    case peftAdapter(adapterName: String)
    /// DeepSpeed's `param_shapes` (name → shape per group, in flattening order) in the model states file.
    case deepSpeedParamShapes

    /// A one-word label (`explicitMapping`, `storedNames`, `stateKeys`, `modelOrder`,
    /// `huggingFaceTrainerOrder`, `peftAdapter`, `deepSpeedParamShapes`) for metadata.
    public var label: String {
        switch self {
        case .explicitMapping: "explicitMapping"
        case .storedNames: "storedNames"
        case .stateKeys: "stateKeys"
        case .modelOrder: "modelOrder"
        case .huggingFaceTrainerOrder: "huggingFaceTrainerOrder"
        case .peftAdapter: "peftAdapter"
        case .deepSpeedParamShapes: "deepSpeedParamShapes"
        }
    }

    /// A sentence fragment for `inspect` ("names: recovered from ...").
    public var description: String {
        switch self {
        case .explicitMapping: "an explicit mapping file"
        case .storedNames: "param_names stored in the optimizer's param groups"
        case .stateKeys: "the state's keys, which are parameter names"
        case .modelOrder: "the registration order of model.pt beside the optimizer state"
        case .huggingFaceTrainerOrder(let architecture, let family):
            "the Trainer's decay/no-decay grouping over \(architecture)'s parameter registration order (\(family.rawValue) rule; shapes and group sizes checked)"
        case .peftAdapter(let adapter): "the PEFT adapter's parameter names with the adapter name '\(adapter)' dropped"
        case .deepSpeedParamShapes: "DeepSpeed's param_shapes in the model states file"
        }
    }
}

/// What was read as each parameter's second moment (the squared-gradient EMA the Squisher recycles).
public enum SecondMomentSource: String, Sendable, Hashable, CustomStringConvertible {
    /// Adam/AdamW/NAdam/RAdam `exp_avg_sq` (`v_t = β₂ v_{t−1} + (1−β₂) g_t²`, uncorrected).
    case expAvgSq = "exp_avg_sq"
    /// RMSprop `square_avg` (the same EMA with `alpha`).
    case squareAvg = "square_avg"
    /// Adagrad `sum` (`Σ_t g_t²`).
    case sum = "sum"
    /// Adafactor: `exp_avg_sq_row ⊗ exp_avg_sq_col / mean(exp_avg_sq_row)` for rank ≥ 2 (the square
    /// of the inverse of transformers' `_approx_sq_grad`), `exp_avg_sq` for rank 1.
    case adafactorFactored = "adafactor exp_avg_sq_row x exp_avg_sq_col / mean(row)"
    /// bitsandbytes `state2`, dequantized blockwise (`qmap2[state2[i]] · absmax2[i / 256]`) when 8-bit,
    /// as stored when 32-bit.
    case bitsAndBytesState2 = "bitsandbytes state2 (dequantized)"

    /// What was read, e.g. `exp_avg_sq`.
    public var description: String { rawValue }
}
