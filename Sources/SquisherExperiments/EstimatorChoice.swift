import SquisherData
import SquisherEstimators
import SquisherLayers
import SquisherOptimizers
import SquisherTensor

/// The estimators compared side by side in every experiment: the three Fisher variants, the
/// Squisher, and the application's own Fisher-free baseline.
public enum EstimatorChoice: String, Sendable, CaseIterable, Codable {
    /// Empirical Fisher `Σ_n g_n²` on the task's training data (the paper's "Fisher").
    case empiricalFisher = "fisher"
    /// Exact true Fisher (= GGN diagonal) on the task's training data.
    case trueFisher = "true-fisher"
    /// Joint empirical Fisher over mini-batches of the training batch size, divided by that
    /// batch size (`(1/B) Σ_b (Σ_{n∈b} g_n)²`), on the scale of `N·v`.
    case jointFisher = "joint"
    /// The Squisher: Adam's `exp_avg_sq` from training, scaled by `N` (raw `v` where the
    /// application is scale-free, which gives identical results there).
    case squisher = "squisher"
    /// The application's Fisher-free baseline (averaging, random mask, data-set size, no penalty).
    case baseline = "baseline"

    /// Estimators that produce an importance (all but the baseline).
    public static let importanceBased: [EstimatorChoice] = [.empiricalFisher, .trueFisher, .jointFisher, .squisher]

    /// A display name.
    public var displayName: String {
        switch self {
        case .empiricalFisher: "Fisher (empirical)"
        case .trueFisher: "true Fisher"
        case .jointFisher: "joint empirical Fisher"
        case .squisher: "Squisher (N·v)"
        case .baseline: "Fisher-free baseline"
        }
    }

    /// The importance of `model` after training with `optimizer` on `data` (`nil` for the baseline).
    /// Fisher variants are sum-reduced over `data`; the Squisher is `N·v` with `N = data.count`.
    public func importance(model: any Layer, optimizer: any Optimizer, data: Dataset, batchSize: Int) throws -> Importance? {
        switch self {
        case .empiricalFisher: return try EmpiricalFisher(batchSize: 256).estimate(model: model, data: data)
        case .trueFisher: return try TrueFisherExact(batchSize: 256).estimate(model: model, data: data)
        case .jointFisher: return try JointEmpiricalFisher(batchSize: batchSize).estimate(model: model, data: data).scaled(by: 1 / Double(batchSize))
        case .squisher: return try Squisher(optimizer: optimizer, scaling: .datasetSize(data.count)).estimate(model: model, data: data)
        case .baseline: return nil
        }
    }
}
