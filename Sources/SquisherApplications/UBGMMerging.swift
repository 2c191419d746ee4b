import SquisherEstimators
import SquisherTensor

/// Uncertainty-based gradient matching merging (Daheim et al. 2024) [1]. With a base model `θ₀`,
/// its importance `F₀` (or only a scalar prior precision `δ₀`), and task models `θ_t` with
/// importances `F_t` and task scales `α_t`, per element:
///
/// `P = 1 / (Σ_t α_t F_t + F₀ + δ₀)`,  `θ = θ₀ + Σ_t α_t P (F_t + F₀ + δ₀)(θ_t − θ₀)`.
///
/// With `α_t = 1` and `δ₀ = 0` this is `θ₀ + (F₀ + Σ F_t)⁻¹ Σ (F₀ + F_t)(θ_t − θ₀)`. **Absolute scale
/// matters** (unlike Fisher merging): importances must be on the Fisher's sum scale — the Squisher
/// with `N·v` scaling, or a Fisher summed over `N_t` samples (the reference code's `N_t F_t`) [2].
///
/// [1]: Daheim, Möllenhoff, Ponti, Gurevych, Khan 2024, Model Merging by Uncertainty-Based Gradient Matching.
/// [2]: Li, Dangel, Tam, Raffel 2025, Fishers for Free?
public struct UBGMMerging: Sendable {
    /// The scalar prior precision `δ₀` added everywhere (1e-12 in the reference code; use a larger
    /// value when no base importance is known).
    public var priorPrecision: Float

    public init(priorPrecision: Float = 1e-12) { self.priorPrecision = priorPrecision }

    /// The merged parameters and how the base's layout differed from the tasks'.
    public struct Result: Sendable {
        /// The merged parameters, in the first task model's order and layout.
        public var parameters: NamedTensors
        /// Task parameters the base does not have (e.g. a classifier head added for fine-tuning):
        /// merged with `F₀ = δ₀ = 0`, i.e. `θ = Σ_t α_t F_t θ_t / Σ_t α_t F_t` (which no longer
        /// depends on `θ₀`); entries whose task importances are all 0 get the `α`-weighted average.
        public var parametersWithoutBase: [String]
        /// Base parameters no task model has (e.g. a pretraining head): not in the result.
        public var baseOnlyParameters: [String]
        /// Entries of ``parametersWithoutBase`` merged by the `α`-weighted average because every
        /// task importance was 0 there.
        public var averagedEntries: Int
    }

    /// Merges task models into the base; see ``mergeReporting(base:baseImportance:tasks:taskImportances:scales:)``.
    public func merge(
        base: NamedTensors, baseImportance: Importance?, tasks: [NamedTensors], taskImportances: [Importance], scales: [Double]? = nil
    ) throws(ApplicationError) -> NamedTensors {
        try mergeReporting(base: base, baseImportance: baseImportance, tasks: tasks, taskImportances: taskImportances, scales: scales).parameters
    }

    /// Merges task models into the base. The task models must share one layout, which the result
    /// has; the base may lack some of their tensors (a pretrained encoder without the fine-tuning
    /// head) or have extra ones (a pretraining head): both are handled as ``Result`` describes.
    /// - Parameters:
    ///   - baseImportance: `F₀`, or `nil` to use only ``priorPrecision``.
    ///   - scales: `α_t`, default all 1.
    /// - Throws: ``ApplicationError`` for no task models, mismatched layouts or shapes,
    ///   negative/NaN importances, a task without importance, or a non-positive total precision.
    public func mergeReporting(
        base: NamedTensors, baseImportance: Importance?, tasks: [NamedTensors], taskImportances: [Importance], scales: [Double]? = nil
    ) throws(ApplicationError) -> Result {
        let application = "ubgm-merging"
        guard !tasks.isEmpty else { throw ApplicationError(application: application, problem: "needs at least one task model, got none") }
        try Validation.checkSameLayout(tasks, application: application, what: "task model")
        guard taskImportances.count == tasks.count else {
            throw ApplicationError(application: application, problem: "got \(taskImportances.count) task importances for \(tasks.count) task models")
        }
        let alphas = scales ?? Array(repeating: 1, count: tasks.count)
        guard alphas.count == tasks.count, alphas.allSatisfy({ $0.isFinite && $0 >= 0 }), alphas.reduce(0, +).isFinite else {
            throw ApplicationError(application: application, problem: "scales must be \(tasks.count) finite non-negative numbers with a finite sum, got \(alphas)")
        }
        guard priorPrecision >= 0, priorPrecision.isFinite else {
            throw ApplicationError(application: application, problem: "priorPrecision must be finite and >= 0, got \(priorPrecision)")
        }
        var result = Result(parameters: NamedTensors(), parametersWithoutBase: [], baseOnlyParameters: base.names.filter { tasks[0][$0] == nil }, averagedEntries: 0)
        for (name, reference) in tasks[0] {
            var fisherTerms: [[Float]] = []
            for (t, importance) in taskImportances.enumerated() {
                guard let values = try Validation.checkImportance(importance, covers: name, shape: reference.shape, application: application, owner: "task \(t)") else {
                    throw ApplicationError(application: application, problem: "task \(t)'s importance has no entry for '\(name)'")
                }
                fisherTerms.append(values.scalars)
            }
            let thetas = tasks.map { $0[name]!.scalars }
            guard let theta0 = base[name] else {
                result.parametersWithoutBase.append(name)
                var merged = [Float](repeating: 0, count: reference.count)
                for j in 0..<reference.count {
                    var numerator = 0.0, denominator = 0.0, plain = 0.0, alphaSum = 0.0
                    for t in tasks.indices {
                        numerator += alphas[t] * Double(fisherTerms[t][j]) * Double(thetas[t][j])
                        denominator += alphas[t] * Double(fisherTerms[t][j])
                        plain += alphas[t] * Double(thetas[t][j])
                        alphaSum += alphas[t]
                    }
                    if denominator > 0 { merged[j] = Float(numerator / denominator) } else {
                        guard alphaSum > 0 else {
                            throw ApplicationError(application: application, problem: "'\(name)' is not in the base and every task scale is 0")
                        }
                        merged[j] = Float(plain / alphaSum)
                        result.averagedEntries += 1
                    }
                }
                result.parameters[name] = Tensor(uncheckedShape: reference.shape, scalars: merged)
                continue
            }
            guard theta0.shape == reference.shape else {
                throw ApplicationError(application: application, problem: "parameter '\(name)' has shape \(theta0.shape) in the base but \(reference.shape) in the task models")
            }
            let f0 = try baseImportance.flatMap { imp throws(ApplicationError) in
                try Validation.checkImportance(imp, covers: name, shape: theta0.shape, application: application, owner: "the base model")
            }?.scalars
            let base0 = theta0.scalars
            var merged = base0
            for j in 0..<theta0.count {
                let prior = Double(f0?[j] ?? 0) + Double(priorPrecision)
                var precision = prior
                for t in tasks.indices { precision += alphas[t] * Double(fisherTerms[t][j]) }
                guard precision > 0 else {
                    throw ApplicationError(application: application, problem: "total precision of '\(name)' entry \(j) is 0: give a base importance or priorPrecision > 0")
                }
                var update = 0.0
                for t in tasks.indices {
                    update += alphas[t] * (Double(fisherTerms[t][j]) + prior) * Double(thetas[t][j] - base0[j])
                }
                merged[j] = Float(Double(base0[j]) + update / precision)
            }
            result.parameters[name] = Tensor(uncheckedShape: theta0.shape, scalars: merged)
        }
        return result
    }
}
