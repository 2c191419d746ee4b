import SquisherTensor

/// How closely two importance estimates agree, over all entries or one parameter tensor.
public struct Agreement: Sendable, Hashable, Codable {
    /// Pearson correlation of the values.
    public var pearson: Double
    /// Spearman rank correlation (ties get their average rank).
    public var spearman: Double
    /// Cosine similarity `<a,b>/(|a||b|)`.
    public var cosine: Double
    /// `min_s |a − s·b| / |a|`, the relative L2 error of `b` after the best scale `s = <a,b>/<b,b>`
    /// (0 when `b` is an exact multiple of `a`; scale-free, as the Squisher's `v` is).
    public var relativeErrorAfterScaling: Double
    /// Fraction of the top-`k` entries of `a` that are also among the top-`k` of `b`.
    public var topKOverlap: Double
    /// The `k` of ``topKOverlap`` as a fraction of the entries.
    public var topKFraction: Double
    /// Entries compared.
    public var count: Int

    /// Compares two equally long value lists.
    /// - Throws: ``TensorError`` when the lengths differ, the list is empty, or `topKFraction` is
    ///   outside (0, 1].
    public init(_ a: [Float], _ b: [Float], topKFraction: Double = 0.01) throws(TensorError) {
        guard a.count == b.count else { throw .shapeMismatch(operation: "Agreement", expected: "\(a.count) values in the second estimate", actual: [b.count]) }
        guard !a.isEmpty else { throw .invalidArgument(argument: "estimates", reason: "are empty") }
        guard topKFraction > 0, topKFraction <= 1 else { throw .invalidArgument(argument: "topKFraction", reason: "must be in (0, 1], got \(topKFraction)") }
        let x = a.map(Double.init), y = b.map(Double.init)
        pearson = Self.pearson(x, y)
        spearman = Self.pearson(Self.ranks(x), Self.ranks(y))
        let dot = zip(x, y).reduce(0.0) { $0 + $1.0 * $1.1 }
        let normX = x.reduce(0.0) { $0 + $1 * $1 }.squareRoot(), normY = y.reduce(0.0) { $0 + $1 * $1 }.squareRoot()
        cosine = normX > 0 && normY > 0 ? dot / (normX * normY) : 0
        let s = normY > 0 ? dot / (normY * normY) : 0
        let residual = zip(x, y).reduce(0.0) { $0 + ($1.0 - s * $1.1) * ($1.0 - s * $1.1) }.squareRoot()
        relativeErrorAfterScaling = normX > 0 ? residual / normX : (normY > 0 ? 1 : 0)
        let k = max(1, Int((Double(a.count) * topKFraction).rounded()))
        let topA = Set(Self.topIndices(x, k)), topB = Set(Self.topIndices(y, k))
        topKOverlap = Double(topA.intersection(topB).count) / Double(k)
        self.topKFraction = topKFraction
        count = a.count
    }

    static func pearson(_ x: [Double], _ y: [Double]) -> Double {
        let n = Double(x.count)
        let mx = x.reduce(0, +) / n, my = y.reduce(0, +) / n
        var sxy = 0.0, sxx = 0.0, syy = 0.0
        for i in x.indices {
            let dx = x[i] - mx, dy = y[i] - my
            sxy += dx * dy
            sxx += dx * dx
            syy += dy * dy
        }
        return sxx > 0 && syy > 0 ? sxy / (sxx * syy).squareRoot() : 0
    }

    /// 1-based ranks with ties averaged.
    static func ranks(_ values: [Double]) -> [Double] {
        let order = values.indices.sorted { values[$0] < values[$1] }
        var ranks = [Double](repeating: 0, count: values.count)
        var start = 0
        while start < order.count {
            var end = start
            while end + 1 < order.count && values[order[end + 1]] == values[order[start]] { end += 1 }
            let average = Double(start + end) / 2 + 1
            for i in start...end { ranks[order[i]] = average }
            start = end + 1
        }
        return ranks
    }

    /// Indices of the `k` largest values (ties broken by index, deterministic).
    static func topIndices(_ values: [Double], _ k: Int) -> [Int] {
        Array(values.indices.sorted { values[$0] != values[$1] ? values[$0] > values[$1] : $0 < $1 }.prefix(k))
    }
}

/// Agreement of two importances, overall and per parameter tensor.
public struct AgreementReport: Sendable {
    /// Over all entries of all shared tensors.
    public var overall: Agreement
    /// Per tensor, in the first importance's parameter order.
    public var perTensor: [(name: String, agreement: Agreement)]

    /// Compares `a` and `b` over the parameters they share (same names and shapes).
    /// - Throws: ``TensorError`` naming a tensor whose shapes differ, or when they share none.
    public init(_ a: Importance, _ b: Importance, topKFraction: Double = 0.01) throws(TensorError) {
        var allA: [Float] = [], allB: [Float] = []
        var perTensor: [(name: String, agreement: Agreement)] = []
        for (name, tensorA) in a.values {
            guard let tensorB = b.values[name] else { continue }
            try tensorB.checkShape(tensorA.shape, "comparing importance of '\(name)'")
            allA += tensorA.scalars
            allB += tensorB.scalars
            perTensor.append((name, try Agreement(tensorA.scalars, tensorB.scalars, topKFraction: topKFraction)))
        }
        guard !perTensor.isEmpty else { throw .invalidArgument(argument: "importances", reason: "share no parameter names") }
        overall = try Agreement(allA, allB, topKFraction: topKFraction)
        self.perTensor = perTensor
    }
}
