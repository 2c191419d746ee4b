import Foundation
import SquisherData
import SquisherLayers
import SquisherTensor

/// The shared loop of the data-based Fisher variants over any model graph (leaf layers and every
/// ``LayerContainer``, observed recursively) and any ``LikelihoodLoss``: per mini-batch, one
/// forward pass in evaluation mode, then the backward passes that `passes` returns for the batch's
/// output and targets, observed by a ``SquaredGradientCollector``.
///
/// The passes of a batch share one forward, so the collector treats them as one batch
/// (``PassSummableSquaredGradientRule``: e.g. one `Linear` product per batch instead of per pass),
/// and no pass computes the gradient with respect to the model's input (nobody uses it).
struct FisherEngine {
    var estimator: String
    var batchSize: Int
    var rules: PerSampleRuleRegistry

    /// - Parameter passes: for (model output, targets) of a batch, the per-sample output gradients
    ///   to backpropagate and the scale of each pass.
    func run(
        model: any Layer, data: TensorDataset,
        passes: (_ output: Tensor, _ targets: Tensor) throws -> FisherPasses
    ) throws -> (NamedTensors, EstimationCost) {
        guard data.count > 0 else { throw EstimatorError(estimator: estimator, problem: "the data set is empty") }
        guard batchSize >= 1 else { throw EstimatorError(estimator: estimator, problem: "batch size must be >= 1, got \(batchSize)") }
        let start = Date()
        let collector = SquaredGradientCollector(registry: rules, estimator: estimator, model: model)
        var cost = EstimationCost()
        var peakBatchBytes = 0
        for batch in try data.batches(size: batchSize) {
            let output = try model.forward(batch.inputs, mode: .evaluation)
            cost.forwardPasses += 1
            let batchPasses = try passes(output, batch.targets)
            collector.beginBatch(passes: batchPasses.count)
            for index in 0..<batchPasses.count {
                let (gradient, scale) = try batchPasses.pass(index)
                collector.scale = scale
                _ = try model.observedBackward(
                    gradient, input: batch.inputs, path: "", accumulateParameterGradients: false, observer: collector, computeInputGradient: false)
                try collector.endPass()
                cost.backwardPasses += 1
            }
            try collector.endBatch()
            peakBatchBytes = max(peakBatchBytes, 4 * output.count * 2)
        }
        cost.samplesTouched = data.count
        cost.seconds = Date().timeIntervalSince(start)
        cost.peakExtraBytes = collector.accumulatorBytes + collector.peakTemporaryBytes + peakBatchBytes
        return (try collector.result(for: model), cost)
    }
}

extension Importance {
    /// The conventions of a data-based estimate: the loss's own, then the estimator's.
    static func conventions(loss: any LikelihoodLoss, samples: Int, _ extra: [String: String]) -> [String: String] {
        var result = loss.conventions
        result["samples"] = "\(samples)"
        for (key, value) in extra { result[key] = value }
        return result
    }
}
