import SquisherTensor

/// A trainable tensor and its accumulated gradient, shared by reference between a layer and the
/// optimizer that updates it (like PyTorch's `nn.Parameter` with its `.grad`).
///
/// `gradient` always has the shape of `value`; backward passes *add* into it (sum over the batch
/// of whatever reduction the loss used), and ``zeroGradient()`` clears it.
public final class Parameter {
    /// The current value.
    public var value: Tensor
    /// The accumulated gradient of the loss with respect to `value` (same shape).
    public var gradient: Tensor
    /// When false, backward passes leave `gradient` untouched and optimizers skip the parameter.
    public var requiresGradient: Bool

    /// Creates a parameter with a zero gradient.
    public init(_ value: Tensor, requiresGradient: Bool = true) {
        self.value = value
        self.gradient = Tensor(zeros: value.shape)
        self.requiresGradient = requiresGradient
    }

    /// Sets the gradient to zeros (split over the threads for large parameters).
    public func zeroGradient() {
        gradient.withUnsafeMutableBufferPointer { g in
            guard let base = g.baseAddress else { return }
            let target = SendablePointer(base)
            parallelChunks(count: g.count, minimumPerThread: 1 << 17) { start, end in
                (target.pointer + start).update(repeating: 0, count: end - start)
            }
        }
    }

    /// Replaces the value, checking the shape (used when loading a state dict).
    /// - Throws: ``TensorError/shapeMismatch(operation:expected:actual:)`` naming `name`.
    public func load(_ newValue: Tensor, name: String) throws(TensorError) {
        try newValue.checkShape(value.shape, "loading parameter '\(name)'")
        value = newValue
    }
}
