import Foundation
import SquisherData
import SquisherLayers
import SquisherTensor

/// The joint empirical Fisher diagonal over mini-batches of size `B`:
/// `F_joint = Σ_b (Σ_{n∈b} g_n)²`, the square of each batch's **summed** gradient, summed over
/// batches [1]. With `B = N` (one batch) it is `(Σ_n g_n)²`. It needs only ordinary batch
/// gradients (no per-sample rules), which is what Adam squares (up to the 1/B of a mean loss).
///
/// - Reduction: the gradient inside the square is **sum**-reduced over the batch, of any
///   ``LikelihoodLoss`` (``loss``; per-sample softmax cross-entropy by default).
/// - Cost: one forward and one backward pass per batch. The model's accumulated gradients are
///   saved and restored around the computation.
///
/// [1]: Li, Dangel, Tam, Raffel 2025, Fishers for Free?
public struct JointEmpiricalFisher: SensitivityEstimator, Sendable {
    public let name = "joint-empirical-fisher"
    public let requirement = EstimatorRequirement.data
    /// Samples per batch `B` (this changes the result: the square is taken per batch).
    /// `nil` means the whole data set as one batch.
    public var batchSize: Int?
    /// The per-sample loss whose summed gradient is squared.
    public var loss: any LikelihoodLoss

    public init(batchSize: Int? = nil, loss: any LikelihoodLoss = CrossEntropyLikelihood()) {
        self.batchSize = batchSize
        self.loss = loss
    }

    /// The estimate on a classification data set.
    public func estimate(model: any Layer, data: Dataset?) throws -> Importance {
        guard let data else { throw EstimatorError(estimator: name, problem: "needs a non-empty data set") }
        return try estimate(model: model, data: TensorDataset(data))
    }

    /// The estimate on inputs and targets of any shape.
    public func estimate(model: any Layer, data: TensorDataset) throws -> Importance {
        guard data.count > 0 else { throw EstimatorError(estimator: name, problem: "needs a non-empty data set") }
        let size = batchSize ?? data.count
        guard size >= 1 else { throw EstimatorError(estimator: name, problem: "batch size must be >= 1, got \(size)") }
        let start = Date()
        let parameters = model.namedParameters
        let saved = parameters.map { $0.parameter.gradient }
        defer { for (index, entry) in parameters.enumerated() { entry.parameter.gradient = saved[index] } }
        var sums = parameters.map { Tensor(zeros: $0.parameter.value.shape) }
        var cost = EstimationCost()
        for batch in try data.batches(size: size) {
            for (_, parameter) in parameters { parameter.gradient = Tensor(zeros: parameter.value.shape) }
            let output = try model.forward(batch.inputs, mode: .evaluation)
            let gradient = try loss.lossAndGradient(output: output, targets: batch.targets).outputGradient
            try model.accumulateParameterGradients(gradient)
            cost.forwardPasses += 1
            cost.backwardPasses += 1
            for (index, entry) in parameters.enumerated() where entry.parameter.requiresGradient {
                try sums[index].addScaled(entry.parameter.gradient.map { $0 * $0 })
            }
        }
        cost.samplesTouched = data.count
        cost.seconds = Date().timeIntervalSince(start)
        cost.peakExtraBytes = 2 * 4 * parameters.reduce(0) { $0 + $1.parameter.value.count }
        let values = try NamedTensors(zip(parameters, sums).map { ($0.0.name, $0.1) })
        return Importance(
            unchecked: values, estimator: name,
            conventions: Importance.conventions(loss: loss, samples: data.count, ["reduction": "sum inside the square", "batch_size": "\(size)"]),
            cost: cost)
    }
}
