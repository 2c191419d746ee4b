import SquisherData
import SquisherLayers
import SquisherTensor

/// The exact true (standard) Fisher diagonal:
/// `F = Σ_n Σ_c p(c|x_n) (∇_θ −log p(c|x_n))²`, the expectation over the model's own predictive
/// distribution computed exactly; for softmax cross-entropy it equals the diagonal of the
/// generalized Gauss-Newton (BackPACK's `DiagGGNExact`) [1].
///
/// - Reduction: **sum** over the `N` samples.
/// - Cost: one forward and `C` backward passes per batch (`C` classes): each pass backpropagates
///   `sqrt(p_c)·(p − e_c)` per sample. Any ``LikelihoodLoss`` (``loss``) defines its own exact
///   passes: `T·C` for a sequence of `T` predicted tokens (one per position and class), `D` for a
///   Gaussian over `D` outputs.
///
/// [1]: Li, Dangel, Tam, Raffel 2025, Fishers for Free?; Martens 2020, New insights and
///      perspectives on the natural gradient method.
public struct TrueFisherExact: SensitivityEstimator, Sendable {
    public let name = "true-fisher"
    public let requirement = EstimatorRequirement.data
    /// Samples per pass (speed and memory only).
    public var batchSize: Int
    /// Per-sample rules by layer type.
    public var rules: PerSampleRuleRegistry
    /// The likelihood whose expectation is taken.
    public var loss: any LikelihoodLoss

    public init(batchSize: Int = 128, rules: PerSampleRuleRegistry = .standard, loss: any LikelihoodLoss = CrossEntropyLikelihood()) {
        self.batchSize = batchSize
        self.rules = rules
        self.loss = loss
    }

    /// The estimate on a classification data set.
    public func estimate(model: any Layer, data: Dataset?) throws -> Importance {
        guard let data else { throw EstimatorError(estimator: name, problem: "needs a data set, got none") }
        return try estimate(model: model, data: TensorDataset(data))
    }

    /// The estimate on inputs and targets of any shape (targets only mark which terms exist).
    public func estimate(model: any Layer, data: TensorDataset) throws -> Importance {
        let engine = FisherEngine(estimator: name, batchSize: batchSize, rules: rules)
        let loss = loss
        let (values, cost) = try engine.run(model: model, data: data) { output, targets in
            try loss.exactFisherPasses(output: output, targets: targets)
        }
        return Importance(
            unchecked: values, estimator: name,
            conventions: Importance.conventions(loss: loss, samples: data.count, ["labels": "exact expectation"]), cost: cost)
    }
}

/// The Monte-Carlo true Fisher diagonal:
/// `F_MC = Σ_n (1/S) Σ_s (∇_θ −log p(ŷ_s|x_n))²` with `ŷ_s ~ p(·|x_n)` drawn from the model with a
/// seeded generator (BackPACK's `DiagGGNMC` with `mc_samples = S`). Unbiased for ``TrueFisherExact``.
///
/// - Reduction: **sum** over the `N` samples, mean over the `S` label samples.
/// - Cost: one forward and `S` backward passes per batch. Same seed, same bits.
public struct TrueFisherMonteCarlo: SensitivityEstimator, Sendable {
    public var name: String { "true-fisher-mc\(samples)" }
    public let requirement = EstimatorRequirement.data
    /// Label samples per data point (`S >= 1`).
    public var samples: Int
    /// Seed of the label-sampling generator.
    public var seed: UInt64
    /// Samples per pass (speed and memory only; the labels drawn do not depend on it).
    public var batchSize: Int
    /// Per-sample rules by layer type.
    public var rules: PerSampleRuleRegistry
    /// The likelihood sampled from.
    public var loss: any LikelihoodLoss

    public init(
        samples: Int = 1, seed: UInt64 = 0, batchSize: Int = 128, rules: PerSampleRuleRegistry = .standard,
        loss: any LikelihoodLoss = CrossEntropyLikelihood()
    ) {
        self.samples = samples
        self.seed = seed
        self.batchSize = batchSize
        self.rules = rules
        self.loss = loss
    }

    /// The estimate on a classification data set.
    public func estimate(model: any Layer, data: Dataset?) throws -> Importance {
        guard let data else { throw EstimatorError(estimator: name, problem: "needs a data set, got none") }
        return try estimate(model: model, data: TensorDataset(data))
    }

    /// The estimate on inputs and targets of any shape (targets only mark which terms exist).
    public func estimate(model: any Layer, data: TensorDataset) throws -> Importance {
        guard samples >= 1 else { throw EstimatorError(estimator: name, problem: "samples must be >= 1, got \(samples)") }
        var generator = SplitMix64(seed: seed)
        let engine = FisherEngine(estimator: name, batchSize: batchSize, rules: rules)
        let (loss, samples, scale) = (loss, samples, 1 / Float(samples))
        let (values, cost) = try engine.run(model: model, data: data) { output, targets in
            // S draws per term in row order, from one seeded stream.
            let gradients = try loss.sampledGradients(output: output, targets: targets, samples: samples, using: &generator)
            return FisherPasses(count: samples) { (gradients[$0], scale) }
        }
        return Importance(
            unchecked: values, estimator: name,
            conventions: Importance.conventions(loss: loss, samples: data.count, ["labels": "sampled, S=\(samples), seed=\(seed)"]), cost: cost)
    }
}

extension TrueFisherMonteCarlo {
    /// The empirical-Fisher machinery with *given* labels instead of sampled ones: used to
    /// reproduce a reference computed with stored sampled labels (`mc_labels`).
    public static func withLabels(
        _ sampledLabels: [Int], model: any Layer, data: Dataset, batchSize: Int = 128, rules: PerSampleRuleRegistry = .standard
    ) throws -> Importance {
        let relabeled = try Dataset(inputs: data.inputs, labels: sampledLabels, classCount: data.classCount)
        var result = try EmpiricalFisher(batchSize: batchSize, rules: rules).estimate(model: model, data: relabeled)
        result.estimator = "true-fisher-mc1"
        result.conventions["labels"] = "given sampled labels"
        return result
    }
}
