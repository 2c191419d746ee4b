import SquisherEstimators
import SquisherTensor

/// Fisher merging (Matena & Raffel 2022): the per-parameter weighted average
/// `θ = Σ_i λ_i F̃_i θ_i / Σ_i λ_i F̃_i`, `F̃_i = max(F_i, ε_i)`, of `M` models with the same layout [1].
///
/// Only ratios of importances matter, so the raw Squisher `v` works as is [2] — provided the floor
/// `ε_i` does not impose a scale of its own. The default floor is therefore **relative to each
/// model's importance**: `ε_i = κ · mean(F_i)` over the entries being merged (``Floor/relativeToMean(_:)``,
/// `κ = 1e-6`). Multiplying model `i`'s importance by `c` multiplies its floor by `c` too, so the merge
/// is the same for raw `v`, `B·v`, `N·v` or a sum-reduced Fisher (exactly, when every model is scaled
/// alike). An absolute floor (``Floor/absolute(_:)``, the reference code's `1e-6`) is kept for
/// reproducing that code: on raw `v` of a converged transformer (median `exp_avg_sq` 5e-11 on a
/// BERT) it replaces almost every entry and turns the merge into a plain average. The result reports
/// how many entries each model's floor replaced.
///
/// Options: per-model weights `λ_i`, and optional per-model normalization `c_i = λ_i / ‖F_i‖₂` (over
/// all merged tensors of model `i`). Parameters that some model has no importance for fall back to
/// the `λ`-weighted plain average, and the result lists them.
///
/// [1]: Matena & Raffel 2022, Merging Models with Fisher-Weighted Averaging.
/// [2]: Li, Dangel, Tam, Raffel 2025, Fishers for Free?
public struct FisherMerging: Sendable {
    /// The floor `ε_i` applied to model `i`'s importance before weighting.
    public enum Floor: Sendable, Hashable {
        /// `ε_i = κ · mean(F_i)`, the mean over every entry of model `i`'s importance that is merged
        /// (all tensors that every model has an importance for). Scale-free. `κ > 0`.
        case relativeToMean(Float)
        /// A fixed `ε` for every model (`> 0`), on the importance's own scale.
        case absolute(Float)

        /// The absolute floor for an importance whose merged entries sum to `sum` over `count`
        /// entries (the smallest positive normal float when that mean is 0, so weights stay positive).
        public func resolved(sum: Double, count: Int) -> Float {
            switch self {
            case .absolute(let epsilon): return epsilon
            case .relativeToMean(let kappa):
                let mean = count > 0 ? sum / Double(count) : 0
                return Swift.max(Float(Double(kappa) * mean), .leastNormalMagnitude)
            }
        }

        var value: Float {
            switch self { case .absolute(let x), .relativeToMean(let x): x }
        }
    }

    /// The floor (default: relative, `κ = 1e-6`).
    public var floor: Floor
    /// Divide each model's importance by its global L2 norm first.
    public var normalizePerModel: Bool

    /// A Fisher merge with the given floor (default relative to each importance's mean, `κ = 1e-6`).
    public init(floor: Floor = .relativeToMean(1e-6), normalizePerModel: Bool = false) {
        self.floor = floor
        self.normalizePerModel = normalizePerModel
    }

    /// A Fisher merge with an absolute floor `epsilon` (as in Matena & Raffel's code).
    public init(epsilon: Float, normalizePerModel: Bool = false) {
        self.init(floor: .absolute(epsilon), normalizePerModel: normalizePerModel)
    }

    /// The merged parameters, which parameters were plainly averaged, and what the floor did.
    public struct Result: Sendable {
        /// The merged parameters, in the first model's order.
        public var parameters: NamedTensors
        /// Parameters without importance in every model: merged by the weighted plain average.
        public var averagedParameters: [String]
        /// The absolute floor `ε_i` used for each model.
        public var floors: [Float]
        /// For each model, how many of its importance entries were below its floor (replaced by it).
        public var flooredEntries: [Int]
        /// How many entries of each model's importance entered the merge.
        public var importanceEntries: Int
    }

