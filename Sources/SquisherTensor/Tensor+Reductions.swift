/// Reductions, accumulated in `Double` so that sums over many samples do not lose digits.
extension Tensor {
    /// The sum of all scalars.
    public func sum() -> Double {
        withUnsafeBufferPointer { p in
            var total = 0.0
            for x in p { total += Double(x) }
            return total
        }
    }

    /// The mean of all scalars (NaN for an empty tensor).
    public func mean() -> Double { sum() / Double(count) }

    /// The sum over the leading axis: `[n, rest...] -> [rest...]` (e.g. a bias gradient from a batch).
    /// - Throws: ``TensorError/shapeMismatch(operation:expected:actual:)`` for a rank-0 tensor.
    public func sumOverLeadingAxis() throws(TensorError) -> Tensor {
        guard rank >= 1 else { throw .shapeMismatch(operation: "sumOverLeadingAxis", expected: "rank >= 1", actual: shape) }
        let rows = shape[0], width = rows == 0 ? 0 : count / rows
        var result = Tensor(zeros: Array(shape.dropFirst()))
        withUnsafeBufferPointer { x in
            result.withUnsafeMutableBufferPointer { y in
                for r in 0..<rows { axpy(count: width, alpha: 1, x: x.baseAddress! + r * width, y: y.baseAddress!) }
            }
        }
        return result
    }

    /// The index of the largest scalar in each row of a `[rows, columns]` tensor.
    /// - Throws: ``TensorError/shapeMismatch(operation:expected:actual:)`` unless rank 2.
    public func argmaxRows() throws(TensorError) -> [Int] {
        guard rank == 2 else { throw .shapeMismatch(operation: "argmaxRows", expected: "rank 2", actual: shape) }
        let columns = shape[1]
        return withUnsafeBufferPointer { x in
            (0..<shape[0]).map { r in
                var best = 0
                for c in 1..<max(columns, 1) where x[r * columns + c] > x[r * columns + best] { best = c }
                return best
            }
        }
    }
}
