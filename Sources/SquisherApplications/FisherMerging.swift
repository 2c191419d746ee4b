import SquisherEstimators
import SquisherTensor

/// Fisher merging (Matena & Raffel 2022): the per-parameter weighted average
/// `θ = Σ_i λ_i F̃_i θ_i / Σ_i λ_i F̃_i`, `F̃_i = max(F_i, ε)`, of `M` models with the same layout [1].
///
/// Only ratios of importances matter, so the raw Squisher `v` works as is [2]. Options follow the
/// reference code: per-model weights `λ_i`, the floor `ε`, and optional per-model normalization
/// `c_i = λ_i / ‖F_i‖₂` (over all merged tensors of model `i`) that removes any global scale.
/// Parameters that no model has an importance for fall back to the `λ`-weighted plain average, and
/// the result lists them.
///
/// [1]: Matena & Raffel 2022, Merging Models with Fisher-Weighted Averaging.
/// [2]: Li, Dangel, Tam, Raffel 2025, Fishers for Free?
public struct FisherMerging: Sendable {
    /// The floor on every importance (1e-6 in Matena & Raffel's code; 1e-8 in the T5 follow-up).
    public var epsilon: Float
    /// Divide each model's importance by its global L2 norm first.
    public var normalizePerModel: Bool

    public init(epsilon: Float = 1e-6, normalizePerModel: Bool = false) {
        self.epsilon = epsilon
        self.normalizePerModel = normalizePerModel
    }

    /// The merged parameters, and which parameters were plainly averaged.
    public struct Result: Sendable {
        public var parameters: NamedTensors
        /// Parameters without importance in every model: merged by the weighted plain average.
        public var averagedParameters: [String]
    }

    /// Merges `models` (same names and shapes) with their importances (`nil` for a model without).
    /// - Parameter weights: `λ_i`, default all 1.
    /// - Throws: ``ApplicationError`` for an empty list, mismatched layouts, counts that differ,
    ///   negative/NaN importances or weights, or a non-positive `epsilon`.
    public func merge(models: [NamedTensors], importances: [Importance?], weights: [Double]? = nil) throws(ApplicationError) -> Result {
        let application = "fisher-merging"
        try Validation.checkSameLayout(models, application: application)
        guard importances.count == models.count else {
            throw ApplicationError(application: application, problem: "got \(importances.count) importances for \(models.count) models")
        }
        let lambdas = weights ?? Array(repeating: 1, count: models.count)
        guard lambdas.count == models.count, lambdas.allSatisfy({ $0 >= 0 && $0.isFinite }), lambdas.contains(where: { $0 > 0 }) else {
            throw ApplicationError(application: application, problem: "weights must be \(models.count) finite non-negative numbers, not all zero; got \(lambdas)")
        }
        guard epsilon > 0, epsilon.isFinite else { throw ApplicationError(application: application, problem: "epsilon must be > 0, got \(epsilon)") }
        var coefficients = lambdas
        if normalizePerModel {
            for (i, importance) in importances.enumerated() {
                guard let importance else { continue }
                let norm = importance.flattened.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
                if norm > 0 { coefficients[i] /= norm }
            }
        }
        var merged = NamedTensors()
        var averaged: [String] = []
        for (name, reference) in models[0] {
            var fishers: [Tensor?] = []
            for (i, importance) in importances.enumerated() {
                fishers.append(try importance.flatMap { imp throws(ApplicationError) in
                    try Validation.checkImportance(imp, covers: name, shape: reference.shape, application: application, owner: "model \(i)")
                })
            }
            let hasAll = fishers.allSatisfy { $0 != nil }
            if !hasAll { averaged.append(name) }
            var numerator = [Double](repeating: 0, count: reference.count)
            var denominator = [Double](repeating: 0, count: reference.count)
            for i in models.indices where coefficients[i] > 0 {
                let theta = models[i][name]!.scalars
                let fisher = hasAll ? fishers[i]!.scalars : nil
                for j in 0..<reference.count {
                    let w = coefficients[i] * (fisher.map { Double(Swift.max($0[j], epsilon)) } ?? 1)
                    numerator[j] += w * Double(theta[j])
                    denominator[j] += w
                }
            }
            merged[name] = Tensor(uncheckedShape: reference.shape, scalars: zip(numerator, denominator).map { Float($0 / $1) })
        }
        return Result(parameters: merged, averagedParameters: averaged)
    }
}

/// Plain (weighted) parameter averaging, the Fisher-free merging baseline: `θ = Σ λ_i θ_i / Σ λ_i`.
public enum ParameterAveraging {
    /// - Throws: ``ApplicationError`` for an empty list or mismatched layouts.
    public static func merge(models: [NamedTensors], weights: [Double]? = nil) throws(ApplicationError) -> NamedTensors {
        try FisherMerging().merge(models: models, importances: Array(repeating: nil, count: models.count), weights: weights).parameters
    }
}
