import Foundation
import Squisher

/// `squisher embed`: Task2Vec distances between checkpoints' importances (thin over ``CheckpointEmbedding``).
enum EmbedCommand: Subcommand {
    static let name = "embed"
    static let summary = "Task2Vec embeddings of checkpoints' importances and their distance matrix."
    static let positionalUsage = "CKPT CKPT..."
    static let discussion = """
        Embeds each checkpoint's importance (its optimizer state: the Squisher, or an importance file): each tensor \
        reshaped to (output units, -1) and averaged per unit (or per tensor), each embedding divided by its sum, then \
        d(a, b) = 1 - cos(a/(a+b+1e-8), b/(a+b+1e-8)). All checkpoints must share the tensors' names and shapes; \
        --skip leaves out the classifier head.
        """
    static let options: [ParsedArguments.Option] = [
        .init("grouping", value: "per-unit|per-tensor", help: "Embedding coordinates (default per-unit)."),
        .init("skip", value: "name,...", help: "Tensors left out (the classifier head)."),
        .init("no-normalize", help: "Do not divide each embedding by its sum."),
    ] + CheckpointInputs.importanceOptions + [.init("json", help: "Print the distance matrix as JSON.")]

    static func run(_ arguments: ParsedArguments, output: CommandOutput) throws -> Int32 {
        let command = arguments.command
        let paths = arguments.positional
        guard !paths.isEmpty else { throw CommandError("\(command): expected at least one checkpoint (CKPT...)") }
        let grouping: Task2Vec.Grouping
        switch arguments.value("grouping") ?? "per-unit" {
        case "per-unit": grouping = .perOutputUnit
        case "per-tensor": grouping = .perTensor
        case let other: throw CommandError("\(command): --grouping got '\(other)'; expected per-unit or per-tensor")
        }
        let models = try paths.map(CheckpointInputs.open)
        let skipped = try arguments.list("skip", default: [])
        if let unknown = skipped.first(where: { !models[0].names.contains($0) }) {
            throw CommandError("\(command): --skip names '\(unknown)', which is not a tensor of \(models[0].path)")
        }
        let importances = try CheckpointInputs.importances(for: models, arguments)
        let rule = Task2Vec(grouping: grouping, skippedParameters: Set(skipped), normalize: !arguments.flag("no-normalize"))
        let result = try CheckpointEmbedding(task2vec: rule).embed(names: models[0].names, importances: importances)
        if arguments.flag("json") {
            let object: [String: Any] = ["checkpoints": paths, "distances": result.distances, "tensors": result.tensors,
                                         "without_importance": result.withoutImportance, "dimensions": result.embeddings[0].count]
            output.print(String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self))
        } else {
            output.print("Task2Vec distances (\(result.embeddings[0].count) coordinates from \(result.tensors.count) tensors):")
            output.print(MarkdownTable(header: ["checkpoint"] + paths.indices.map { "\($0)" },
                                       rows: paths.indices.map { i in ["\(i): \(paths[i])"] + result.distances[i].map { fmt($0, 4) } }).render())
            if !result.withoutImportance.isEmpty { output.print("  left out (no importance in some checkpoint): \(result.withoutImportance.joined(separator: ", "))") }
        }
        return 0
    }
}