    /// Merges `models` (same names and shapes) with their importances (`nil` for a model without).
    /// - Parameter weights: `λ_i`, default all 1.
    /// - Throws: ``ApplicationError`` for an empty list, mismatched layouts, counts that differ, an
    ///   importance entry that names no parameter, negative/NaN importances or weights, or a
    ///   non-positive floor.
    public func merge(models: [NamedTensors], importances: [Importance?], weights: [Double]? = nil) throws(ApplicationError) -> Result {
        let lambdas = try validated(models: models, importances: importances, weights: weights)
        // An entry that names no parameter (an importance of a sub-model: `0.weight` for `0.0.weight`)
        // would leave its parameter silently averaged: an error. Missing entries are averaged and reported.
        for importance in importances.compactMap({ $0 }) {
            try importance.checkNames(matching: models[0].names, required: [], application: Self.application)
        }
        // Floors and norms from the entries that are merged with importances.
        var totals = [ImportanceTotals](repeating: ImportanceTotals(), count: models.count)
        for (name, reference) in models[0] {
            guard let fishers = try fisherTensors(name, shape: reference.shape, importances: importances) else { continue }
            for (i, fisher) in fishers.enumerated() { fisher.scalars.withUnsafeBufferPointer { totals[i].add($0) } }
        }
        let (floors, coefficients) = resolve(totals, weights: lambdas)
        return try merge(models: models, importances: importances, coefficients: coefficients, floors: floors)
    }

    /// The sum, sum of squares and count of one model's importance entries that enter the merge:
    /// what the relative floor (the mean) and the per-model normalization (the L2 norm) need.
    public struct ImportanceTotals: Sendable, Hashable {
        /// `Σ F`, in Double.
        public var sum: Double = 0
        /// `Σ F²`, in Double.
        public var squares: Double = 0
        /// The number of entries.
        public var count: Int = 0

        /// Empty totals.
        public init() {}

        /// Adds `values` (``FloatScan/sumAndSquares(_:)``: the same order for the same chunking, in
        /// memory or streamed).
        public mutating func add(_ values: UnsafeBufferPointer<Float>) {
            let (sum, squares) = FloatScan.sumAndSquares(values)
            self.sum += sum
            self.squares += squares
            count += values.count
        }

        /// Adds another model part's totals.
        public mutating func add(_ other: ImportanceTotals) {
            sum += other.sum
            squares += other.squares
            count += other.count
        }
    }

    /// Each model's absolute floor and coefficient (`λ_i`, divided by `‖F_i‖₂` when normalizing) from
    /// its importance totals.
    public func resolve(_ totals: [ImportanceTotals], weights: [Double]) -> (floors: [Float], coefficients: [Double]) {
        let floors = totals.map { floor.resolved(sum: $0.sum, count: $0.count) }
        let coefficients = normalizePerModel ? zip(weights, totals).map { $1.squares > 0 ? $0 / $1.squares.squareRoot() : $0 } : weights
        return (floors, coefficients)
    }

    /// The merge with resolved per-model coefficients (`λ_i`, already divided by the norms when
    /// normalizing) and absolute floors: the arithmetic that both the in-memory merge and the
    /// streamed checkpoint merge (chunk by chunk, floors resolved over the whole checkpoint) run.
    /// - Throws: ``ApplicationError`` as ``merge(models:importances:weights:)``.
    public func merge(models: [NamedTensors], importances: [Importance?], coefficients: [Double], floors: [Float]) throws(ApplicationError) -> Result {
        _ = try validated(models: models, importances: importances, weights: coefficients)
        guard floors.count == models.count, floors.allSatisfy({ $0 > 0 && $0.isFinite }) else {
            throw ApplicationError(application: Self.application, problem: "floors must be \(models.count) finite numbers > 0, got \(floors)")
        }
        var merged = NamedTensors()
        var averaged: [String] = []
        var floored = [Int](repeating: 0, count: models.count)
        var entries = 0
        for (name, reference) in models[0] {
            let fishers = try fisherTensors(name, shape: reference.shape, importances: importances)
            if fishers == nil { averaged.append(name) } else { entries += reference.count }
            var scalars = [Float](repeating: 0, count: reference.count)
            withBuffers(models.map { $0[name]!.scalars }) { parameters in
                withBuffers(fishers?.map(\.scalars) ?? []) { fisherBuffers in
                    scalars.withUnsafeMutableBufferPointer { out in
                        Self.mergeElements(parameters: parameters, importances: fishers == nil ? nil : fisherBuffers,
                                           coefficients: coefficients, floors: floors, into: out, flooredEntries: &floored)
                    }
                }
            }
            merged[name] = Tensor(uncheckedShape: reference.shape, scalars: scalars)
        }
        return Result(parameters: merged, averagedParameters: averaged, floors: floors, flooredEntries: floored, importanceEntries: entries)
    }

