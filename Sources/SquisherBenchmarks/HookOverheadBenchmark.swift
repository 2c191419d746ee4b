import Foundation
import Squisher

/// One Adam epoch on the MLP 784-256-256-10 (N = 512 random samples, batch 128), optionally with a
/// Squisher accumulator on the step hooks. Meant to run under `valgrind --tool=callgrind`, whose
/// instruction counts are repeatable where wall-clock time on this shared machine is not:
///
///     valgrind --tool=callgrind --callgrind-out-file=/dev/null .build/release/squisher-bench hook none
///     valgrind --tool=callgrind --callgrind-out-file=/dev/null .build/release/squisher-bench hook squisher
///     valgrind --tool=callgrind --callgrind-out-file=/dev/null .build/release/squisher-bench hook joint
enum HookOverheadBenchmark {
    static func run(arguments: [String]) throws {
        let mode = arguments.first ?? "none"
        guard ["none", "squisher", "joint"].contains(mode) else {
            throw CommandLineError("squisher-bench hook: expected none, squisher or joint, got '\(mode)'")
        }
        var g = SplitMix64(seed: 1)
        let model = Sequential([Linear(inputFeatures: 784, outputFeatures: 256, generator: &g), ReLU(),
                                Linear(inputFeatures: 256, outputFeatures: 256, generator: &g), ReLU(),
                                Linear(inputFeatures: 256, outputFeatures: 10, generator: &g)])
        let data = try Dataset(inputs: Tensor.normal(shape: [512, 784], using: &g), labels: (0..<512).map { _ in Int(g.next() % 10) }, classCount: 10)
        let adam = try Adam(parameters: model.namedParameters)
        let accumulator: SquaredGradientAccumulator? = switch mode {
        case "squisher": try SquaredGradientAccumulator(rule: .ema(beta2: 0.999))
        case "joint": try SquaredGradientAccumulator(rule: .runningSum)
        default: nil
        }
        accumulator?.attach(to: adam)
        try Trainer.train(model: model, optimizer: adam, data: data, configuration: TrainingConfiguration(epochs: 1, batchSize: 128, shuffle: false))
        print("hook \(mode): one epoch of \(adam.stepCount) steps; accumulated \(accumulator?.accumulatedSteps ?? 0) steps over \(accumulator?.accumulated.scalarCount ?? 0) entries")
    }
}

struct CommandLineError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
