import SquisherTensor

extension TensorDataset {
    /// The rows at `indices`, in that order, of both tensors (a shuffled mini-batch).
    /// - Throws: ``TensorError/invalidArgument(argument:reason:)`` for an index outside `0..<count`.
    public func rows(_ indices: [Int]) throws(TensorError) -> TensorDataset {
        if let bad = indices.first(where: { $0 < 0 || $0 >= count }) {
            throw .invalidArgument(argument: "TensorDataset row \(bad)", reason: "outside 0..<\(count)")
        }
        func gather(_ tensor: Tensor) -> Tensor {
            let width = tensor.count / max(tensor.shape[0], 1)
            var scalars: [Float] = []
            scalars.reserveCapacity(indices.count * width)
            tensor.withUnsafeBufferPointer { source in
                for index in indices { scalars.append(contentsOf: source[(index * width)..<((index + 1) * width)]) }
            }
            return Tensor(uncheckedShape: [indices.count] + tensor.shape.dropFirst(), scalars: scalars)
        }
        return try TensorDataset(inputs: gather(inputs), targets: gather(targets))
    }

    /// Both data sets' rows, `self` first.
    /// - Throws: ``TensorError/shapeMismatch(operation:expected:actual:)`` unless the rows have one shape.
    public func concatenated(with other: TensorDataset) throws(TensorError) -> TensorDataset {
        guard Array(inputs.shape.dropFirst()) == Array(other.inputs.shape.dropFirst()),
              Array(targets.shape.dropFirst()) == Array(other.targets.shape.dropFirst()) else {
            throw .shapeMismatch(operation: "TensorDataset concatenation", expected: "rows of inputs \(inputs.shape.dropFirst()) and targets \(targets.shape.dropFirst())", actual: other.inputs.shape)
        }
        return try TensorDataset(
            inputs: Tensor(uncheckedShape: [count + other.count] + inputs.shape.dropFirst(), scalars: inputs.scalars + other.inputs.scalars),
            targets: Tensor(uncheckedShape: [count + other.count] + targets.shape.dropFirst(), scalars: targets.scalars + other.targets.scalars))
    }
}
