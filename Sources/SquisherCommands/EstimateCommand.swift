import Foundation
import Squisher

/// `squisher estimate`: an estimator for a model described by a JSON spec (PyTorch layer names),
/// with weights from safetensors and data from CSV, IDX or safetensors; writes the importance as
/// safetensors keyed by parameter name. Makes the estimators usable on models trained in PyTorch.
enum EstimateCommand: Subcommand {
    static let name = "estimate"
    static let summary = "Compute a Fisher diagonal for a model (JSON spec + safetensors weights) on CSV/IDX/safetensors data."
    static let positionalUsage = ""
    static let discussion = """
        Rebuilds an nn.Sequential from --model (see ModelSpec: {"layers": [{"type": "Linear", "in_features": 64, \
        "out_features": 32}, ...]}), loads --weights (a state_dict as safetensors), reads --data and writes the \
        estimate to --output (sum reduction over the samples: no 1/N). With a Hugging Face folder as --model \
        (GPT2LMHeadModel, BertForSequenceClassification), --data is a .safetensors file with input_ids [N, T], \
        attention_mask, token_type_ids and labels (a causal LM's labels are its input ids, shifted inside, -100 \
        ignored; a sample's loss is the sum over its tokens), and no --weights. Data: a .csv with the label in the last \
        column (divide features by --input-scale), an IDX image file with --labels, or a .safetensors file with \
        tensors 'inputs' and 'labels' (keys set by --inputs-key/--labels-key).
        """
    static let estimators = ["fisher", "true-fisher", "mc", "joint"]
    static let options: [ParsedArguments.Option] = [
        .init("model", value: "spec.json|folder", help: "Model description, or a Hugging Face folder (config.json + model.safetensors: GPT-2 LM, BERT classifier) (required)."),
        .init("weights", value: "file.safetensors", help: "Parameters by PyTorch name (required)."),
        .init("data", value: "file", help: "Data: .csv, .idx/.ubyte images, or .safetensors (required)."),
        .init("labels", value: "file", help: "IDX labels file (with IDX images)."),
        .init("inputs-key", value: "name", help: "Inputs tensor in a safetensors data file (default inputs)."),
        .init("labels-key", value: "name", help: "Labels tensor in a safetensors data file (default labels)."),
        .init("input-shape", value: "d1,d2,...", help: "Reshape each sample (e.g. 1,8,8 for a CNN on digits)."),
        .init("input-scale", value: "x", help: "Divide CSV features by this (default 1; 16 for digits pixels)."),
        .init("classes", value: "n", help: "Number of classes (default: largest label + 1)."),
        .init("estimator", value: "name", help: "One of \(estimators.joined(separator: ", ")) (default fisher)."),
        .init("samples", value: "S", help: "Label samples per data point for mc (default 1)."),
        .init("seed", value: "n", help: "Seed for mc label sampling (default 0)."),
        .init("batch-size", value: "n", help: "Samples per pass (default 128; for joint, the B inside the square)."),
        .init("output", value: "file.safetensors", help: "Where to write the importance (required)."),
        .init("json", help: "Print a JSON summary."),
    ]

