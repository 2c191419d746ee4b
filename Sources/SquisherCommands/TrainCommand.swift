import Foundation
import Squisher

/// `squisher train`: trains an MLP on the bundled digits with Adam and reports per-epoch loss and
/// accuracy, optionally saving the model, the optimizer state and the Squisher.
enum TrainCommand: Subcommand {
    static let name = "train"
    static let summary = "Train an MLP on the bundled digits with Adam (optionally save model, state, Squisher)."
    static let positionalUsage = ""
    static let discussion = """
        Trains a 64-<hidden>-10 ReLU MLP with Adam and mean-reduced cross-entropy on 80% of the bundled \
        digits (seeded split) and reports test accuracy on the held-out 20%.
        """
    static let options: [ParsedArguments.Option] = [
        .init("epochs", value: "n", help: "Passes over the training data (default 30)."),
        .init("batch-size", value: "n", help: "Mini-batch size (default 32)."),
        .init("learning-rate", value: "x", help: "Adam step size (default 0.001)."),
        .init("hidden", value: "n", help: "Hidden units (default 128)."),
        .init("seed", value: "n", help: "Seed of initialization, split and shuffling (default 0)."),
        .init("save-model", value: "path", help: "Write the trained parameters as safetensors."),
        .init("save-optimizer", value: "path", help: "Write Adam's state (exp_avg, exp_avg_sq, step) as safetensors."),
        .init("save-squisher", value: "path", help: "Write the Squisher N*v as an importance safetensors file."),
        .init("json", help: "Print the result as JSON."),
    ]

    static func run(_ arguments: ParsedArguments, output: CommandOutput) throws -> Int32 {
        _ = try arguments.requirePositional([])
        let epochs = try arguments.integer("epochs", default: 30, range: 1...10_000)
        let batchSize = try arguments.integer("batch-size", default: 32, range: 1...100_000)
        let learningRate = try arguments.double("learning-rate", default: 1e-3, range: 1e-12...10)
        let hidden = try arguments.integer("hidden", default: 128, range: 1...100_000)
        let seed = UInt64(try arguments.integer("seed", default: 0, range: 0...Int.max))
        let run = try DigitsExperiment.trainMLP(
            hidden: hidden, epochs: epochs, batchSize: batchSize, learningRate: Float(learningRate), seed: seed, progress: output.progress)
        if let path = arguments.value("save-model") {
            try SafeTensorsWriter.write(run.model.stateDict(), metadata: ["format": "pt", "model": "mlp 64-\(hidden)-10"], to: URL(fileURLWithPath: path))
        }
        if let path = arguments.value("save-optimizer") {
            try SafeTensorsWriter.write(run.optimizer.state.flattened(), metadata: run.optimizer.state.metadata, to: URL(fileURLWithPath: path))
        }
        if let path = arguments.value("save-squisher") {
            try Squisher(optimizer: run.optimizer, scaling: .datasetSize(run.train.count)).estimate(model: run.model, data: nil).save(to: URL(fileURLWithPath: path))
        }
        if arguments.flag("json") {
            let object: [String: Any] = [
                "epochs": epochs, "test_accuracy": run.testAccuracy, "test_loss": run.testLoss,
                "train_samples": run.train.count, "test_samples": run.test.count, "seconds": run.seconds,
            ]
            output.print(String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self))
        } else {
            output.print(String(format: "MLP 64-%d-10, Adam lr %g, %d epochs, batch %d, seed %llu", hidden, learningRate, epochs, batchSize, seed))
            output.print(String(format: "test accuracy %.2f%% (%d held-out digits), test loss %.4f, %.2f s", 100 * run.testAccuracy, run.test.count, run.testLoss, run.seconds))
        }
        return 0
    }
}
