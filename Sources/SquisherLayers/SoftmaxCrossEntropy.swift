import SquisherTensor

/// Softmax cross-entropy on logits: the per-sample loss `l_n = -log softmax(z_n)[y_n]` (natural
/// log), as PyTorch's `nn.CrossEntropyLoss`. Its negative is the log-likelihood whose Fisher
/// the estimators compute.
///
/// Logits are `[N, classes]` (or `[N, ..., classes]`, each position a sample row); labels one per row.
public struct SoftmaxCrossEntropy: Sendable, Hashable {
    /// Sum or mean over rows. **Beware of scaling**: with `.mean`, gradients are 1/N of `.sum`.
    public var reduction: Reduction

    public init(reduction: Reduction = .mean) { self.reduction = reduction }

    /// The loss and its gradient with respect to the logits, `(softmax(z) - onehot(y)) * scale`
    /// with scale 1 (`.sum`) or 1/rows (`.mean`).
    /// - Throws: ``TensorError`` when the label count differs from the rows or a label is out of range.
    public func callAsFunction(logits: Tensor, labels: [Int]) throws(TensorError) -> (loss: Double, logitsGradient: Tensor) {
        guard logits.rank >= 2, let classes = logits.shape.last, classes > 0 else {
            throw .shapeMismatch(operation: "SoftmaxCrossEntropy", expected: "logits [N, classes]", actual: logits.shape)
        }
        let rows = logits.count / classes
        guard labels.count == rows else {
            throw .shapeMismatch(operation: "SoftmaxCrossEntropy", expected: "\(rows) labels, one per logit row", actual: [labels.count])
        }
        if let bad = labels.firstIndex(where: { $0 < 0 || $0 >= classes }) {
            throw .invalidArgument(argument: "label at index \(bad)", reason: "\(labels[bad]) is outside 0..<\(classes)")
        }
        let logProbabilities = try logits.reshaped([rows, classes]).logSoftmaxRows()
        let scale: Float = reduction == .mean ? 1 / Float(rows) : 1
        var loss = 0.0
        var gradient = logProbabilities
        gradient.withUnsafeMutableBufferPointer { g in
            for r in 0..<rows {
                loss -= Double(g[r * classes + labels[r]])
                for c in 0..<classes { g[r * classes + c] = ScalarMath.exp(g[r * classes + c]) * scale }
                g[r * classes + labels[r]] -= scale
            }
        }
        if reduction == .mean { loss /= Double(rows) }
        return (loss, try gradient.reshaped(logits.shape))
    }

    /// Draws one label per row from the model's predictive distribution `softmax(z_n)`
    /// (needed by the Monte-Carlo true Fisher). Deterministic for a given generator state.
    /// - Throws: ``TensorError`` unless logits are `[N, ..., classes]`.
    public static func sampleLabels(logits: Tensor, using generator: inout SplitMix64) throws(TensorError) -> [Int] {
        guard logits.rank >= 2, let classes = logits.shape.last, classes > 0 else {
            throw .shapeMismatch(operation: "sampleLabels", expected: "logits [N, classes]", actual: logits.shape)
        }
        let rows = logits.count / classes
        let probabilities = try logits.reshaped([rows, classes]).logSoftmaxRows()
        return probabilities.withUnsafeBufferPointer { lp in
            (0..<rows).map { r in
                let u = generator.nextUniformDouble()
                var cumulative = 0.0
                for c in 0..<classes {
                    cumulative += Double(ScalarMath.exp(lp[r * classes + c]))
                    if u < cumulative { return c }
                }
                return classes - 1
            }
        }
    }
}
