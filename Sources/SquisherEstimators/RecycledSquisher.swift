/// How a training-run Squisher scales `v`, resolved against the run's `N` and `B`
/// (see ``SquisherScaling`` for what each scale means).
public enum RunScaling: String, Sendable, Hashable, CaseIterable {
    /// Raw `v`.
    case raw
    /// `B·v`.
    case batchSize
    /// `N·v`, the paper's Squisher (about `1/B` of a sum-reduced Fisher).
    case datasetSize
    /// `N·B·v`, on the scale of the sum-reduced empirical Fisher.
    case sumReducedFisher

    /// The concrete scaling for a run.
    public func scaling(for run: TrainingRun) -> SquisherScaling {
        switch self {
        case .raw: .none
        case .batchSize: .batchSize(run.batchSize)
        case .datasetSize: .datasetSize(run.datasetSize)
        case .sumReducedFisher: .sumReducedFisher(datasetSize: run.datasetSize, batchSize: run.batchSize)
        }
    }
}

/// The Squisher of a training run: after training, the run's optimizer's squared-gradient
/// accumulator (Adam's `exp_avg_sq`, RMSprop's `square_avg`, Adagrad's `sum`) read through
/// ``Squisher`` and scaled by the run's `N` and `B` [1]. Nothing happens during training.
///
/// [1]: Li, Dangel, Tam, Raffel 2025, Fishers for Free?
public struct RecycledSquisher: TrainingRunEstimator {
    /// `"squisher"`.
    public var name: String { "squisher" }
    /// `.trainingRun`.
    public var requirement: EstimatorRequirement { .trainingRun }
    /// The scale of the result.
    public var scaling: RunScaling
    /// Divide the EMA by `1 − β₂ᵗ`.
    public var biasCorrection: Bool
    /// What to do with a parameter that has no optimizer state.
    public var unobserved: UnobservedParameterPolicy

    /// A Squisher read after training (default: `N·v`, no bias correction, unobserved parameters
    /// are an error).
    public init(scaling: RunScaling = .datasetSize, biasCorrection: Bool = false, unobserved: UnobservedParameterPolicy = .fail) {
        self.scaling = scaling
        self.biasCorrection = biasCorrection
        self.unobserved = unobserved
    }

    /// ``Squisher/estimate(model:data:)`` on the run's optimizer and model.
    public func estimate(_ run: TrainingRun, observation: Void) throws -> Importance {
        try Squisher(optimizer: run.optimizer, biasCorrection: biasCorrection, scaling: scaling.scaling(for: run), unobserved: unobserved)
            .estimate(model: run.model, data: nil)
    }
}

/// A Squisher for any optimizer, SGD included: a ``SquaredGradientAccumulator`` attached to the
/// run's post-step hook before training, read after it [1].
///
/// [1]: Li, Dangel, Tam, Raffel 2025, Fishers for Free?
public struct HookSquisher: TrainingRunEstimator {
    /// The accumulation rule (`.ema(beta2:)` or `.runningSum`).
    public var rule: SquaredGradientAccumulator.Rule
    /// The scale of the result.
    public var scaling: RunScaling
    /// Divide the EMA by `1 − β₂ᵏ` for `k` accumulated steps.
    public var biasCorrection: Bool

    /// An accumulator with this rule and scale.
    public init(rule: SquaredGradientAccumulator.Rule, scaling: RunScaling = .datasetSize, biasCorrection: Bool = false) {
        self.rule = rule
        self.scaling = scaling
        self.biasCorrection = biasCorrection
    }

    /// The accumulator's name (`"squisher-ema0.999"`, `"squisher-sum"`).
    public var name: String {
        switch rule {
        case .ema(let beta2): "squisher-ema\(beta2)"
        case .runningSum: "squisher-sum"
        }
    }
    /// `.trainingRun`.
    public var requirement: EstimatorRequirement { .trainingRun }

    /// Attaches a fresh accumulator to the run's optimizer.
    /// - Throws: ``EstimatorError`` for a `beta2` outside [0, 1).
    public func prepare(for run: TrainingRun) throws -> SquaredGradientAccumulator {
        let accumulator = try SquaredGradientAccumulator(rule: rule, biasCorrection: biasCorrection, scaling: scaling.scaling(for: run))
        accumulator.attach(to: run.optimizer)
        return accumulator
    }

    /// The accumulated `v` (scaled), the accumulator detached.
    public func estimate(_ run: TrainingRun, observation accumulator: SquaredGradientAccumulator) throws -> Importance {
        accumulator.detach()
        return try accumulator.estimate(model: run.model, data: nil)
    }
}

/// The joint empirical Fisher over mini-batches of the run's batch size `B`, divided by `B`:
/// `(1/B) Σ_b (Σ_{n∈b} g_n)²` on the run's training data at the trained parameters, on the scale
/// of `N·v` (`N·B·ḡ²` averaged over an epoch's batches is `Σ_b (Σ_{n∈b} g_n)²`, see
/// ``SquisherScaling``) [1].
///
/// [1]: Li, Dangel, Tam, Raffel 2025, Fishers for Free?
public struct TrainingBatchJointFisher: TrainingRunEstimator {
    /// `"joint-empirical-fisher"`.
    public var name: String { "joint-empirical-fisher" }
    /// `.data`.
    public var requirement: EstimatorRequirement { .data }
    /// Divide by `B` (on the scale of `N·v`) or not (on the scale of a sum-reduced Fisher).
    public var dividedByBatchSize: Bool

    /// The joint Fisher over the run's mini-batches, divided by `B` unless told otherwise.
    public init(dividedByBatchSize: Bool = true) { self.dividedByBatchSize = dividedByBatchSize }

    /// ``JointEmpiricalFisher`` with the run's batch size on its data.
    public func estimate(_ run: TrainingRun, observation: Void) throws -> Importance {
        let joint = try JointEmpiricalFisher(batchSize: run.batchSize).estimate(model: run.model, data: run.data)
        return dividedByBatchSize ? try joint.scaled(by: 1 / Double(run.batchSize)) : joint
    }
}
