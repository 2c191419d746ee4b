import SquisherEstimators
import SquisherLayers
import SquisherTensor
import SquisherTraining

/// Elastic weight consolidation (Kirkpatrick et al. 2017): when training later tasks, add
/// `(λ/2) Σ_i F_i (θ_i − θ*_i)²` per earlier task (θ* its final parameters, F its importance) [1].
///
/// Modes: a separate penalty per task, or online EWC (Schwarz et al. 2018) with one running
/// importance `F ← γ F_old + F_new` anchored at the latest θ*. **Scale matters**: the right `λ`
/// moves by orders of magnitude with the importance's scale, so use the Squisher with `N·v`
/// scaling (on the scale of a sum-reduced Fisher over N samples) and sweep `λ` [2].
///
/// The penalty is added to the loss *as is* (not divided by the batch size), whatever the loss's
/// reduction, as in van de Ven's code.
///
/// [1]: Kirkpatrick et al. 2017, Overcoming catastrophic forgetting in neural networks.
/// [2]: Li, Dangel, Tam, Raffel 2025, Fishers for Free?
public final class ElasticWeightConsolidation: TrainingRegularizer {
    /// How penalties from several tasks combine.
    public enum Mode: Sendable, Hashable {
        /// One penalty per earlier task.
        case separate
        /// One running importance, `F ← γ F_old + F_new`, anchored at the latest parameters.
        case online(gamma: Double)
    }

    /// The penalty strength `λ`.
    public var lambda: Double
    public let mode: Mode
    /// The consolidated (importance, anchor) pairs.
    public private(set) var terms: [(importance: NamedTensors, anchor: NamedTensors)] = []

    /// - Throws: ``ApplicationError`` for a negative or non-finite `λ` or `γ` outside [0, 1].
    public init(lambda: Double, mode: Mode = .separate) throws(ApplicationError) {
        guard lambda >= 0, lambda.isFinite else { throw ApplicationError(application: "ewc", problem: "lambda must be finite and >= 0, got \(lambda)") }
        if case .online(let gamma) = mode, !(0...1).contains(gamma) {
            throw ApplicationError(application: "ewc", problem: "gamma must be in [0, 1], got \(gamma)")
        }
        self.lambda = lambda
        self.mode = mode
    }

    /// Records a finished task: its importance and the parameters to stay close to.
    /// - Throws: ``ApplicationError`` naming the parameters missing from the importance, entries
    ///   that name no parameter of `anchor`, bad values, or an importance that is zero everywhere.
    public func consolidate(importance: Importance, anchor: NamedTensors) throws(ApplicationError) {
        try Validation.checkNames(importance, expected: anchor.names, known: anchor.names, application: "ewc")
        try Validation.checkNotAllZero(importance, names: anchor.names, application: "ewc")
        var fisher = NamedTensors()
        for (name, theta) in anchor {
            guard let values = try Validation.checkImportance(importance, covers: name, shape: theta.shape, application: "ewc", owner: importance.estimator) else {
                throw ApplicationError(application: "ewc", problem: "importance '\(importance.estimator)' has no entry for '\(name)'")
            }
            fisher[name] = values
        }
        switch mode {
        case .separate:
            terms.append((fisher, anchor))
        case .online(let gamma):
            if let previous = terms.first {
                fisher = fisher.mapTensors { name, f in
                    Tensor(uncheckedShape: f.shape, scalars: zip(f.scalars, previous.importance[name]!.scalars).map { $0 + Float(gamma) * $1 })
                }
            }
            terms = [(fisher, anchor)]
        }
    }

    public func addPenalty(to parameters: [(name: String, parameter: Parameter)], batchSize: Int) throws -> Double {
        guard lambda > 0 else { return 0 }
        var penalty = 0.0
        let lambda = Float(self.lambda)
        for (name, parameter) in parameters where parameter.requiresGradient {
            for term in terms {
                guard let fisher = term.importance[name], let anchor = term.anchor[name] else { continue }
                try fisher.checkShape(parameter.value.shape, "EWC importance of '\(name)'")
                var gradient = parameter.gradient
                parameter.gradient = Tensor(zeros: [])  // keep `gradient` uniquely referenced
                parameter.value.withUnsafeBufferPointer { theta in
                    fisher.withUnsafeBufferPointer { f in
                        anchor.withUnsafeBufferPointer { star in
                            gradient.withUnsafeMutableBufferPointer { g in
                                for i in 0..<theta.count {
                                    let delta = theta[i] - star[i]
                                    penalty += Double(f[i] * delta * delta)
                                    g[i] = lambda * f[i] * delta + g[i]
                                }
                            }
                        }
                    }
                }
                parameter.gradient = gradient
            }
        }
        return Double(lambda) / 2 * penalty
    }
}
