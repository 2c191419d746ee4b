import SquisherTensor

/// transformers' `Adafactor` second moment, rebuilt from its factored state [1].
///
/// For a parameter of rank ≥ 2 and shape `[..., R, C]`, Adafactor keeps `exp_avg_sq_row` (shape
/// `[..., R]`, the EMA of the row means of `g² + ε₁`) and `exp_avg_sq_col` (shape `[..., C]`, the EMA
/// of the column means). Its update divides by `_approx_sq_grad(row, col) =
/// rsqrt(row / mean(row, -1)) ⊗ rsqrt(col)`, the inverse square root of the rank-1 estimate
///
///     v̂[..., i, j] = row[..., i] · col[..., j] / mean_k row[..., k],
///
/// which is what this returns (computed in Double, rounded once to float32). Rank-1 parameters keep
/// an unfactored `exp_avg_sq`, read as is. Adafactor's β₂ varies per step (`1 − t^decay_rate`), so the
/// EMA needs no bias correction.
///
/// [1]: Shazeer & Stern 2018, Adafactor: Adaptive Learning Rates with Sublinear Memory Cost.
public enum AdafactorState {
    /// The parameter shape `[..., R, C]` of factors of shapes `[..., R]` and `[..., C]`.
    /// - Throws: ``CheckpointError`` naming `parameter` when they are not the factors of one tensor, or
    ///   the tensor would have more than ``maxElements`` elements.
    public static func shape(row: [Int], column: [Int], parameter: String, path: String) throws(CheckpointError) -> [Int] {
        guard let columns = column.last, !row.isEmpty, row.count == column.count, row.dropLast() == column.dropLast() else {
            throw CheckpointError(path: path, problem: "Adafactor state of '\(parameter)': exp_avg_sq_row \(row) and exp_avg_sq_col \(column) are not the row and column factors of one [..., R, C] tensor")
        }
        let shape = row + [columns]
        guard let count = ShapeElementCount.of(shape), count <= maxElements else {
            throw CheckpointError(path: path, problem: "Adafactor state of '\(parameter)': factors \(row) and \(column) describe a \(shape) second moment, more than the \(maxElements) elements a checkpoint tensor may have (PickleLimits.maxTensorScalars)")
        }
        return shape
    }

    /// The most elements a reconstruction may have: a checkpoint tensor's limit, ``PickleLimits/maxTensorScalars``
    /// (the factors are small, so a hostile pair could otherwise ask for an unbounded product).
    public static let maxElements = PickleLimits().maxTensorScalars

    /// `row ⊗ col / mean(row)` over the trailing axes (see the type's documentation).
    /// - Throws: ``CheckpointError`` naming `parameter` when the shapes do not fit together or give
    ///   more than ``maxElements`` elements, or a value is negative or not finite.
    public static func reconstruct(row: Tensor, column: Tensor, parameter: String, path: String) throws(CheckpointError) -> Tensor {
        func fail(_ problem: String) -> CheckpointError {
            CheckpointError(path: path, problem: "Adafactor state of '\(parameter)': \(problem)")
        }
        guard let rows = row.shape.last, let columns = column.shape.last, row.shape.count == column.shape.count,
              row.shape.dropLast() == column.shape.dropLast() else {
            throw fail("exp_avg_sq_row \(row.shape) and exp_avg_sq_col \(column.shape) are not the row and column factors of one [..., R, C] tensor")
        }
        _ = try shape(row: row.shape, column: column.shape, parameter: parameter, path: path)  // bounds the product
        let outer = row.shape.dropLast().reduce(1, *)
        if let bad = (row.scalars + column.scalars).firstIndex(where: { !($0 >= 0) || !$0.isFinite }) {
            throw fail("factor entry \(bad) is \((row.scalars + column.scalars)[bad]); expected finite and >= 0")
        }
        var out = [Float](repeating: 0, count: outer * rows * columns)
        row.scalars.withUnsafeBufferPointer { r in
            column.scalars.withUnsafeBufferPointer { c in
                out.withUnsafeMutableBufferPointer { o in
                    for block in 0..<outer {
                        var sum = 0.0
                        for i in 0..<rows { sum += Double(r[block * rows + i]) }
                        let mean = sum / Double(rows)
                        guard mean > 0 else { continue }  // all-zero rows: v̂ = 0 (no gradient seen)
                        for i in 0..<rows {
                            let scaled = Double(r[block * rows + i]) / mean
                            let base = (block * rows + i) * columns
                            for j in 0..<columns { o[base + j] = Float(scaled * Double(c[block * columns + j])) }
                        }
                    }
                }
            }
        }
        return Tensor(uncheckedShape: Array(row.shape) + [columns], scalars: out)
    }
}
