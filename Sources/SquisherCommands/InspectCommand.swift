import Foundation
import Squisher

/// `squisher inspect`: what a checkpoint folder or file holds.
enum InspectCommand: Subcommand {
    static let name = "inspect"
    static let summary = "List a checkpoint's tensors (dtype, shape, size) and its optimizer state (kind, steps, groups, mapping)."
    static let positionalUsage = "PATH"
    static let discussion = """
        PATH is a checkpoint folder, a .safetensors file, a model.safetensors.index.json, or a torch.save file \
        (optimizer.pt, pytorch_model.bin, model.pt; read with a restricted unpickler that never runs code). For an \
        optimizer state: its kind, step counts, each param group's hyperparameters, and whether its indices map to \
        the model's parameter names (and how), as the merge/prune/mask/embed commands would map them. Then the \
        optimizer-state format read (Hugging Face Trainer, PEFT LoRA, DeepSpeed ZeRO, FSDP/DCP, Adafactor, \
        bitsandbytes, torch), how the parameter names were recovered, the second moment used, steps and tied weights; \
        a DeepSpeed global_stepN/ or DCP folder without model weights is described from its optimizer state alone.
        """
    static let options: [ParsedArguments.Option] = [
        .init("mapping", value: "file.json", help: "Optimizer index -> parameter name map to check."),
    ]

