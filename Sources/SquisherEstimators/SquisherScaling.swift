/// How the Squisher rescales the recycled accumulator `v` [1].
///
/// `v` averages squared **mean** mini-batch gradients `((1/B) Σ g_n)²`, so it is on the scale of
/// one sample's Fisher divided by `B`-ish; `N·v` puts it on the scale of a sum-reduced Fisher over
/// `N` samples ("the bracket is exactly what Adam squares, hence the factor N"). Use `.none` where
/// only rankings or ratios matter (merging, pruning, masks), `.datasetSize(N)` for EWC.
///
/// [1]: Li, Dangel, Tam, Raffel 2025, Fishers for Free?
public enum SquisherScaling: Sendable, Hashable {
    /// Raw `v`.
    case none
    /// `B·v` for batch size `B` ("when using batches, replace N by B").
    case batchSize(Int)
    /// `N·v` for data-set size `N` (the paper's Squisher).
    case datasetSize(Int)
    /// Any other constant factor.
    case factor(Double)

    /// The multiplier.
    public var multiplier: Double {
        switch self {
        case .none: 1
        case .batchSize(let b): Double(b)
        case .datasetSize(let n): Double(n)
        case .factor(let f): f
        }
    }

    /// A short label for reports (`"raw"`, `"B=32"`, `"N=1438"`).
    public var label: String {
        switch self {
        case .none: "raw"
        case .batchSize(let b): "B=\(b)"
        case .datasetSize(let n): "N=\(n)"
        case .factor(let f): "x\(f)"
        }
    }
}
