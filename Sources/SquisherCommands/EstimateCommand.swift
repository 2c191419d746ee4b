import Foundation
import Squisher

/// `squisher estimate` (placeholder until the model-spec loader lands).
enum EstimateCommand: Subcommand {
    static let name = "estimate"
    static let summary = "Compute an estimator for a model (JSON spec + safetensors weights) on CSV/IDX data."
    static let positionalUsage = ""
    static let discussion = "Not yet available."
    static let options: [ParsedArguments.Option] = []
    static func run(_ arguments: ParsedArguments, output: CommandOutput) throws -> Int32 {
        throw CommandError("squisher estimate: not implemented yet", exitCode: 1)
    }
}