    static func run(_ arguments: ParsedArguments, output: CommandOutput) throws -> Int32 {
        if let model = arguments.value("model"), HuggingFaceEstimate.isModelFolder(model) {
            return try HuggingFaceEstimate.run(arguments, output: output)
        }
        _ = try arguments.requirePositional([])
        func required(_ key: String) throws -> String {
            guard let value = arguments.value(key) else { throw CommandError("squisher estimate: --\(key) is required (see --help)") }
            return value
        }
        let modelPath = try required("model"), weightsPath = try required("weights"), dataPath = try required("data"), outputPath = try required("output")
        let estimatorName = arguments.value("estimator") ?? "fisher"
        guard estimators.contains(estimatorName) else {
            throw CommandError("squisher estimate: --estimator got '\(estimatorName)'; expected one of: \(estimators.joined(separator: ", "))")
        }
        let batchSize = try arguments.integer("batch-size", default: 128, range: 1...1_000_000)
        let samples = try arguments.integer("samples", default: 1, range: 1...10_000)
        let seed = UInt64(try arguments.integer("seed", default: 0, range: 0...Int.max))
        let outputURL = URL(fileURLWithPath: outputPath)
        let inputs = [modelPath, weightsPath, dataPath].map { URL(fileURLWithPath: $0) } + (arguments.value("labels").map { [URL(fileURLWithPath: $0)] } ?? [])
        try OutputPaths.refuseOverlap(output: outputURL, inputs: inputs)
        let weights = try SafeTensorsFile(contentsOf: URL(fileURLWithPath: weightsPath))
        let weightCount = weights.names.reduce(0) { $0 + (weights.entries[$1]?.elementCount ?? 0) }
        let model = try ModelSpec.load(from: URL(fileURLWithPath: modelPath), maximumParameters: weightCount)
        do { try model.load(try weights.allTensors()) } catch {
            throw CommandError("squisher estimate: \(weightsPath) does not fit \(modelPath): \(error)", exitCode: 1, cause: error)
        }
        var data = try loadData(dataPath, arguments: arguments)
        if let shape = arguments.value("input-shape") {
            let dims = shape.split(separator: ",").compactMap { Int(String($0).trimmingWhitespace()) }
            let product = dims.reduce(Optional(1)) { partial, d in partial.flatMap { let (p, o) = $0.multipliedReportingOverflow(by: d); return o ? nil : p } }
            guard dims.count == shape.split(separator: ",").count, dims.allSatisfy({ $0 > 0 }), let product,
                  product == data.sampleShape.reduce(1, *) else {
                throw CommandError("squisher estimate: --input-shape expects positive integers whose product is the \(data.sampleShape.reduce(1, *)) values of a sample (shape \(data.sampleShape)), like 1,8,8; got '\(shape)'")
            }
            do { data = try Dataset(inputs: data.inputs.reshaped([data.count] + dims), labels: data.labels, classCount: data.classCount) } catch {
                throw CommandError("squisher estimate: --input-shape \(shape) does not fit samples of shape \(data.sampleShape): \(error)", cause: error)
            }
        }
        data = try matchingModelOutputs(data, model: model, dataPath: dataPath, arguments: arguments)
        let estimator: any SensitivityEstimator = switch estimatorName {
        case "fisher": EmpiricalFisher(batchSize: batchSize)
        case "true-fisher": TrueFisherExact(batchSize: batchSize)
        case "mc": TrueFisherMonteCarlo(samples: samples, seed: seed, batchSize: batchSize)
        default: JointEmpiricalFisher(batchSize: batchSize)
        }
        output.progress.message("estimate: \(estimator.name) over \(data.count) samples...")
        let importance = try estimator.estimate(model: model, data: data)
        try importance.save(to: outputURL)
        if arguments.flag("json") {
            let object: [String: Any] = [
                "estimator": importance.estimator, "samples": data.count, "output": outputPath, "seconds": importance.cost.seconds,
                "tensors": importance.summary().map { ["name": $0.name, "shape": $0.shape, "sum": $0.sum, "max": Double($0.maximum)] },
            ]
            output.print(String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self))
        } else {
            output.print("\(importance.estimator) over \(data.count) samples (sum reduction) written to \(outputPath) in \(String(format: "%.3f", importance.cost.seconds)) s")
            for tensor in importance.summary() {
                output.print("  \(tensor.name) \(tensor.shape): sum \(String(format: "%.6g", tensor.sum)), max \(String(format: "%.6g", tensor.maximum))")
            }
        }
        return 0
    }

    static func loadData(_ path: String, arguments: ParsedArguments) throws -> Dataset {
        let url = URL(fileURLWithPath: path)
        let lower = path.lowercased()
        let inputs: Tensor, labels: [Int]
        if lower.hasSuffix(".csv") {
            let table = try CSVLoader.load(url)
            let scale = try arguments.double("input-scale", default: 1, range: 1e-30...1e30)
            inputs = table.features.map { $0 / Float(scale) }
            labels = table.labels
        } else if lower.hasSuffix(".safetensors") {
            let file = try SafeTensorsFile(contentsOf: url)
            inputs = try file.tensor(arguments.value("inputs-key") ?? "inputs")
            labels = try file.integers(arguments.value("labels-key") ?? "labels")
        } else {
            guard let labelsPath = arguments.value("labels") else {
                throw CommandError("squisher estimate: \(path) is read as IDX images and needs --labels <IDX labels file> (or use .csv/.safetensors data)")
            }
            let dataset = try MNIST.load(images: url, labels: URL(fileURLWithPath: labelsPath))
            inputs = dataset.inputs
            labels = dataset.labels
        }
        if let bad = labels.firstIndex(where: { $0 < 0 || $0 >= 1_000_000 }) {
            throw CommandError("squisher estimate: \(path): label of sample \(bad) is \(labels[bad]); expected a class index in 0..<1000000", exitCode: 1)
        }
        // Checked against the model's outputs once the model has seen a sample.
        let classes = try arguments.integer("classes", default: (labels.max() ?? 0) + 1, range: 1...1_000_000)
        do { return try Dataset(inputs: inputs, labels: labels, classCount: classes) } catch {
            throw CommandError("squisher estimate: \(path): \(error)", exitCode: 1, cause: error)
        }
    }

    /// The data with `classCount` set to the model's number of outputs (a forward pass of the first
    /// sample tells it), after checking that every label and `--classes` fit: a label past the
    /// model's outputs would otherwise index into the next row of the logits.
    static func matchingModelOutputs(_ data: Dataset, model: Sequential, dataPath: String, arguments: ParsedArguments) throws -> Dataset {
        guard data.count > 0 else { throw CommandError("squisher estimate: \(dataPath) holds no samples", exitCode: 1) }
        let sampleSize = data.sampleShape.reduce(1, *)
        let first = try Tensor(shape: [1] + data.sampleShape, scalars: Array(data.inputs.scalars[0..<sampleSize]))
        let logits: Tensor
        do { logits = try model.forward(first, mode: .evaluation) } catch {
            throw CommandError("squisher estimate: samples of shape \(data.sampleShape) from \(dataPath) do not fit the model: \(error)", exitCode: 1, cause: error)
        }
        guard logits.shape.count == 2, logits.shape[0] == 1 else {
            throw CommandError("squisher estimate: the model maps a sample to shape \(logits.shape.dropFirst()); expected one logit per class", exitCode: 1)
        }
        let outputs = logits.shape[1]
        if arguments.value("classes") != nil, data.classCount != outputs {
            throw CommandError("squisher estimate: --classes \(data.classCount) but the model has \(outputs) outputs")
        }
        if let bad = data.labels.firstIndex(where: { $0 >= outputs }) {
            throw CommandError("squisher estimate: \(dataPath): label of sample \(bad) is \(data.labels[bad]), but the model has \(outputs) outputs (labels 0..<\(outputs))", exitCode: 1)
        }
        do { return try Dataset(inputs: data.inputs, labels: data.labels, classCount: outputs) } catch {
            throw CommandError("squisher estimate: \(dataPath): \(error)", exitCode: 1, cause: error)
        }
    }
}
