import SquisherTensor

/// A named diagonal: one non-negative number per parameter, with the parameters' names and shapes
/// (`0.weight` → `[out, in]`). The common currency between estimators and applications: any
/// application consumes an `Importance`, whichever estimator (or checkpoint) produced it.
///
/// `conventions` records how the values were made (reduction, scaling, bias correction, data
/// size), because the applications that depend on absolute scale (EWC, UBGM, Task2Vec ratios)
/// need it [1].
///
/// [1]: Li, Dangel, Tam, Raffel 2025, Fishers for Free?
public struct Importance: Sendable, Equatable {
    /// Values by parameter name (same names, order and shapes as the parameters).
    public var values: NamedTensors
    /// The estimator that produced it (e.g. `"empirical-fisher"`, `"squisher"`).
    public var estimator: String
    /// Free-form conventions, e.g. `["reduction": "sum", "scaling": "N", "samples": "1438"]`.
    /// Data-based estimators record their ``LikelihoodLoss``'s: `"loss"` (softmax cross-entropy or
    /// Gaussian with its `"variance"`), `"reduction"` (`"sum"` over samples), `"sample loss"`
    /// (`"sum over the sequence's predicted tokens"` for a language model: a sample is a sequence),
    /// `"targets"` (causal shift), `"ignore index"`, `"label smoothing"`, and `"labels"` (true,
    /// exact expectation, sampled).
    public var conventions: [String: String]
    /// What it cost to compute.
    public var cost: EstimationCost

    /// Creates an importance; every value must be finite and non-negative.
    /// - Throws: ``TensorError/invalidArgument(argument:reason:)`` naming the first tensor with a
    ///   negative or non-finite entry.
    public init(values: NamedTensors, estimator: String, conventions: [String: String] = [:], cost: EstimationCost = .free) throws(TensorError) {
        for (name, tensor) in values {
            if let bad = tensor.scalars.withUnsafeBufferPointer(FloatScan.firstNegativeOrNonFinite) {
                throw .invalidArgument(argument: "importance of '\(name)'", reason: "entry \(bad) is \(tensor.scalars[bad]); importances must be finite and >= 0")
            }
        }
        self.values = values
        self.estimator = estimator
        self.conventions = conventions
        self.cost = cost
    }

    /// Creates an importance without validation (for estimators whose values are sums of squares).
    public init(unchecked values: NamedTensors, estimator: String, conventions: [String: String] = [:], cost: EstimationCost = .free) {
        self.values = values
        self.estimator = estimator
        self.conventions = conventions
        self.cost = cost
    }

    /// Parameter names in order.
    public var names: [String] { values.names }
    /// The value tensor of one parameter.
    public subscript(name: String) -> Tensor? { values[name] }
    /// All values concatenated in parameter order (for metrics).
    public var flattened: [Float] { values.names.flatMap { values[$0]!.scalars } }
    /// The total number of entries.
    public var count: Int { values.scalarCount }
}
