import Foundation
import Squisher

/// `squisher mask`: the FISH mask of a checkpoint (thin over ``CheckpointFishMask``).
enum MaskCommand: Subcommand {
    static let name = "mask"
    static let summary = "FISH mask: keep the fraction K of parameters with the largest importance; writes a 0/1 safetensors file."
    static let positionalUsage = "CKPT"
    static let discussion = """
        One exact top-k of the importances over all non-classifier floating-point tensors, \
        k = K * (all entries) - (classifier entries); --classifier tensors are all ones, tensors without importance \
        (frozen) all zeros. Importances from the optimizer state (the Squisher: note a pre-trained model has none; \
        use the state after a short dense warm-up) or an importance file. The mask file is written atomically.
        """
    static let options: [ParsedArguments.Option] = [
        .init("keep", value: "K", help: "Fraction of all parameters kept trainable, in (0, 1] (required)."),
        .init("output", value: "mask.safetensors", help: "Mask file to write (required)."),
        .init("classifier", value: "name,...", help: "Tensors always kept (the classifier head)."),
        .init("mask-dtype", value: "u8|f32", help: "Element type (default u8)."),
    ] + CheckpointInputs.importanceOptions + [.init("json", help: "Print a JSON summary.")]

    static func run(_ arguments: ParsedArguments, output: CommandOutput) throws -> Int32 {
        let command = arguments.command
        let path = try arguments.requirePositional(["CKPT"])[0]
        let keepText = try CheckpointInputs.require(arguments, "keep")
        guard let keep = Double(keepText), keep.isFinite, keep > 0, keep <= 1 else {
            throw CommandError("\(command): --keep must be a number in (0, 1], got '\(keepText)'")
        }
        let outputPath = try CheckpointInputs.require(arguments, "output")
        let maskDType = try CheckpointInputs.maskDType(arguments)
        let model = try CheckpointInputs.open(path)
        try OutputPaths.refuseOverlap(output: URL(fileURLWithPath: outputPath), inputs: try CheckpointInputs.inputURLs([model], arguments))
        let importance = try CheckpointInputs.importances(for: [model], arguments)[0]
        let classifier = Set(try arguments.list("classifier", default: []))
        let report = try CheckpointFishMask(fishMask: FishMask(keepFraction: keep, classifierParameters: classifier), maskDType: maskDType)
            .write(model: model, importance: importance, to: URL(fileURLWithPath: outputPath))
        if arguments.flag("json") {
            let object: [String: Any] = ["output": outputPath, "kept": report.keptCount, "total": report.totalCount, "without_importance": report.withoutImportance]
            output.print(String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self))
        } else {
            output.print("mask keeps \(report.keptCount) of \(report.totalCount) entries (\(fmt(Double(report.keptCount) / Double(max(report.totalCount, 1)), 4))) -> \(outputPath)")
            if !report.withoutImportance.isEmpty { output.print("  all zero (no importance): \(report.withoutImportance.joined(separator: ", "))") }
        }
        return 0
    }
}
