import Foundation
import Squisher

/// Options and parsing shared by the checkpoint commands (inspect, merge, prune, mask, embed).
enum CheckpointInputs {
    /// Options selecting and scaling importances.
    static let importanceOptions: [ParsedArguments.Option] = [
        .init("importance-source", value: "optimizer|FILE,...", help: "Importances: 'optimizer' (each checkpoint's optimizer.pt, default), or one file per checkpoint: an importance .safetensors or an optimizer .pt."),
        .init("scaling", value: "raw|N=n|B=n", help: "Squisher scaling of the optimizer accumulator (default raw; UBGM needs the Fisher's scale, e.g. N=dataset size)."),
        .init("bias-correction", help: "Divide exp_avg_sq/square_avg by 1 - beta2^step (per parameter, beta2 of its param group)."),
        .init("mapping", value: "file.json", help: "Optimizer index -> parameter name map {\"0\": \"fc1.weight\", ...}; repeat once per checkpoint or give one for all."),
    ]

    static func scaling(_ arguments: ParsedArguments) throws(CommandError) -> SquisherScaling {
        guard let text = arguments.value("scaling"), text != "raw" else { return .none }
        let parts = text.split(separator: "=", maxSplits: 1).map(String.init)
        if parts.count == 2, let n = Int(parts[1]), n > 0 {
            if parts[0] == "N" { return .datasetSize(n) }
            if parts[0] == "B" { return .batchSize(n) }
        }
        throw CommandError("\(arguments.command): --scaling expects raw, N=<dataset size> or B=<batch size>, got '\(text)'")
    }

    static func open(_ path: String) throws -> CheckpointModel {
        try CheckpointModel(contentsOf: URL(fileURLWithPath: path))
    }

    /// One importance per checkpoint, from --importance-source and the Squisher options.
    static func importances(for models: [CheckpointModel], _ arguments: ParsedArguments) throws -> [CheckpointImportance] {
        let sources = try arguments.list("importance-source", default: ["optimizer"])
        let mappings = arguments.options["mapping"] ?? []
        guard sources == ["optimizer"] || sources.count == models.count else {
            throw CommandError("\(arguments.command): --importance-source needs 'optimizer' or one file per checkpoint (\(models.count)), got \(sources.count)")
        }
        guard mappings.count <= 1 || mappings.count == models.count else {
            throw CommandError("\(arguments.command): --mapping given \(mappings.count) times for \(models.count) checkpoints; give it once or once per checkpoint")
        }
        let scaling = try scaling(arguments)
        return try models.enumerated().map { i, model in
            let source = CheckpointImportanceSource(argument: sources.count == 1 ? sources[0] : sources[i])
            let mapping = mappings.isEmpty ? nil : URL(fileURLWithPath: mappings.count == 1 ? mappings[0] : mappings[i])
            let options = OptimizerImportanceOptions(scaling: scaling, biasCorrection: arguments.flag("bias-correction"), mappingFile: mapping)
            return try CheckpointImportance(source, model: model, options: options)
        }
    }

    /// Every file and folder the command reads: the checkpoints' files (see
    /// ``CheckpointModel/inputs``) and the files named by --importance-source, --base-importance
    /// and --mapping. Outputs may not overlap them.
    static func inputURLs(_ models: [CheckpointModel], _ arguments: ParsedArguments) throws(CommandError) -> [URL] {
        let sources = try arguments.list("importance-source", default: []).filter { $0 != "optimizer" }
        let base = [arguments.value("base-importance")].compactMap { $0 }.filter { $0 != "optimizer" && $0 != "none" }
        let files = (sources + base + (arguments.options["mapping"] ?? [])).map { URL(fileURLWithPath: $0) }
        return models.flatMap(\.inputs) + files
    }

    static func require(_ arguments: ParsedArguments, _ key: String) throws(CommandError) -> String {
        guard let value = arguments.value(key) else { throw CommandError("\(arguments.command): --\(key) is required (see --help)") }
        return value
    }

    static func maskDType(_ arguments: ParsedArguments) throws(CommandError) -> SafeTensorsDType {
        switch arguments.value("mask-dtype") ?? "u8" {
        case "u8", "U8": return .uint8
        case "f32", "F32": return .float32
        case let other: throw CommandError("\(arguments.command): --mask-dtype expects u8 or f32, got '\(other)'")
        }
    }

    static func sizeText(_ bytes: Int) -> String {
        let units = ["B", "KB", "MB", "GB", "TB"]
        var value = Double(bytes), unit = 0
        while value >= 1000, unit < units.count - 1 { value /= 1000; unit += 1 }
        return unit == 0 ? "\(bytes) B" : String(format: "%.1f %@", value, units[unit])
    }
}
