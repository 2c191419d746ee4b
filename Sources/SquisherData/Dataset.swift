import SquisherTensor

/// A labelled classification data set held in memory: inputs `[N, ...]` (row `n` is sample `n`)
/// and one integer label per sample in `0..<classCount`.
public struct Dataset: Sendable {
    /// Inputs, leading axis = samples.
    public private(set) var inputs: Tensor
    /// One label per sample.
    public private(set) var labels: [Int]
    /// The number of classes (labels lie in `0..<classCount`).
    public let classCount: Int

    /// Creates a data set, checking that labels match the samples and lie in range.
    /// - Throws: ``TensorError`` naming the mismatch or the first bad label.
    public init(inputs: Tensor, labels: [Int], classCount: Int) throws(TensorError) {
        guard inputs.rank >= 1, inputs.shape[0] == labels.count else {
            throw .shapeMismatch(operation: "Dataset", expected: "inputs with \(labels.count) rows, one per label", actual: inputs.shape)
        }
        if let bad = labels.firstIndex(where: { $0 < 0 || $0 >= classCount }) {
            throw .invalidArgument(argument: "label of sample \(bad)", reason: "\(labels[bad]) is outside 0..<\(classCount)")
        }
        self.inputs = inputs
        self.labels = labels
        self.classCount = classCount
    }

    /// The number of samples.
    public var count: Int { labels.count }
    /// The shape of one sample's input.
    public var sampleShape: [Int] { Array(inputs.shape.dropFirst()) }

    /// The samples at `indices`, in that order.
    /// - Throws: ``TensorError`` for an index outside `0..<count`.
    public func subset(_ indices: [Int]) throws(TensorError) -> Dataset {
        let width = count == 0 ? 0 : inputs.count / count
        var scalars = [Float](repeating: 0, count: indices.count * width)
        var newLabels = [Int](repeating: 0, count: indices.count)
        for (row, index) in indices.enumerated() {
            guard index >= 0 && index < count else {
                throw .invalidArgument(argument: "sample index \(index)", reason: "outside 0..<\(count)")
            }
            newLabels[row] = labels[index]
            inputs.withUnsafeBufferPointer { x in
                for j in 0..<width { scalars[row * width + j] = x[index * width + j] }
            }
        }
        return try Dataset(inputs: Tensor(shape: [indices.count] + sampleShape, scalars: scalars), labels: newLabels, classCount: classCount)
    }

    /// A seeded random permutation of `0..<count` (Fisher-Yates with `generator`).
    public func shuffledIndices(using generator: inout SplitMix64) -> [Int] {
        var indices = Array(0..<count)
        indices.shuffle(using: &generator)
        return indices
    }

    /// Splits into train and test parts after a seeded shuffle; `testFraction` of the samples
    /// (rounded) go to the test part.
    /// - Throws: ``TensorError`` unless `testFraction` is in [0, 1].
    public func split(testFraction: Double, using generator: inout SplitMix64) throws(TensorError) -> (train: Dataset, test: Dataset) {
        guard (0...1).contains(testFraction) else {
            throw .invalidArgument(argument: "testFraction", reason: "must be in [0, 1], got \(testFraction)")
        }
        let order = shuffledIndices(using: &generator)
        let testCount = Int((Double(count) * testFraction).rounded())
        return (try subset(Array(order[testCount...])), try subset(Array(order[..<testCount])))
    }

    /// Mini-batches covering every sample once, in a seeded random order (or in storage order when
    /// `generator` is nil). The last batch may be smaller unless `dropLast`.
    /// - Throws: ``TensorError`` unless `size >= 1`.
    public func batches(size: Int, shuffle generator: inout SplitMix64?, dropLast: Bool = false) throws(TensorError) -> [Dataset] {
        guard size >= 1 else { throw .invalidArgument(argument: "batch size", reason: "must be >= 1, got \(size)") }
        var order = Array(0..<count)
        if generator != nil { order.shuffle(using: &generator!) }
        var result: [Dataset] = []
        var start = 0
        while start < count {
            let end = min(start + size, count)
            if dropLast && end - start < size { break }
            result.append(try subset(Array(order[start..<end])))
            start = end
        }
        return result
    }

    /// Mini-batches in storage order.
    public func batches(size: Int) throws(TensorError) -> [Dataset] {
        var none: SplitMix64? = nil
        return try batches(size: size, shuffle: &none)
    }
}
