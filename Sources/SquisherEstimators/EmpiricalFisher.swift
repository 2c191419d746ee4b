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
/// - Model and loss: any layer graph whose leaves have rules, and any ``LikelihoodLoss``
///   (``loss``; softmax cross-entropy per sample by default, per token for a language model, a
///   Gaussian for regression); `g_n` is the gradient of sample `n`'s **summed** loss.
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
    /// The per-sample loss `l_n` whose gradients are squared.
    public var loss: any LikelihoodLoss

    public init(batchSize: Int = 128, rules: PerSampleRuleRegistry = .standard, loss: any LikelihoodLoss = CrossEntropyLikelihood()) {
        self.batchSize = batchSize
        self.rules = rules
        self.loss = loss
    }

    /// The estimate on a classification data set (its labels are the targets).
    public func estimate(model: any Layer, data: Dataset?) throws -> Importance {
        guard let data else { throw EstimatorError(estimator: name, problem: "needs a data set, got none") }
        return try estimate(model: model, data: TensorDataset(data))
    }

    /// The estimate on inputs and targets of any shape (``loss`` decides what the targets mean).
    public func estimate(model: any Layer, data: TensorDataset) throws -> Importance {
        let engine = FisherEngine(estimator: name, batchSize: batchSize, rules: rules)
        let loss = loss
        let (values, cost) = try engine.run(model: model, data: data) { output, targets in
            let gradient = try loss.lossAndGradient(output: output, targets: targets).outputGradient
            return FisherPasses(count: 1) { _ in (gradient, 1) }
        }
        return Importance(
            unchecked: values, estimator: name,
            conventions: Importance.conventions(loss: loss, samples: data.count, ["labels": "true"]), cost: cost)
    }
}
