/// A dense, contiguous, row-major tensor of `Float` (float32) scalars.
///
/// `Tensor` is a value type with copy-on-write storage (a Swift `Array`). Element `[i0, i1, ..., ik]`
/// lives at offset `sum_j i_j * strides[j]` with `strides` those of C order, as in PyTorch and numpy.
/// Hot loops should run over ``withUnsafeBufferPointer(_:)`` / ``withUnsafeMutableBufferPointer(_:)``.
public struct Tensor: Sendable, Hashable {
    /// The extent of each dimension, outermost first. A scalar has shape `[]`.
    @inlinable public var shape: [Int] { storedShape }
    /// The scalars in row-major order; `scalars.count == shape.reduce(1, *)`.
    @inlinable public var scalars: [Float] { storage }

    @usableFromInline var storedShape: [Int]
    @usableFromInline var storage: [Float]

    /// Creates a tensor from a shape and row-major scalars.
    /// - Throws: ``TensorError/shapeMismatch(operation:expected:actual:)`` when the count of
    ///   `scalars` differs from the product of `shape`, or a dimension is negative.
    public init(shape: [Int], scalars: [Float]) throws(TensorError) {
        guard shape.allSatisfy({ $0 >= 0 }) else {
            throw .invalidArgument(argument: "shape \(shape)", reason: "dimensions must be non-negative")
        }
        let count = shape.reduce(1, *)
        guard count == scalars.count else {
            throw .shapeMismatch(
                operation: "Tensor(shape:scalars:)", expected: "\(count) scalars for this shape",
                actual: [scalars.count])
        }
        self.storedShape = shape
        self.storage = scalars
    }

    /// Creates a tensor without checking; the caller guarantees `scalars.count == shape.reduce(1, *)`.
    @inlinable
    public init(uncheckedShape shape: [Int], scalars: [Float]) {
        assert(shape.reduce(1, *) == scalars.count)
        self.storedShape = shape
        self.storage = scalars
    }

    /// A tensor of the given shape filled with `value`.
    @inlinable
    public init(repeating value: Float, shape: [Int]) {
        self.init(uncheckedShape: shape, scalars: [Float](repeating: value, count: shape.reduce(1, *)))
    }

    /// A tensor whose scalars `body` writes, without zero-filling them first (for kernels that
    /// overwrite every element: saves a pass over memory that is often fresh from the OS).
    /// `body` must initialize all `shape.reduce(1, *)` scalars.
    @inlinable
    public init(uninitializedShape shape: [Int], initializingWith body: (UnsafeMutableBufferPointer<Float>) -> Void) {
        let count = shape.reduce(1, *)
        self.init(uncheckedShape: shape, scalars: [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            body(UnsafeMutableBufferPointer(rebasing: buffer[0..<count]))
            initialized = count
        })
    }

    /// A tensor of zeros of the given shape.
    @inlinable
    public init(zeros shape: [Int]) { self.init(repeating: 0, shape: shape) }

    /// A 0-dimensional tensor holding `value`.
    @inlinable
    public init(scalar value: Float) { self.init(uncheckedShape: [], scalars: [value]) }

    /// The number of scalars.
    @inlinable public var count: Int { scalars.count }
    /// The number of dimensions.
    @inlinable public var rank: Int { shape.count }

    /// Row-major strides in elements.
    public var strides: [Int] {
        var strides = [Int](repeating: 1, count: shape.count)
        var running = 1
        for axis in shape.indices.reversed() {
            strides[axis] = running
            running *= shape[axis]
        }
        return strides
    }

    /// The scalar at a multi-dimensional index (slow; for tests and inspection).
    public subscript(index: Int...) -> Float {
        get { storage[offset(of: index)] }
        set { storage[offset(of: index)] = newValue }
    }

    @usableFromInline
    func offset(of index: [Int]) -> Int {
        precondition(index.count == shape.count, "index \(index) does not match shape \(shape)")
        var offset = 0
        for (axis, i) in index.enumerated() {
            precondition(i >= 0 && i < shape[axis], "index \(index) out of bounds for shape \(shape)")
            offset = offset * shape[axis] + i
        }
        return offset
    }

    /// Returns the same scalars with a new shape of equal element count.
    /// One dimension may be `-1` and is then inferred.
    public func reshaped(_ newShape: [Int]) throws(TensorError) -> Tensor {
        var resolved = newShape
        if let inferred = newShape.firstIndex(of: -1) {
            let known = newShape.enumerated().filter { $0.offset != inferred }.map(\.element).reduce(1, *)
            guard known > 0, count % known == 0 else {
                throw .shapeMismatch(operation: "reshaped(\(newShape))", expected: "\(count) elements", actual: shape)
            }
            resolved[inferred] = count / known
        }
        guard resolved.reduce(1, *) == count, resolved.allSatisfy({ $0 >= 0 }) else {
            throw .shapeMismatch(operation: "reshaped(\(newShape))", expected: "\(count) elements", actual: shape)
        }
        return Tensor(uncheckedShape: resolved, scalars: scalars)
    }

    /// Calls `body` with a pointer to the row-major scalars.
    @inlinable
    public func withUnsafeBufferPointer<R, E: Error>(
        _ body: (UnsafeBufferPointer<Float>) throws(E) -> R
    ) throws(E) -> R {
        // Array's closure API is untyped-throws; route the typed error through a Result.
        let result: Result<R, E> = scalars.withUnsafeBufferPointer { buffer in
            do throws(E) { return .success(try body(buffer)) } catch { return .failure(error) }
        }
        return try result.get()
    }

    /// Calls `body` with a mutable pointer to the row-major scalars (copy-on-write happens before).
    @inlinable
    public mutating func withUnsafeMutableBufferPointer<R, E: Error>(
        _ body: (UnsafeMutableBufferPointer<Float>) throws(E) -> R
    ) throws(E) -> R {
        let result: Result<R, E> = storage.withUnsafeMutableBufferPointer { buffer in
            do throws(E) { return .success(try body(buffer)) } catch { return .failure(error) }
        }
        return try result.get()
    }

    /// Throws unless `shape` equals `expected`; `operation` names the caller in the message.
    @inlinable
    public func checkShape(_ expected: [Int], _ operation: @autoclosure () -> String) throws(TensorError) {
        guard shape == expected else {
            throw .shapeMismatch(operation: operation(), expected: "shape \(expected)", actual: shape)
        }
    }

    /// The scalars converted to `Double` (for reference computations in tests).
    public var doubles: [Double] { scalars.map(Double.init) }
}

extension Tensor: CustomStringConvertible {
    public var description: String {
        let preview = scalars.prefix(8).map { "\($0)" }.joined(separator: ", ")
        return "Tensor(shape: \(shape), [\(preview)\(count > 8 ? ", ..." : "")])"
    }
}
