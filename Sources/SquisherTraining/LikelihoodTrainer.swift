import SquisherData
import SquisherLayers
import SquisherOptimizers
import SquisherTensor

/// Mini-batch training of any model on a ``TensorDataset`` with any ``LikelihoodLoss`` (a causal
/// language model with per-token cross-entropy, a regression with a Gaussian likelihood, ...).
///
/// The loop per batch: zero gradients → forward (training mode) → the loss's per-sample output
/// gradient → backward → `optimizer.step(batchSize:)` (its step hooks fire there, so the
/// Squisher and every step observer work unchanged).
///
/// - Reduction: the loss of a batch is the **mean over its samples** of each sample's summed loss
///   (for a sequence: the sum over its predicted tokens), so parameter gradients are `1/B` of the
///   sum-reduced ones, as ``Trainer`` with `.mean`. Adam's `v` then estimates `E[ḡ²]` of that mean,
///   and `N·v` is the Squisher on the scale of the other experiments.
public enum LikelihoodTrainer {
    /// Trains `model` in place for `configuration.epochs` passes and returns the mean per-sample
    /// training loss of each epoch (natural log; `configuration.reduction` must be `.mean`).
    /// - Throws: ``TensorError`` on shape errors, a bad configuration, or a non-finite loss (named
    ///   with epoch and batch).
    @discardableResult
    public static func train(
        model: any Layer, optimizer: any Optimizer, data: TensorDataset, loss: any LikelihoodLoss,
        configuration: TrainingConfiguration
    ) throws -> [Double] {
        guard configuration.epochs >= 0 else { throw TensorError.invalidArgument(argument: "epochs", reason: "must be >= 0, got \(configuration.epochs)") }
        guard configuration.batchSize >= 1 else { throw TensorError.invalidArgument(argument: "batch size", reason: "must be >= 1, got \(configuration.batchSize)") }
        guard configuration.reduction == .mean else {
            throw TensorError.invalidArgument(argument: "reduction", reason: "LikelihoodTrainer averages over each batch's samples; got \(configuration.reduction)")
        }
        var generator = SplitMix64(seed: configuration.seed)
        var losses: [Double] = []
        for epoch in 0..<configuration.epochs {
            var order = Array(0..<data.count)
            if configuration.shuffle { order.shuffle(using: &generator) }
            var total = 0.0
            for (index, start) in stride(from: 0, to: data.count, by: configuration.batchSize).enumerated() {
                let batch = try data.rows(Array(order[start..<min(start + configuration.batchSize, data.count)]))
                optimizer.zeroGradients()
                let output = try model.forward(batch.inputs, mode: .training)
                let (value, gradient) = try loss.lossAndGradient(output: output, targets: batch.targets)
                guard value.isFinite else {
                    throw TensorError.invalidArgument(argument: "training loss", reason: "is \(value) at epoch \(epoch + 1), batch \(index + 1) (diverged: lower the learning rate)")
                }
                try model.accumulateParameterGradients(Float(1) / Float(batch.count) * gradient)
                try optimizer.step(batchSize: batch.count)
                total += value
            }
            losses.append(total / Double(max(data.count, 1)))
        }
        return losses
    }
}
