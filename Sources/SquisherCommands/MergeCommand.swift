import Foundation
import Squisher

/// `squisher merge`: Fisher merging, UBGM or averaging of checkpoints, tensor by tensor
/// (thin over ``CheckpointMerge``).
enum MergeCommand: Subcommand {
    static let name = "merge"
    static let summary = "Merge checkpoints (Fisher merging, UBGM, averaging) tensor by tensor, in bounded memory."
    static let positionalUsage = "CKPT CKPT..."
    static let discussion = """
        Each CKPT is a checkpoint folder (model.safetensors or model.safetensors.index.json + shards, \
        optimizer.pt, optionally model.pt / pytorch_model.bin) or a model file (.safetensors, .index.json, .pt, .bin). \
        Fisher merging: theta = sum_i w_i F_i theta_i / sum_i w_i F_i with F_i floored at --relative-floor times its mean (or at --epsilon); UBGM: \
        theta = theta0 + sum_t a_t (F_t + F0 + d0)(theta_t - theta0) / (sum_t a_t F_t + F0 + d0) into --base. \
        Importances come from each checkpoint's optimizer state (Adam/AdamW exp_avg_sq, RMSprop square_avg, \
        Adagrad sum: the Squisher) or from importance files. The output folder repeats the first checkpoint's \
        layout and dtypes (sharded like the input, with its index and non-tensor files), is written under a \
        temporary name and renamed when complete; inputs are never modified.
        """
    static let options: [ParsedArguments.Option] = [
        .init("method", value: "fisher|ubgm|average", help: "Merging rule (default fisher)."),
        .init("output", value: "DIR", help: "Output folder (required; must not exist or be empty)."),
        .init("weights", value: "w1,w2,...", help: "Per-checkpoint weights lambda_i (alpha_t for UBGM); default all 1."),
        .init("base", value: "CKPT", help: "Base model theta0 for UBGM (required with --method ubgm)."),
        .init("base-importance", value: "none|optimizer|FILE", help: "F0 for UBGM (default none: only --prior-precision)."),
        .init("relative-floor", value: "k", help: "Fisher merging floor on each model's importance: k times its mean (default 1e-6; scale-free, so raw v, N*v and a summed Fisher merge alike)."),
        .init("epsilon", value: "x", help: "Fisher merging: an absolute floor instead (Matena & Raffel's code: 1e-6; on raw v of a converged transformer it replaces most entries)."),
        .init("normalize", help: "Fisher merging: divide each model's importance by its global L2 norm first."),
        .init("prior-precision", value: "x", help: "UBGM delta0 (default 1e-12)."),
    ] + CheckpointInputs.importanceOptions + [
        .init("json", help: "Print a JSON summary."),
    ]

