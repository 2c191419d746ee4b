import SquisherTensor

/// The squared-error loss, as PyTorch's `nn.MSELoss(reduction=...)`:
///
/// - `.sum`: `L = sum_i (p_i - t_i)^2` over **all elements**; gradient `2 (p - t)`.
/// - `.mean` (PyTorch's default): `L = (1/count) sum_i (p_i - t_i)^2`, divided by the number of
///   **elements** (`N * features`), not by the number of samples; gradient `2 (p - t) / count`.
///
/// **Beware of scaling**: `.mean` over `[N, D]` predictions is `1/(N·D)` of `.sum`. The Gaussian
/// negative log-likelihood with unit variance is `0.5 *` the `.sum` loss (up to a constant).
public struct MeanSquaredError: Sendable, Hashable {
    /// Sum or mean over all elements.
    public var reduction: Reduction

    /// Creates the loss (mean by default, as PyTorch).
    public init(reduction: Reduction = .mean) { self.reduction = reduction }

    /// The loss (accumulated in `Double`) and its gradient with respect to the predictions.
    /// - Parameters:
    ///   - predictions: `[N, ...]`.
    ///   - targets: the same shape.
    /// - Throws: ``TensorError/shapeMismatch(operation:expected:actual:)`` naming `MeanSquaredError`
    ///   when the shapes differ or the predictions are empty.
    public func callAsFunction(predictions: Tensor, targets: Tensor) throws(TensorError) -> (loss: Double, predictionsGradient: Tensor) {
        guard predictions.rank >= 1, predictions.count > 0 else {
            throw .shapeMismatch(operation: "MeanSquaredError(reduction: \(reduction))", expected: "non-empty predictions [N, ...]", actual: predictions.shape)
        }
        try targets.checkShape(predictions.shape, "MeanSquaredError(reduction: \(reduction)) targets (must match predictions)")
        let count = predictions.count
        let scale: Float = reduction == .mean ? 2 / Float(count) : 2
        var loss = 0.0
        var gradient = predictions
        targets.withUnsafeBufferPointer { t in
            gradient.withUnsafeMutableBufferPointer { g in
                for i in 0..<count {
                    let difference = g[i] - t[i]
                    loss += Double(difference) * Double(difference)
                    g[i] = scale * difference
                }
            }
        }
        if reduction == .mean { loss /= Double(count) }
        return (loss, gradient)
    }
}
