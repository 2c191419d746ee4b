import SquisherTensor

/// Element-wise sums and products made into reused memory: the same arithmetic as `Tensor`'s `+`
/// and `*` (one IEEE operation per element, so the values are bit for bit those), written into the
/// memory ``ReusableTensor/make(shape:initializingWith:)`` hands out.
extension ReusableTensor {
    /// `lhs + rhs` element-wise, as `lhs + rhs`.
    /// - Throws: ``TensorError/shapeMismatch(operation:expected:actual:)`` when the shapes differ (as `+`).
    mutating func sum(_ lhs: Tensor, _ rhs: Tensor) throws(TensorError) -> Tensor {
        try combine(lhs, rhs, "+") { $0 + $1 }
    }

    /// `lhs ⊙ rhs` element-wise, as `lhs * rhs`.
    /// - Throws: ``TensorError/shapeMismatch(operation:expected:actual:)`` when the shapes differ (as `*`).
    mutating func product(_ lhs: Tensor, _ rhs: Tensor) throws(TensorError) -> Tensor {
        try combine(lhs, rhs, "*") { $0 * $1 }
    }

    /// `combine(lhs[i], rhs[i])` for every element (as `Tensor.zipWith`), into reused memory.
    @inline(__always)
    private mutating func combine(
        _ lhs: Tensor, _ rhs: Tensor, _ operation: String, _ combine: (Float, Float) -> Float
    ) throws(TensorError) -> Tensor {
        try rhs.checkShape(lhs.shape, operation)
        return make(shape: lhs.shape) { out in
            lhs.withUnsafeBufferPointer { a in
                rhs.withUnsafeBufferPointer { b in
                    for i in 0..<out.count { out[i] = combine(a[i], b[i]) }
                }
            }
        }
    }
}
