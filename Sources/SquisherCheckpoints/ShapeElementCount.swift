/// Element counts of shapes read from checkpoint metadata (DeepSpeed `param_shapes`, DCP sizes),
/// checked before any arithmetic on them: a hostile file's `torch.Size((2**62, 8))` must be an error,
/// not an overflow trap.
enum ShapeElementCount {
    /// The most elements one tensor may claim: 2^48, beyond any memory, so sums and products of a few
    /// counts and offsets below it cannot overflow `Int`.
    static let maximum = 1 << 48

    /// The number of elements of `shape`; `nil` when a dimension is negative or the product exceeds
    /// ``maximum``.
    static func of(_ shape: [Int]) -> Int? {
        var count = 1
        for dimension in shape {
            guard dimension >= 0 else { return nil }
            let (product, overflow) = count.multipliedReportingOverflow(by: dimension)
            guard !overflow, product <= maximum else { return nil }
            count = product
        }
        return count
    }
}
