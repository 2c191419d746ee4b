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

    /// Merges task models into the base.
    /// - Parameters:
    ///   - baseImportance: `F₀`, or `nil` to use only ``priorPrecision``.
    ///   - scales: `α_t`, default all 1.
    /// - Throws: ``ApplicationError`` for no task models, mismatched layouts, negative/NaN
    ///   importances, a task without importance, or a non-positive total precision.
    public func merge(
        base: NamedTensors, baseImportance: Importance?, tasks: [NamedTensors], taskImportances: [Importance], scales: [Double]? = nil
    ) throws(ApplicationError) -> NamedTensors {
        let application = "ubgm-merging"
        guard !tasks.isEmpty else { throw ApplicationError(application: application, problem: "needs at least one task model, got none") }
        try Validation.checkSameLayout([base] + tasks, application: application, what: "model (0 = base)")
        guard taskImportances.count == tasks.count else {
            throw ApplicationError(application: application, problem: "got \(taskImportances.count) task importances for \(tasks.count) task models")
        }
        let alphas = scales ?? Array(repeating: 1, count: tasks.count)
        guard alphas.count == tasks.count, alphas.allSatisfy({ $0.isFinite && $0 >= 0 }) else {
            throw ApplicationError(application: application, problem: "scales must be \(tasks.count) finite non-negative numbers, got \(alphas)")
        }
        guard priorPrecision >= 0, priorPrecision.isFinite else {
            throw ApplicationError(application: application, problem: "priorPrecision must be finite and >= 0, got \(priorPrecision)")
        }
        var merged = NamedTensors()
        for (name, theta0) in base {
            let f0 = try baseImportance.flatMap { imp throws(ApplicationError) in
                try Validation.checkImportance(imp, covers: name, shape: theta0.shape, application: application, owner: "the base model")
            }?.scalars
            var fisherTerms: [[Float]] = []
            for (t, importance) in taskImportances.enumerated() {
                guard let values = try Validation.checkImportance(importance, covers: name, shape: theta0.shape, application: application, owner: "task \(t)") else {
                    throw ApplicationError(application: application, problem: "task \(t)'s importance has no entry for '\(name)'")
                }
                fisherTerms.append(values.scalars)
            }
            var result = theta0.scalars
            for j in 0..<theta0.count {
                let prior = Double(f0?[j] ?? 0) + Double(priorPrecision)
                var precision = prior
                for t in tasks.indices { precision += alphas[t] * Double(fisherTerms[t][j]) }
                guard precision > 0 else {
                    throw ApplicationError(application: application, problem: "total precision of '\(name)' entry \(j) is 0: give a base importance or priorPrecision > 0")
                }
                var update = 0.0
                for t in tasks.indices {
                    update += alphas[t] * (Double(fisherTerms[t][j]) + prior) * Double(tasks[t][name]!.scalars[j] - theta0.scalars[j])
                }
                result[j] = Float(Double(theta0.scalars[j]) + update / precision)
            }
            merged[name] = Tensor(uncheckedShape: theta0.shape, scalars: result)
        }
        return merged
    }
}