    static func run(_ arguments: ParsedArguments, output: CommandOutput) throws -> Int32 {
        let command = arguments.command
        let paths = arguments.positional
        guard !paths.isEmpty else { throw CommandError("\(command): expected at least one checkpoint (CKPT...)") }
        let outputPath = try CheckpointInputs.require(arguments, "output")
        let methodName = arguments.value("method") ?? "fisher"
        let weights: [Double]?
        if let list = arguments.options["weights"] {
            let items = list.flatMap { $0.split(separator: ",") }.map { Double(String($0).trimmingWhitespace()) }
            guard items.allSatisfy({ $0 != nil && $0!.isFinite && $0! >= 0 }), items.count == paths.count else {
                throw CommandError("\(command): --weights expects \(paths.count) comma-separated non-negative numbers, got '\(list.joined(separator: ","))'")
            }
            weights = items.map { $0! }
            let sum = weights!.reduce(0, +)
            guard sum.isFinite, sum > 0 else {
                throw CommandError("\(command): --weights must have a positive, finite sum (got \(sum)); scale them down, only their ratios matter")
            }
        } else { weights = nil }
        let method: CheckpointMerge.Method
        switch methodName {
        case "fisher":
            let floor: FisherMerging.Floor
            if arguments.value("epsilon") != nil {
                guard arguments.value("relative-floor") == nil else { throw CommandError("\(command): give --epsilon or --relative-floor, not both") }
                floor = .absolute(Float(try arguments.double("epsilon", default: 1e-6, range: 1e-30...1e30)))
            } else {
                floor = .relativeToMean(Float(try arguments.double("relative-floor", default: 1e-6, range: 1e-30...1)))
            }
            method = .fisher(FisherMerging(floor: floor, normalizePerModel: arguments.flag("normalize")))
        case "ubgm":
            guard arguments.value("base") != nil else { throw CommandError("\(command): --method ubgm needs --base CKPT") }
            method = .ubgm(UBGMMerging(priorPrecision: Float(try arguments.double("prior-precision", default: 1e-12, range: 0...1e30))))
        case "average":
            method = .average
        default:
            throw CommandError("\(command): --method got '\(methodName)'; expected fisher, ubgm or average")
        }
        let outputURL = URL(fileURLWithPath: outputPath)
        let models = try paths.map(CheckpointInputs.open)
        let base = try arguments.value("base").map(CheckpointInputs.open)
        let folder = try CheckpointOutputFolder(destination: outputURL, inputs: try CheckpointInputs.inputURLs(models + (base.map { [$0] } ?? []), arguments))
        var importances: [CheckpointImportance?] = Array(repeating: nil, count: models.count)
        var baseImportance: CheckpointImportance? = nil
        if methodName != "average" {
            importances = try CheckpointInputs.importances(for: models, arguments)
            if let base, let source = arguments.value("base-importance"), source != "none" {
                let options = OptimizerImportanceOptions(scaling: try CheckpointInputs.scaling(arguments), biasCorrection: arguments.flag("bias-correction"))
                baseImportance = try CheckpointImportance(CheckpointImportanceSource(argument: source), model: base, options: options)
            }
        }
        let start = Date()
        let report = try CheckpointMerge(method: method, weights: weights).merge(
            models: models, importances: importances, base: base, baseImportance: baseImportance, output: folder)
        let seconds = Date().timeIntervalSince(start)
        if arguments.flag("json") {
            let object: [String: Any] = [
                "method": methodName, "output": outputPath, "tensors": report.tensorCount, "elements": report.elementCount,
                "bytes_written": report.bytesWritten, "averaged_tensors": report.averagedTensors, "copied_tensors": report.copiedTensors,
                "tied_tensors": report.tiedTensors, "floors": report.floors.map(Double.init), "floored_fractions": report.flooredFractions,
                "tensors_without_base": report.tensorsWithoutBase, "base_only_tensors": report.baseOnlyTensors,
                "seconds": seconds, "importances": importances.compactMap { $0?.conventions },
            ]
            output.print(String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self))
        } else {
            output.print("merged \(models.count) checkpoint(s) with \(methodName): \(report.tensorCount) tensors, \(report.elementCount) elements, \(CheckpointInputs.sizeText(report.bytesWritten)) in \(String(format: "%.2f", seconds)) s -> \(outputPath)")
            for (i, importance) in importances.enumerated() {
                guard let importance else { continue }
                let conventions = importance.conventions.filter { $0.key != "no_importance" }.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
                output.print("  importance \(i): \(importance.path) [\(conventions)]")
                if !importance.parametersWithoutImportance.isEmpty {
                    output.print("    no importance (frozen or never updated): \(importance.parametersWithoutImportance.joined(separator: ", "))")
                }
            }
            for (i, fraction) in report.flooredFractions.enumerated() where fraction > 0.5 {
                output.print("  warning: the floor (\(report.floors[i])) replaced \(fmt(100 * fraction, 1))% of model \(i)'s importance entries: the merge is close to a plain average; lower the floor")
            }
            if !report.tiedTensors.isEmpty {
                output.print("  tied (merged with the partner's importance, kept equal): \(report.tiedTensors.sorted { $0.key < $1.key }.map { "\($0.key) = \($0.value)" }.joined(separator: ", "))")
            }
            if !report.tensorsWithoutBase.isEmpty { output.print("  not in the base (merged from the task models only): \(report.tensorsWithoutBase.joined(separator: ", "))") }
            if !report.baseOnlyTensors.isEmpty { output.print("  base tensors no task model has (not written): \(report.baseOnlyTensors.joined(separator: ", "))") }
            if !report.averagedTensors.isEmpty { output.print("  plainly averaged (some model has no importance): \(report.averagedTensors.joined(separator: ", "))") }
            if !report.copiedTensors.isEmpty { output.print("  copied from the first model (integer tensors): \(report.copiedTensors.joined(separator: ", "))") }
        }
        return 0
    }
}
