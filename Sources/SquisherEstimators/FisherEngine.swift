import Foundation
import SquisherData
import SquisherLayers
import SquisherTensor

/// The shared loop of the data-based Fisher variants over any model graph (leaf layers and every
/// ``LayerContainer``, observed recursively): per mini-batch, one forward pass in
/// evaluation mode, then one backward pass per output gradient that `outputGradients` returns for
/// the batch's logits, observed by a ``SquaredGradientCollector``.
///
/// The passes of a batch share one forward, so the collector treats them as one batch
/// (``PassSummableSquaredGradientRule``: e.g. one `Linear` product per batch instead of per pass),
/// and no pass computes the gradient with respect to the model's input (nobody uses it).
struct FisherEngine {
    var estimator: String
    var batchSize: Int
    var rules: PerSampleRuleRegistry

    /// - Parameter outputGradients: for (logits `[B, C]`, probabilities `[B, C]` in Double, labels),
    ///   the per-sample output gradients to backpropagate and the scale of each pass.
    func run(
        model: any Layer, data: Dataset?,
        outputGradients: (_ probabilities: [Double], _ classes: Int, _ labels: [Int]) throws -> [(Tensor, Float)]
    ) throws -> (NamedTensors, EstimationCost) {
        guard let data else { throw EstimatorError(estimator: estimator, problem: "needs a data set, got none") }
        guard data.count > 0 else { throw EstimatorError(estimator: estimator, problem: "the data set is empty") }
        guard batchSize >= 1 else { throw EstimatorError(estimator: estimator, problem: "batch size must be >= 1, got \(batchSize)") }
        let start = Date()
        let collector = SquaredGradientCollector(registry: rules, estimator: estimator, model: model)
        var cost = EstimationCost()
        var peakBatchBytes = 0
        for batch in try data.batches(size: batchSize) {
            let logits = try model.forward(batch.inputs, mode: .evaluation)
            cost.forwardPasses += 1
            guard logits.rank == 2 else {
                throw EstimatorError(estimator: estimator, problem: "expected logits [N, classes] from the model, got shape \(logits.shape)")
            }
            let classes = logits.shape[1]
            let probabilities = try logits.softmaxRows().scalars.map(Double.init)
            let passes = try outputGradients(probabilities, classes, batch.labels)
            collector.beginBatch(passes: passes.count)
            for (gradient, scale) in passes {
                collector.scale = scale
                _ = try model.observedBackward(
                    gradient, input: batch.inputs, path: "", accumulateParameterGradients: false, observer: collector, computeInputGradient: false)
                try collector.endPass()
                cost.backwardPasses += 1
            }
            try collector.endBatch()
            peakBatchBytes = max(peakBatchBytes, 4 * logits.count * (1 + passes.count))
        }
        cost.samplesTouched = data.count
        cost.seconds = Date().timeIntervalSince(start)
        cost.peakExtraBytes = collector.accumulatorBytes + collector.peakTemporaryBytes + peakBatchBytes
        return (try collector.result(for: model), cost)
    }
}
