import Foundation
import SquisherData
import SquisherLayers
import SquisherOptimizers
import SquisherTensor

/// Adds a penalty to the training loss of a model, and its gradient to the parameters' gradients
/// (e.g. EWC's `(λ/2) Σ F (θ − θ*)²`). Called after the loss's backward, before the optimizer step.
public protocol TrainingRegularizer {
    /// Adds the penalty's gradient into `parameter.gradient` for every parameter it touches and
    /// returns the penalty's value (added to the reported loss). `batchSize` is the mini-batch size,
    /// for penalties that must match a mean-reduced loss.
    func addPenalty(to parameters: [(name: String, parameter: Parameter)], batchSize: Int) throws -> Double
}

/// Settings of a training run.
public struct TrainingConfiguration: Sendable {
    /// Passes over the training data.
    public var epochs: Int
    /// Samples per mini-batch (the last batch of an epoch may be smaller).
    public var batchSize: Int
    /// Seed of the shuffling generator (each epoch reshuffles from one stream).
    public var seed: UInt64
    /// The loss reduction over the batch; PyTorch's default `.mean` (gradients are 1/B of `.sum`).
    public var reduction: Reduction
    /// Whether to reshuffle every epoch (otherwise storage order).
    public var shuffle: Bool

    public init(epochs: Int = 10, batchSize: Int = 32, seed: UInt64 = 0, reduction: Reduction = .mean, shuffle: Bool = true) {
        self.epochs = epochs
        self.batchSize = batchSize
        self.seed = seed
        self.reduction = reduction
        self.shuffle = shuffle
    }
}

/// The outcome of one epoch.
public struct EpochReport: Sendable, Hashable {
    /// 1-based epoch number.
    public var epoch: Int
    /// Mean per-sample training loss over the epoch (cross-entropy, natural log), plus any penalty.
    public var trainingLoss: Double
    /// Training accuracy over the epoch, in [0, 1] (computed on the fly in training mode).
    public var trainingAccuracy: Double
    /// Loss and accuracy on the evaluation set after the epoch, when one was given.
    public var evaluation: Evaluation?
    /// Wall-clock seconds of the epoch (training only).
    public var seconds: Double
}

/// Loss and accuracy of a model on a data set.
public struct Evaluation: Sendable, Hashable {
    /// Mean per-sample cross-entropy.
    public var loss: Double
    /// Fraction classified correctly, in [0, 1].
    public var accuracy: Double
}

/// Mini-batch training of a classifier with softmax cross-entropy and any ``Optimizer``.
///
/// The loop per batch: zero gradients → forward (training mode) → loss and its gradient →
/// backward → regularizer penalties → `optimizer.step(batchSize:)` (which runs the step hooks:
/// that is where estimators such as the Squisher plug in, with no change to this loop).
public enum Trainer {
    /// Trains `model` in place and returns one report per epoch.
    /// - Throws: ``TensorError`` on shape errors or a non-finite loss (named with epoch and batch),
    ///   or whatever a regularizer throws.
    @discardableResult
    public static func train(
        model: any Layer, optimizer: any Optimizer, data: Dataset, configuration: TrainingConfiguration,
        evaluationData: Dataset? = nil, regularizers: [any TrainingRegularizer] = [],
        progress: ProgressReporter = .silent
    ) throws -> [EpochReport] {
        guard configuration.epochs >= 0 else { throw TensorError.invalidArgument(argument: "epochs", reason: "must be >= 0, got \(configuration.epochs)") }
        var generator = SplitMix64(seed: configuration.seed)
        let loss = SoftmaxCrossEntropy(reduction: configuration.reduction)
        let parameters = model.namedParameters
        var reports: [EpochReport] = []
        for epoch in 1...max(configuration.epochs, 1) where configuration.epochs > 0 {
            let start = Date()
            var shuffler: SplitMix64? = configuration.shuffle ? generator.fork() : nil
            let batches = try data.batches(size: configuration.batchSize, shuffle: &shuffler)
            var totalLoss = 0.0, correct = 0
            for (index, batch) in batches.enumerated() {
                optimizer.zeroGradients()
                let logits = try model.forward(batch.inputs, mode: .training)
                let (value, gradient) = try loss(logits: logits, labels: batch.labels)
                guard value.isFinite else {
                    throw TensorError.invalidArgument(argument: "training loss", reason: "is \(value) at epoch \(epoch), batch \(index + 1) (diverged: lower the learning rate)")
                }
                try model.accumulateParameterGradients(gradient)
                var penalty = 0.0
                for regularizer in regularizers { penalty += try regularizer.addPenalty(to: parameters, batchSize: batch.count) }
                try optimizer.step(batchSize: batch.count)
                let perSample = configuration.reduction == .mean ? value : value / Double(batch.count)
                totalLoss += (perSample + penalty) * Double(batch.count)
                correct += zip(try logits.reshaped([batch.count, -1]).argmaxRows(), batch.labels).filter { $0 == $1 }.count
                progress.update("epoch \(epoch)/\(configuration.epochs)", done: index + 1, total: batches.count)
            }
            let seconds = Date().timeIntervalSince(start)
            let evaluation = try evaluationData.map { try evaluate(model: model, data: $0) }
            let report = EpochReport(
                epoch: epoch, trainingLoss: totalLoss / Double(max(data.count, 1)),
                trainingAccuracy: Double(correct) / Double(max(data.count, 1)), evaluation: evaluation, seconds: seconds)
            reports.append(report)
            var line = String(format: "epoch %d: loss %.4f, accuracy %.2f%%", epoch, report.trainingLoss, 100 * report.trainingAccuracy)
            if let evaluation { line += String(format: ", test loss %.4f, test accuracy %.2f%%", evaluation.loss, 100 * evaluation.accuracy) }
            progress.message(line)
        }
        return reports
    }

    /// Mean cross-entropy and accuracy of `model` on `data`, in evaluation mode, in batches.
    public static func evaluate(model: any Layer, data: Dataset, batchSize: Int = 256) throws(TensorError) -> Evaluation {
        var totalLoss = 0.0, correct = 0
        let loss = SoftmaxCrossEntropy(reduction: .sum)
        for batch in try data.batches(size: batchSize) {
            let logits = try model.forward(batch.inputs, mode: .evaluation)
            totalLoss += try loss(logits: logits, labels: batch.labels).loss
            correct += zip(try logits.reshaped([batch.count, -1]).argmaxRows(), batch.labels).filter { $0 == $1 }.count
        }
        let n = Double(max(data.count, 1))
        return Evaluation(loss: totalLoss / n, accuracy: Double(correct) / n)
    }

    /// Predicted classes (argmax of the logits) in evaluation mode.
    public static func predict(model: any Layer, inputs: Tensor) throws(TensorError) -> [Int] {
        let logits = try model.forward(inputs, mode: .evaluation)
        return try logits.reshaped([inputs.shape.first ?? 0, -1]).argmaxRows()
    }
}