    static func run(_ arguments: ParsedArguments, output: CommandOutput) throws -> Int32 {
        let path = try arguments.requirePositional(["PATH"])[0]
        let url = URL(fileURLWithPath: path)
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw CommandError("\(arguments.command): \(path): no such file or folder", exitCode: 1)
        }
        let ext = url.pathExtension
        if !isDirectory.boolValue, ["pt", "pth", "bin"].contains(ext) {
            // An optimizer state, or else a state dict.
            let value = try TorchCheckpoint.load(url)
            if value["state"] != nil, value["param_groups"] != nil {
                try describeOptimizer(url, model: nil, arguments: arguments, output: output)
                describeFormat(url, arguments: arguments, output: output)
                return 0
            }
        }
        let model: CheckpointModel
        do { model = try CheckpointModel(contentsOf: url) } catch {
            // An optimizer state without a model file (a DeepSpeed global_stepN/, a DCP folder).
            guard let checkpoint = try? OptimizerCheckpoint.open(url) else { throw error }
            describe(checkpoint, output: output)
            return 0
        }
        describeModel(model, output: output)
        if let optimizerURL = model.optimizerURL {
            output.print("")
            try describeOptimizer(optimizerURL, model: model, arguments: arguments, output: output)
        }
        describeFormat(url, arguments: arguments, output: output)
        return 0
    }

    /// Which optimizer-state format `url` holds and how the names were recovered, or why not.
    static func describeFormat(_ url: URL, arguments: ParsedArguments, output: CommandOutput) {
        output.print("")
        do {
            let mapping = try arguments.value("mapping").map { try OptimizerParameterMapping.readMappingFile(URL(fileURLWithPath: $0)) }
            describe(try OptimizerCheckpoint.open(url, mapping: mapping), output: output)
        } catch {
            output.print("optimizer state: not usable: \(error)")
        }
    }

    /// The format, name source, second moment, steps, tied pairs and parameters without state.
    static func describe(_ checkpoint: OptimizerCheckpoint, output: CommandOutput) {
        let moments = checkpoint.moments
        let steps = Set(moments.steps.values).sorted()
        output.print("format: \(checkpoint.format) at \(checkpoint.path)")
        output.print("names: recovered from \(checkpoint.nameSource)")
        output.print("second moment: \(checkpoint.optimizer.rawValue) \(moments.source) of \(moments.names.count) parameters (\(moments.elementCount) elements); step \(steps.map(String.init).joined(separator: ", "))")
        if !checkpoint.tiedParameters.isEmpty {
            output.print("tied: \(checkpoint.tiedParameters.sorted { $0.key < $1.key }.map { "\($0.key) is \($0.value)" }.joined(separator: ", ")) (one state for each pair)")
        }
        if !moments.parametersWithoutState.isEmpty {
            output.print("without state (frozen or never updated): \(moments.parametersWithoutState.joined(separator: ", "))")
        }
    }

    static func describeModel(_ model: CheckpointModel, output: CommandOutput) {
        let layout: String
        switch model.layout {
        case .single(let fileName): layout = "one safetensors file \(fileName)"
        case .sharded(let index, let shards): layout = "\(shards.count) shards listed by \(index)"
        case .torchStateDict(let fileName): layout = "PyTorch state dict \(fileName)"
        case .deepSpeed(let tag): layout = "DeepSpeed ZeRO module of \(tag)/mp_rank_00_model_states.pt"
        case .distributedCheckpoint: layout = "torch.distributed.checkpoint model.* entries"
        }
        var rows: [[String]] = []
        var totalBytes = 0, totalElements = 0
        var dtypes: [String: Int] = [:]
        for name in model.names {
            guard let (dtype, shape) = try? model.entry(name) else { continue }
            let count = shape.reduce(1, *)
            totalBytes += count * dtype.byteCount
            totalElements += count
            dtypes[dtype.rawValue, default: 0] += 1
            rows.append([name, dtype.rawValue, "\(shape)", "\(count)", CheckpointInputs.sizeText(count * dtype.byteCount)])
        }
        output.print("model: \(model.path) (\(layout))")
        output.print("\(model.names.count) tensors, \(totalElements) elements, \(CheckpointInputs.sizeText(totalBytes)); dtypes: \(dtypes.sorted { $0.key < $1.key }.map { "\($0.key) x\($0.value)" }.joined(separator: ", "))")
        output.print(MarkdownTable(header: ["tensor", "dtype", "shape", "elements", "size"], rows: rows).render())
    }

    static func describeOptimizer(_ url: URL, model: CheckpointModel?, arguments: ParsedArguments, output: CommandOutput) throws {
        let state = try TorchOptimizerState(contentsOf: url)
        let withState = state.states.count
        let steps = Set(state.states.values.compactMap(\.step))
        output.print("optimizer: \(url.path)")
        output.print("kind \(state.kind.rawValue); \(state.parameterIndices.count) parameters in \(state.groups.count) param group(s), \(withState) with state; step \(steps.sorted().map { String(format: "%g", $0) }.joined(separator: ", "))")
        let buffers = Set(state.states.values.flatMap(\.bufferNames)).sorted()
        output.print("buffers: \(buffers.joined(separator: ", "))")
        for (number, group) in state.groups.enumerated() {
            let hyper = group.hyperparameters.entries.compactMap { key, value -> String? in
                guard let key = key.stringValue else { return nil }
                switch value {
                case .int(let i): return "\(key)=\(i)"
                case .float(let d): return "\(key)=\(d)"
                case .bool(let b): return "\(key)=\(b)"
                case .none: return "\(key)=None"
                case .string(let s): return "\(key)=\(s)"
                case .tuple(let items), .list(let items): return "\(key)=(\(items.map { $0.doubleValue.map { "\($0)" } ?? $0.kindName }.joined(separator: ", ")))"
                default: return "\(key)=<\(value.kindName)>"
                }
            }
            output.print("  group \(number): params \(group.parameterIndices)\(group.parameterNames.map { " names \($0)" } ?? ""); \(hyper.joined(separator: " "))")
        }
        let without = state.parameterIndices.filter { state.states[$0] == nil }
        if !without.isEmpty { output.print("  no state (frozen or never updated): indices \(without)") }
        let modelHere = model ?? (try? CheckpointModel(contentsOf: url.deletingLastPathComponent()))
        guard let modelHere else {
            output.print("mapping: no model beside the optimizer state to map to")
            return
        }
        let importance: CheckpointImportance
        do {
            let options = OptimizerImportanceOptions(mappingFile: arguments.value("mapping").map { URL(fileURLWithPath: $0) })
            importance = try CheckpointImportance(.optimizerFile(url), model: modelHere, options: options)
        } catch {
            output.print("mapping: does NOT map to \(modelHere.path) without help: \(error)")
            return
        }
        do {
            try importance.validate()
            output.print("mapping: maps to \(modelHere.path) by \(importance.conventions["mapping"] ?? "?"); importance \(importance.conventions["source"] ?? "?")")
            if !importance.parametersWithoutImportance.isEmpty {
                output.print("  model tensors without importance: \(importance.parametersWithoutImportance.joined(separator: ", "))")
            }
        } catch {
            // The indices map; the values are what is wrong (NaN, negative, ...).
            output.print("mapping: maps to \(modelHere.path); but the importance is invalid: \(error)")
        }
    }
}
