import Foundation
import Squisher

/// `squisher prune`: Fisher pruning of a checkpoint (thin over ``CheckpointPruning``).
enum PruneCommand: Subcommand {
    static let name = "prune"
    static let summary = "Prune a checkpoint by saliency theta^2 F / 2; writes the pruned model and its mask."
    static let positionalUsage = "CKPT"
    static let discussion = """
        Sets the fraction --sparsity of the weights with the smallest saliency theta^2 F / 2 to zero (Optimal Brain \
        Damage with the Fisher; F from the optimizer state: the Squisher, or an importance file). Scope: one global \
        ranking after dividing each tensor's scores by their L2 norm (default; an unnormalized global ranking collapses \
        transformers, whose tensors' Fisher scales differ by orders of magnitude), one global ranking, or the same sparsity per tensor. \
        Only tensors of rank >= 2 are pruned unless --all-tensors; tensors without importance stay dense. The selection is \
        exact and needs only two histogram passes, not the scores in memory. Writes DIR with the pruned model (same layout \
        and dtypes) and mask.safetensors (1 = kept).
        """
    static let options: [ParsedArguments.Option] = [
        .init("sparsity", value: "S", help: "Fraction of the pruned tensors' entries set to zero, in [0, 1) (required)."),
        .init("scope", value: "global|global-normalized|per-tensor", help: "Ranking scope (default global-normalized)."),
        .init("all-tensors", help: "Also prune rank-0/1 tensors (biases, norms)."),
        .init("output", value: "DIR", help: "Output folder (required; must not exist or be empty)."),
        .init("mask-dtype", value: "u8|f32", help: "Element type of mask.safetensors (default u8)."),
    ] + CheckpointInputs.importanceOptions + [.init("json", help: "Print a JSON summary.")]

    static func run(_ arguments: ParsedArguments, output: CommandOutput) throws -> Int32 {
        let command = arguments.command
        let path = try arguments.requirePositional(["CKPT"])[0]
        guard let sparsityText = arguments.value("sparsity") else { throw CommandError("\(command): --sparsity is required (see --help)") }
        guard let sparsity = Double(sparsityText), sparsity.isFinite, sparsity >= 0, sparsity < 1 else {
            throw CommandError("\(command): --sparsity must be a number in [0, 1), got '\(sparsityText)'")
        }
        let scope: FisherPruning.Scope
        switch arguments.value("scope") ?? "global-normalized" {
        case "global": scope = .global
        case "global-normalized": scope = .globalNormalized
        case "per-tensor": scope = .perTensor
        case let other: throw CommandError("\(command): --scope got '\(other)'; expected global, global-normalized or per-tensor")
        }
        let outputPath = try CheckpointInputs.require(arguments, "output")
        let maskDType = try CheckpointInputs.maskDType(arguments)
        let model = try CheckpointInputs.open(path)
        let folder = try CheckpointOutputFolder(destination: URL(fileURLWithPath: outputPath), inputs: try CheckpointInputs.inputURLs([model], arguments))
        let importance = try CheckpointInputs.importances(for: [model], arguments)[0]
        let report = try CheckpointPruning(pruning: FisherPruning(scope: scope, weightsOnly: !arguments.flag("all-tensors")), sparsity: sparsity, maskDType: maskDType)
            .prune(model: model, importance: importance, output: folder)
        if arguments.flag("json") {
            let object: [String: Any] = [
                "output": outputPath, "pruned_tensors": report.prunedTensors, "without_importance": report.withoutImportance,
                "kept": report.keptCount, "total": report.totalCount, "sparsity": report.realizedSparsity, "scope": scope.rawValue,
            ]
            output.print(String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self))
        } else {
            output.print("pruned \(report.prunedTensors.count) tensors (\(scope.rawValue)): kept \(report.keptCount) of \(report.totalCount) entries, sparsity \(fmt(report.realizedSparsity, 4)) -> \(outputPath) (mask: mask.safetensors)")
            if !report.withoutImportance.isEmpty { output.print("  left dense (no importance): \(report.withoutImportance.joined(separator: ", "))") }
        }
        return 0
    }
}
