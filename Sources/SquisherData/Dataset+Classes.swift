import SquisherTensor

extension Dataset {
    /// The number of samples of each class, indexed by label (`classCount` entries).
    public var classCounts: [Int] {
        var counts = [Int](repeating: 0, count: classCount)
        for label in labels { counts[label] += 1 }
        return counts
    }

    /// The samples whose label is in `keep`, in storage order, relabelled to their class's
    /// position in `keep` (so `classes([3, 8])` maps 3 -> 0 and 8 -> 1, with `classCount` 2).
    /// - Throws: ``TensorError`` when `keep` is empty, repeats a class or names one outside
    ///   `0..<classCount`.
    public func classes(_ keep: [Int]) throws(TensorError) -> Dataset {
        guard !keep.isEmpty else { throw .invalidArgument(argument: "classes", reason: "keep at least one class") }
        var position = [Int](repeating: -1, count: classCount)
        for (i, c) in keep.enumerated() {
            guard c >= 0 && c < classCount else {
                throw .invalidArgument(argument: "classes", reason: "class \(c) is outside 0..<\(classCount)")
            }
            guard position[c] < 0 else { throw .invalidArgument(argument: "classes", reason: "class \(c) is listed twice") }
            position[c] = i
        }
        let indices = labels.indices.filter { position[labels[$0]] >= 0 }
        let kept = try subset(indices)
        return try Dataset(inputs: kept.inputs, labels: kept.labels.map { position[$0] }, classCount: keep.count)
    }

    /// The same inputs with each label replaced by `transform(label)`, which must lie in
    /// `0..<classCount` (e.g. merge classes: `mapLabels(classCount: 2) { $0 >= 5 ? 1 : 0 }`).
    /// - Throws: ``TensorError`` naming the first sample whose new label is out of range.
    public func mapLabels(classCount: Int, _ transform: (Int) -> Int) throws(TensorError) -> Dataset {
        try Dataset(inputs: inputs, labels: labels.map(transform), classCount: classCount)
    }
}
