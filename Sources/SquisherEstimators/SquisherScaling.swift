/// How the Squisher rescales the recycled accumulator `v` [1].
///
/// What `v` holds: an EMA of squared **mean** mini-batch gradients `ḡ_t² = ((1/B) Σ_{n∈b_t} g_n)²`
/// (mean-reduced loss, batch size `B`, data-set size `N`). For a batch drawn from the data set,
/// with `m = (1/N) Σ_n g_n` the mean gradient and `F = Σ_n g_n²` the sum-reduced empirical Fisher,
///
/// `E[ḡ²] = (F/N − m²)/B · (N − B)/(N − 1) + m²  ≈  F/(N·B) + m²`,
///
/// so `N·B·E[ḡ²] ≈ F + N(B − 1) m²`: when the gradient noise dominates the mean gradient (near
/// convergence), **`N·B·v` is on the scale of the sum-reduced Fisher and `N·v` is about `1/B` of
/// it**. Exactly, `N·B·ḡ²` averaged over the batches of an epoch is the joint empirical Fisher over
/// mini-batches of size `B`, `Σ_b (Σ_{n∈b} g_n)²`. Measured on the bundled digits (MLP 64-128-10,
/// 30 epochs, the ablation report's scale table): `Σ N·v / Σ F` = 0.046 with Adam at `B = 32`
/// (`1/B` = 0.031), 0.26 at `B = 8`, 0.006 at `B = 128`; `Σ N·B·v / Σ F` = 0.7-2.1 for `B` = 8-128
/// with Adam and with SGD (hook EMA).
///
/// Where the scale does not matter (merging, pruning, FISH masks, Task2Vec after normalization) use
/// `.none`. Where it does (EWC's `λ`, UBGM), `.sumReducedFisher(datasetSize:batchSize:)` matches a
/// sum-reduced Fisher; `.datasetSize(N)` is the paper's `N·v` (the Fisher's `λ` then needs about a
/// factor `B` more). `v` also remembers the gradients of earlier parameters (an EMA over about
/// `1/(1 − β₂)` steps), so on a run that converged quickly it can be far above the Fisher at the
/// final parameters: measure, then sweep `λ`.
///
/// [1]: Li, Dangel, Tam, Raffel 2025, Fishers for Free?
public enum SquisherScaling: Sendable, Hashable {
    /// Raw `v`.
    case none
    /// `B·v` for batch size `B`.
    case batchSize(Int)
    /// `N·v` for data-set size `N` (the paper's Squisher; about `1/B` of a sum-reduced Fisher).
    case datasetSize(Int)
    /// `N·B·v`: on the scale of the sum-reduced empirical Fisher `Σ_n g_n²` over `N` samples when
    /// training used mean-reduced mini-batches of size `B`.
    case sumReducedFisher(datasetSize: Int, batchSize: Int)
    /// Any other constant factor.
    case factor(Double)

    /// The multiplier.
    public var multiplier: Double {
        switch self {
        case .none: 1
        case .batchSize(let b): Double(b)
        case .datasetSize(let n): Double(n)
        case .sumReducedFisher(let n, let b): Double(n) * Double(b)
        case .factor(let f): f
        }
    }

    /// A short label for reports (`"raw"`, `"B=32"`, `"N=1438"`, `"N·B=1438·32"`).
    public var label: String {
        switch self {
        case .none: "raw"
        case .batchSize(let b): "B=\(b)"
        case .datasetSize(let n): "N=\(n)"
        case .sumReducedFisher(let n, let b): "N·B=\(n)·\(b)"
        case .factor(let f): "x\(f)"
        }
    }
}