    /// The Fisher-merge rule on one run of elements, the arithmetic of every Fisher (and plain)
    /// merge, in memory or streamed: `out[j] = Σ_i c_i F̃_ij θ_ij / Σ_i c_i F̃_ij` with
    /// `F̃_ij = max(F_ij, ε_i)`, accumulated in Double in model order; without importances
    /// (`importances == nil`) the `c`-weighted plain average. Models with `c_i = 0` are skipped.
    /// - Parameters:
    ///   - parameters: each model's `θ_i` (all `out.count` long).
    ///   - importances: each model's `F_i` (finite, `≥ 0`; same lengths), or nil.
    ///   - coefficients: `c_i ≥ 0`, not all zero. floors: `ε_i > 0`.
    ///   - flooredEntries: incremented, per model, by the number of its entries below its floor.
    public static func mergeElements(
        parameters: [UnsafeBufferPointer<Float>], importances: [UnsafeBufferPointer<Float>]?, coefficients: [Double], floors: [Float],
        into out: UnsafeMutableBufferPointer<Float>, flooredEntries: inout [Int]
    ) {
        let block = 1024
        withUnsafeTemporaryAllocation(of: Double.self, capacity: 2 * block) { scratch in
            let numerator = scratch.baseAddress!, denominator = numerator + block
            var start = 0
            while start < out.count {
                let n = Swift.min(block, out.count - start)
                numerator.update(repeating: 0, count: n)
                denominator.update(repeating: 0, count: n)
                for i in parameters.indices where coefficients[i] > 0 {
                    let theta = parameters[i].baseAddress! + start, c = coefficients[i]
                    if let importances {
                        let fisher = importances[i].baseAddress! + start, floor = floors[i]
                        var below = 0
                        for j in 0..<n {
                            let f = fisher[j] < floor ? floor : fisher[j]
                            below &+= fisher[j] < floor ? 1 : 0
                            let w = c * Double(f)
                            numerator[j] += w * Double(theta[j])
                            denominator[j] += w
                        }
                        flooredEntries[i] += below
                    } else {
                        for j in 0..<n {
                            numerator[j] += c * Double(theta[j])
                            denominator[j] += c
                        }
                    }
                }
                for j in 0..<n { out[start + j] = Float(numerator[j] / denominator[j]) }
                start += n
            }
        }
    }

    static let application = "fisher-merging"

    /// Checks layouts, counts, weights and the floor; returns the weights (default all ones).
    private func validated(models: [NamedTensors], importances: [Importance?], weights: [Double]?) throws(ApplicationError) -> [Double] {
        try Validation.checkSameLayout(models, application: Self.application)
        guard importances.count == models.count else {
            throw ApplicationError(application: Self.application, problem: "got \(importances.count) importances for \(models.count) models")
        }
        let lambdas = weights ?? Array(repeating: 1, count: models.count)
        guard lambdas.count == models.count, lambdas.allSatisfy({ $0 >= 0 && $0.isFinite }), lambdas.contains(where: { $0 > 0 }) else {
            throw ApplicationError(application: Self.application, problem: "weights must be \(models.count) finite non-negative numbers, not all zero; got \(lambdas)")
        }
        let total = lambdas.reduce(0, +)
        guard total.isFinite else {
            throw ApplicationError(application: Self.application, problem: "the weights' sum overflows (\(lambdas)); give smaller weights (only their ratios matter)")
        }
        guard floor.value > 0, floor.value.isFinite else {
            throw ApplicationError(application: Self.application, problem: "the floor must be finite and > 0, got \(floor)")
        }
        return lambdas
    }

    /// Every model's importance of `name`, or `nil` when some model has none for it.
    private func fisherTensors(_ name: String, shape: [Int], importances: [Importance?]) throws(ApplicationError) -> [Tensor]? {
        var fishers: [Tensor] = []
        for (i, importance) in importances.enumerated() {
            guard let importance,
                  let values = try Validation.checkImportance(importance, covers: name, shape: shape, application: Self.application, owner: "model \(i)")
            else { return nil }
            fishers.append(values)
        }
        return fishers
    }
}

/// Calls `body` with unsafe views of `arrays` (valid only inside `body`).
func withBuffers<R>(_ arrays: [[Float]], _ body: ([UnsafeBufferPointer<Float>]) -> R) -> R {
    func nest(_ index: Int, _ views: [UnsafeBufferPointer<Float>]) -> R {
        guard index < arrays.count else { return body(views) }
        return arrays[index].withUnsafeBufferPointer { nest(index + 1, views + [$0]) }
    }
    return nest(0, [])
}

/// Plain (weighted) parameter averaging, the Fisher-free merging baseline: `θ = Σ λ_i θ_i / Σ λ_i`.
public enum ParameterAveraging {
    /// - Throws: ``ApplicationError`` for an empty list, mismatched layouts or bad weights.
    public static func merge(models: [NamedTensors], weights: [Double]? = nil) throws(ApplicationError) -> NamedTensors {
        try FisherMerging().merge(models: models, importances: Array(repeating: nil, count: models.count), weights: weights).parameters
    }
}
