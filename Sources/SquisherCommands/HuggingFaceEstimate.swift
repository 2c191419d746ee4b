import Foundation
import Squisher

/// `squisher estimate --model <Hugging Face folder>`: the estimate path for a folder with
/// `config.json` and `model.safetensors` (GPT2LMHeadModel, BertForSequenceClassification) and
/// token data (`input_ids`, `attention_mask`, `token_type_ids`, `labels` in a safetensors file).
/// The importance is keyed by the model's Hugging Face parameter names.
enum HuggingFaceEstimate {
    /// Whether `path` is a model folder (a directory with a `config.json`) rather than a JSON spec.
    static func isModelFolder(_ path: String) -> Bool {
        var isDirectory: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && isDirectory.boolValue
            && FileManager.default.fileExists(atPath: (path as NSString).appendingPathComponent("config.json"))
    }

    static func run(_ arguments: ParsedArguments, output: CommandOutput) throws -> Int32 {
        _ = try arguments.requirePositional([])
        func required(_ key: String) throws -> String {
            guard let value = arguments.value(key) else { throw CommandError("squisher estimate: --\(key) is required (see --help)") }
            return value
        }
        let folderPath = try required("model"), dataPath = try required("data"), outputPath = try required("output")
        if arguments.value("weights") != nil {
            throw CommandError("squisher estimate: --weights is not used with a model folder (\(folderPath) holds model.safetensors)")
        }
        let estimatorName = arguments.value("estimator") ?? "fisher"
        guard EstimateCommand.estimators.contains(estimatorName) else {
            throw CommandError("squisher estimate: --estimator got '\(estimatorName)'; expected one of: \(EstimateCommand.estimators.joined(separator: ", "))")
        }
        let batchSize = try arguments.integer("batch-size", default: 8, range: 1...1_000_000)
        let samples = try arguments.integer("samples", default: 1, range: 1...10_000)
        let seed = UInt64(try arguments.integer("seed", default: 0, range: 0...Int.max))
        let folder: HuggingFaceModelFolder
        let data: TensorDataset
        do {
            folder = try HuggingFaceModelFolder(folder: URL(fileURLWithPath: folderPath))
            data = try folder.tokens(from: URL(fileURLWithPath: dataPath))
        } catch {
            throw CommandError("squisher estimate: \(error)", exitCode: 1)
        }
        let (model, loss) = (folder.model, folder.loss)
        // joint: the whole data set inside the square unless --batch-size sets B.
        let jointBatch: Int? = arguments.value("batch-size") == nil ? nil : batchSize
        let estimate: () throws -> Importance = switch estimatorName {
        case "fisher": { try EmpiricalFisher(batchSize: batchSize, loss: loss).estimate(model: model, data: data) }
        case "true-fisher": { try TrueFisherExact(batchSize: batchSize, loss: loss).estimate(model: model, data: data) }
        case "mc": { try TrueFisherMonteCarlo(samples: samples, seed: seed, batchSize: batchSize, loss: loss).estimate(model: model, data: data) }
        default: { try JointEmpiricalFisher(batchSize: jointBatch, loss: loss).estimate(model: model, data: data) }
        }
        output.progress.message("estimate: \(estimatorName) of \(folder.architecture) over \(data.count) sequences...")
        var importance = try estimate()
        importance.conventions["model"] = folder.architecture
        try importance.save(to: URL(fileURLWithPath: outputPath))
        output.print("\(importance.estimator) of \(folder.architecture) over \(data.count) sequences (sum reduction; "
            + "\(importance.conventions["sample loss"] ?? "")) written to \(outputPath) in \(String(format: "%.3f", importance.cost.seconds)) s")
        for tensor in importance.summary() {
            output.print("  \(tensor.name) \(tensor.shape): sum \(String(format: "%.6g", tensor.sum)), max \(String(format: "%.6g", tensor.maximum))")
        }
        return 0
    }
}
