import SquisherTensor

/// Inputs and targets of any shape, one row per sample on the leading axis of both (PyTorch's
/// `TensorDataset(inputs, targets)`): token ids `[N, T]` with per-token targets `[N, T]` (a
/// language model, `-100` ignored), regression targets `[N, D]`, or class ids `[N]`.
/// Targets are floats (class ids are exact up to 2^24).
public struct TensorDataset: Sendable {
    /// Inputs `[N, ...]`.
    public private(set) var inputs: Tensor
    /// Targets `[N, ...]`.
    public private(set) var targets: Tensor

    /// Creates a data set.
    /// - Throws: ``TensorError/shapeMismatch(operation:expected:actual:)`` unless both have the same
    ///   number of rows (at least one axis each).
    public init(inputs: Tensor, targets: Tensor) throws(TensorError) {
        guard inputs.rank >= 1, targets.rank >= 1, inputs.shape[0] == targets.shape[0] else {
            throw .shapeMismatch(operation: "TensorDataset", expected: "targets with \(inputs.shape.first ?? 0) rows, one per input row", actual: targets.shape)
        }
        self.inputs = inputs
        self.targets = targets
    }

    /// A classification data set: targets are its labels `[N]`.
    public init(_ dataset: Dataset) {
        inputs = dataset.inputs
        targets = Tensor(uncheckedShape: [dataset.count], scalars: dataset.labels.map(Float.init))
    }

    /// The number of samples.
    public var count: Int { inputs.shape[0] }

    /// Rows `start..<end` of both tensors.
    public func slice(_ range: Range<Int>) throws(TensorError) -> TensorDataset {
        guard range.lowerBound >= 0, range.upperBound <= count else {
            throw .invalidArgument(argument: "TensorDataset rows \(range)", reason: "outside 0..<\(count)")
        }
        func rows(_ tensor: Tensor) -> Tensor {
            let width = tensor.count / max(tensor.shape[0], 1)
            return Tensor(uncheckedShape: [range.count] + tensor.shape.dropFirst(), scalars: Array(tensor.scalars[(range.lowerBound * width)..<(range.upperBound * width)]))
        }
        return try TensorDataset(inputs: rows(inputs), targets: rows(targets))
    }

    /// Consecutive mini-batches in storage order covering every sample once (the last may be smaller).
    /// - Throws: ``TensorError`` unless `size >= 1`.
    public func batches(size: Int) throws(TensorError) -> [TensorDataset] {
        guard size >= 1 else { throw .invalidArgument(argument: "batch size", reason: "must be >= 1, got \(size)") }
        return try stride(from: 0, to: count, by: size).map { start throws(TensorError) in try slice(start..<min(start + size, count)) }
    }
}
