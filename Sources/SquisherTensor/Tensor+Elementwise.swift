/// Element-wise arithmetic on tensors of equal shape, and with scalars.
extension Tensor {
    /// Applies `transform` to every scalar.
    @inlinable
    public func map(_ transform: (Float) -> Float) -> Tensor {
        // One pass: read this tensor, write a fresh buffer (no copy-then-overwrite).
        let scalars = withUnsafeBufferPointer { x in
            [Float](unsafeUninitializedCapacity: x.count) { out, initialized in
                for i in 0..<x.count { out[i] = transform(x[i]) }
                initialized = x.count
            }
        }
        return Tensor(uncheckedShape: shape, scalars: scalars)
    }

    /// Combines two tensors of equal shape element by element.
    /// - Throws: ``TensorError/shapeMismatch(operation:expected:actual:)`` when shapes differ.
    @inlinable
    public func zipWith(
        _ other: Tensor, _ operation: String = "element-wise operation", _ combine: (Float, Float) -> Float
    ) throws(TensorError) -> Tensor {
        try other.checkShape(shape, operation)
        let scalars = withUnsafeBufferPointer { lhs in
            other.withUnsafeBufferPointer { rhs in
                [Float](unsafeUninitializedCapacity: lhs.count) { out, initialized in
                    for i in 0..<lhs.count { out[i] = combine(lhs[i], rhs[i]) }
                    initialized = lhs.count
                }
            }
        }
        return Tensor(uncheckedShape: shape, scalars: scalars)
    }

    /// `self += alpha * other`, element-wise (axpy).
    /// - Throws: ``TensorError/shapeMismatch(operation:expected:actual:)`` when shapes differ.
    @inlinable
    public mutating func addScaled(_ other: Tensor, _ alpha: Float = 1) throws(TensorError) {
        try other.checkShape(shape, "addScaled")
        other.withUnsafeBufferPointer { x in
            self.withUnsafeMutableBufferPointer { y in
                axpy(count: y.count, alpha: alpha, x: x.baseAddress!, y: y.baseAddress!)
            }
        }
    }

    /// Multiplies every scalar by `factor` in place.
    @inlinable
    public mutating func scale(by factor: Float) {
        withUnsafeMutableBufferPointer { y in
            for i in y.indices { y[i] *= factor }
        }
    }

    /// Element-wise sum.
    public static func + (lhs: Tensor, rhs: Tensor) throws(TensorError) -> Tensor { try lhs.zipWith(rhs, "+") { $0 + $1 } }
    /// Element-wise difference.
    public static func - (lhs: Tensor, rhs: Tensor) throws(TensorError) -> Tensor { try lhs.zipWith(rhs, "-") { $0 - $1 } }
    /// Element-wise (Hadamard) product.
    public static func * (lhs: Tensor, rhs: Tensor) throws(TensorError) -> Tensor { try lhs.zipWith(rhs, "*") { $0 * $1 } }
    /// Scalar multiple.
    public static func * (lhs: Float, rhs: Tensor) -> Tensor { rhs.map { lhs * $0 } }

    /// Sets every scalar to zero, keeping the shape.
    @inlinable
    public mutating func zero() {
        withUnsafeMutableBufferPointer { $0.update(repeating: 0) }
    }

    /// True when every scalar is finite (no NaN, no infinity).
    public var isFinite: Bool { scalars.allSatisfy(\.isFinite) }
}

/// `y += alpha * x` over `count` floats, 16 lanes at a time (multiply-add, not `addProduct`:
/// see STYLE.md on the libm `fmaf` trap).
@inlinable
public func axpy(count: Int, alpha: Float, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>) {
    var i = 0
    let a = SIMD16<Float>(repeating: alpha)
    x.withMemoryRebound(to: Float.self, capacity: count) { x in
        while i + 16 <= count {
            let xv = UnsafeRawPointer(x + i).loadUnaligned(as: SIMD16<Float>.self)
            let yv = UnsafeRawPointer(y + i).loadUnaligned(as: SIMD16<Float>.self)
            UnsafeMutableRawPointer(y + i).storeBytes(of: a * xv + yv, as: SIMD16<Float>.self)
            i += 16
        }
    }
    while i < count {
        y[i] = alpha * x[i] + y[i]
        i += 1
    }
}

/// `Σ_i x[i]` over `count` floats with two SIMD8 accumulators (Swift does not reassociate a scalar
/// sum, so a plain loop would run one add at a time). Float32 accumulation: callers summing more
/// than a few thousand values, or across batches, accumulate the returned partial sums in `Double`.
@inlinable
public func vectorSum(_ x: UnsafePointer<Float>, count: Int) -> Float {
    var s0 = SIMD8<Float>(), s1 = SIMD8<Float>()
    var i = 0
    while i + 16 <= count {
        s0 += UnsafeRawPointer(x + i).loadUnaligned(as: SIMD8<Float>.self)
        s1 += UnsafeRawPointer(x + i + 8).loadUnaligned(as: SIMD8<Float>.self)
        i += 16
    }
    var total = (s0 + s1).sum()
    while i < count {
        total += x[i]
        i += 1
    }
    return total
}
