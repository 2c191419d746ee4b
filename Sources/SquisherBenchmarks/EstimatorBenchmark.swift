import Foundation
import Squisher

/// Estimator cost benchmarks (release): every figure is a ratio to a plain forward+backward pass
/// over the same samples, measured in the same run. `squisher-bench estimators`.
enum EstimatorBenchmark {
    struct Model {
        var name: String
        var make: () throws -> Sequential
        var sampleShape: [Int]
    }

    static var models: [Model] { [
        Model(name: "MLP 784-256-256-10", make: {
            var g = SplitMix64(seed: 1)
            return Sequential([Linear(inputFeatures: 784, outputFeatures: 256, generator: &g), ReLU(),
                               Linear(inputFeatures: 256, outputFeatures: 256, generator: &g), ReLU(),
                               Linear(inputFeatures: 256, outputFeatures: 10, generator: &g)])
        }, sampleShape: [784]),
        Model(name: "CNN conv16-pool-conv32-pool-fc, 28x28", make: {
            var g = SplitMix64(seed: 2)
            return Sequential([try Conv2d(inputChannels: 1, outputChannels: 16, kernelSize: 3, padding: 1, generator: &g), ReLU(), try MaxPool2d(kernelSize: 2),
                               try Conv2d(inputChannels: 16, outputChannels: 32, kernelSize: 3, padding: 1, generator: &g), ReLU(), try MaxPool2d(kernelSize: 2),
                               Flatten(), Linear(inputFeatures: 32 * 7 * 7, outputFeatures: 10, generator: &g)])
        }, sampleShape: [1, 28, 28]),
    ] }

    /// Median wall-clock seconds of `repeats` runs after one warm-up.
    static func median(_ repeats: Int, _ body: () throws -> Void) rethrows -> Double {
        try body()
        var times: [Double] = []
        for _ in 0..<repeats {
            let start = DispatchTime.now().uptimeNanoseconds
            try body()
            times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        }
        return times.sorted()[times.count / 2]
    }

    static func run(samples: Int = 2048, batchSize: Int = 128, repeats: Int = 5) throws {
        print("## Estimator cost (N = \(samples), batch \(batchSize), float32, median of \(repeats); ratio = time / plain forward+backward over the same N)\n")
        print("| model | plain fwd+bwd (s) | empirical Fisher | true Fisher exact (C=10) | true Fisher MC (S=1) | joint empirical | per-sample loop (empirical) | Adam epoch | Adam epoch + Squisher hook | + joint hook |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for spec in models {
            let model = try spec.make()
            var g = SplitMix64(seed: 3)
            let data = try Dataset(inputs: Tensor.normal(shape: [samples] + spec.sampleShape, using: &g),
                                   labels: (0..<samples).map { _ in Int(g.next() % 10) }, classCount: 10)
            let batches = try data.batches(size: batchSize)
            let loss = SoftmaxCrossEntropy(reduction: .sum)
            let plain = try median(repeats) {
                for batch in batches {
                    let logits = try model.forward(batch.inputs, mode: .evaluation)
                    try model.accumulateParameterGradients(try loss(logits: logits, labels: batch.labels).logitsGradient)
                }
            }
            let empirical = try median(repeats) { _ = try EmpiricalFisher(batchSize: batchSize).estimate(model: model, data: data) }
            let exact = try median(max(1, repeats / 2)) { _ = try TrueFisherExact(batchSize: batchSize).estimate(model: model, data: data) }
            let mc = try median(repeats) { _ = try TrueFisherMonteCarlo(samples: 1, batchSize: batchSize).estimate(model: model, data: data) }
            let joint = try median(repeats) { _ = try JointEmpiricalFisher(batchSize: batchSize).estimate(model: model, data: data) }
            // The naive approach: one forward+backward per sample, squared gradients summed. Timed on
            // a subset and scaled to N (it is linear in N).
            let loopSamples = min(samples, 256)
            let subset = try data.subset(Array(0..<loopSamples))
            let singles = try (0..<loopSamples).map { try subset.subset([$0]) }
            let loop = try median(1) {
                var sums = model.namedParameters.map { Tensor(zeros: $0.parameter.value.shape) }
                for single in singles {
                    model.zeroGradients()
                    let logits = try model.forward(single.inputs, mode: .evaluation)
                    try model.accumulateParameterGradients(try loss(logits: logits, labels: single.labels).logitsGradient)
                    for (i, entry) in model.namedParameters.enumerated() { try sums[i].addScaled(entry.parameter.gradient.map { $0 * $0 }) }
                }
            } * Double(samples) / Double(loopSamples)
            func epoch(_ attach: (Adam) throws -> HookHandle?) throws -> Double {
                try median(repeats) {
                    let fresh = try spec.make()
                    let adam = try Adam(parameters: fresh.namedParameters)
                    let handle = try attach(adam)
                    try Trainer.train(model: fresh, optimizer: adam, data: data, configuration: TrainingConfiguration(epochs: 1, batchSize: batchSize, shuffle: false))
                    handle?.remove()
                }
            }
            let adamEpoch = try epoch { _ in nil }
            let withSquisher = try epoch { try SquaredGradientAccumulator(rule: .ema(beta2: 0.999)).attach(to: $0) }
            let withJoint = try epoch { try SquaredGradientAccumulator(rule: .runningSum).attach(to: $0) }
            func ratio(_ t: Double) -> String { String(format: "%.3f s (%.2fx)", t, t / plain) }
            print("| \(spec.name) | \(String(format: "%.3f", plain)) | \(ratio(empirical)) | \(ratio(exact)) | \(ratio(mc)) | \(ratio(joint)) | \(ratio(loop)) | \(String(format: "%.3f s", adamEpoch)) | \(String(format: "%.3f s (%+.1f%%)", withSquisher, 100 * (withSquisher / adamEpoch - 1))) | \(String(format: "%.3f s (%+.1f%%)", withJoint, 100 * (withJoint / adamEpoch - 1))) |")
        }
        print("\nThe Squisher read from Adam's state costs no pass at all (its `EstimationCost` is zero); the hook columns measure accumulating it for an optimizer that does not keep it.")
    }
}
