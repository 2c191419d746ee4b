import SquisherTensor

extension Importance {
    /// Every value multiplied by `factor` (e.g. the Squisher's `N·v`).
    /// - Throws: ``TensorError`` for a negative or non-finite factor.
    public func scaled(by factor: Double) throws(TensorError) -> Importance {
        guard factor >= 0, factor.isFinite else { throw .invalidArgument(argument: "scale factor", reason: "must be finite and >= 0, got \(factor)") }
        var result = self
        result.values = values.mapTensors { _, t in Float(factor) * t }
        return result
    }

    /// The element-wise sum with another importance over the same parameters (e.g. accumulating
    /// Fishers over tasks in EWC).
    /// - Throws: ``TensorError`` naming a parameter missing from `other` or of another shape.
    public func adding(_ other: Importance) throws(TensorError) -> Importance {
        var result = self
        for (name, tensor) in values {
            guard let rhs = other.values[name] else {
                throw .invalidArgument(argument: "importance '\(other.estimator)'", reason: "has no entry for parameter '\(name)'")
            }
            result.values[name] = try tensor + rhs
        }
        return result
    }

    /// Every value raised to at least `epsilon` (Fisher merging's floor).
    public func floored(at epsilon: Float) -> Importance {
        var result = self
        result.values = values.mapTensors { _, t in t.map { Swift.max($0, epsilon) } }
        return result
    }

    /// How ``normalized(_:)`` rescales.
    public enum Normalization: String, Sendable, CaseIterable {
        /// Divide by the sum of all entries (entries sum to 1).
        case sum
        /// Divide by the largest entry (maximum is 1).
        case maximum
        /// Divide by the Euclidean norm over all entries (Matena & Raffel's per-model normalization).
        case l2
    }

    /// All values divided by one global constant so that the chosen norm is 1 (an all-zero
    /// importance is returned unchanged).
    public func normalized(_ normalization: Normalization) -> Importance {
        let all = flattened
        let norm: Double
        switch normalization {
        case .sum: norm = all.reduce(0.0) { $0 + Double($1) }
        case .maximum: norm = Double(all.max() ?? 0)
        case .l2: norm = all.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
        }
        guard norm > 0 else { return self }
        return (try? scaled(by: 1 / norm)) ?? self
    }

    /// A restriction to the named parameters (in the given order).
    /// - Throws: ``TensorError`` naming a missing parameter.
    public func selecting(_ names: [String]) throws(TensorError) -> Importance {
        var result = self
        result.values = try NamedTensors(names.map { name throws(TensorError) in (name, try values.tensor(named: name)) })
        return result
    }

    /// Per-tensor statistics for reports.
    public struct TensorSummary: Sendable, Hashable {
        public var name: String
        public var shape: [Int]
        public var sum: Double
        public var mean: Double
        public var minimum: Float
        public var maximum: Float
        /// Fraction of exactly zero entries.
        public var zeroFraction: Double
    }

    /// Statistics of every tensor, in parameter order.
    public func summary() -> [TensorSummary] {
        values.map { name, tensor in
            let zeros = tensor.scalars.filter { $0 == 0 }.count
            return TensorSummary(
                name: name, shape: tensor.shape, sum: tensor.sum(), mean: tensor.mean(),
                minimum: tensor.scalars.min() ?? 0, maximum: tensor.scalars.max() ?? 0,
                zeroFraction: Double(zeros) / Double(max(tensor.count, 1)))
        }
    }
}
