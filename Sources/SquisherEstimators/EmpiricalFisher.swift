import SquisherData
import SquisherLayers
import SquisherTensor

/// The empirical Fisher diagonal (the paper's "Fisher"): `F_emp = Σ_n g_n²` with
/// `g_n = ∇_θ −log p(y_n|x_n)` the per-sample gradient at the **true** label [1] (BackPACK's
/// `SumGradSquared` with sum reduction).
///
/// - Reduction: **sum** over the `N` samples of the data set (divide by `N` for the mean).
/// - Cost: one forward and one backward pass over the data, with per-sample squared gradients
///   from the layer rules (``PerSampleRuleRegistry``); no per-sample loop.
/// - Model: a ``Sequential`` classifier producing logits `[N, classes]`; softmax cross-entropy.
///
/// [1]: Li, Dangel, Tam, Raffel 2025, Fishers for Free?; Kunstner, Hennig, Balles 2019,
///      Limitations of the empirical Fisher approximation.
public struct EmpiricalFisher: SensitivityEstimator, Sendable {
    public let name = "empirical-fisher"
    public let requirement = EstimatorRequirement.data
    /// Samples per forward/backward pass (affects speed and memory only, not the result).
    public var batchSize: Int
    /// Per-sample rules by layer type.
    public var rules: PerSampleRuleRegistry

    public init(batchSize: Int = 128, rules: PerSampleRuleRegistry = .standard) {
        self.batchSize = batchSize
        self.rules = rules
    }

    public func estimate(model: any Layer, data: Dataset?) throws -> Importance {
        let engine = FisherEngine(estimator: name, batchSize: batchSize, rules: rules)
        let (values, cost) = try engine.run(model: model, data: data) { probabilities, classes, labels in
            // ∂(−log p_y)/∂z = p − e_y for each sample row.
            var gradient = probabilities.map(Float.init)
            for (row, label) in labels.enumerated() { gradient[row * classes + label] -= 1 }
            return [(Tensor(uncheckedShape: [labels.count, classes], scalars: gradient), 1)]
        }
        return Importance(
            unchecked: values, estimator: name,
            conventions: ["reduction": "sum", "samples": "\(data?.count ?? 0)", "labels": "true"], cost: cost)
    }
}
