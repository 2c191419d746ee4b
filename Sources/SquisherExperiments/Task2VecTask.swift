import SquisherData
import SquisherTensor

/// One task of the Task2Vec experiment: a classification problem carved out of the bundled digits
/// by keeping some classes, optionally relabelling them, corrupting pixels or labels, and keeping
/// a given number of training samples.
///
/// Labels: a kept digit `classes[i]` gets label `i`, then `relabeling[i]` when a relabeling is set.
/// The task's test set applies the same classes, relabeling and pixel noise to the digits test split
/// (label noise is a corruption of the training labels only, so test labels stay clean).
public struct Task2VecTask: Sendable, Hashable, Codable {
    /// A short display name (`"{0,1,2}"`, `"{4,5,6}+noise"`).
    public var name: String
    /// The digits kept, in label order.
    public var classes: [Int]
    /// A permutation of `0..<classes.count`: label `i` becomes `relabeling[i]` (`nil`: identity).
    public var relabeling: [Int]?
    /// Standard deviation of Gaussian noise added to every pixel (pixels are in [0, 1]), train and test.
    public var pixelNoise: Double
    /// Fraction of training labels replaced by a uniformly drawn different label.
    public var labelNoise: Double
    /// The number of training samples (capped by what the split holds for these classes).
    public var size: Int
    /// Salt of the sample selection, so that two tasks on the same classes draw different samples.
    public var salt: UInt64

    /// Creates a task; the values are checked when its data is built (``data(train:test:seed:)``).
    public init(name: String, classes: [Int], relabeling: [Int]? = nil, pixelNoise: Double = 0, labelNoise: Double = 0, size: Int, salt: UInt64) {
        self.name = name
        self.classes = classes
        self.relabeling = relabeling
        self.pixelNoise = pixelNoise
        self.labelNoise = labelNoise
        self.size = size
        self.salt = salt
    }

    /// The number of classes of the task.
    public var classCount: Int { classes.count }

    /// The training and test data of the task for one seed.
    ///
    /// Training: the split's samples of ``classes`` shuffled with a generator seeded by `seed` and
    /// ``salt``, the first ``size`` kept, relabelled, with label noise then pixel noise. Test: all of
    /// the test split's samples of ``classes``, relabelled, with pixel noise from an independent stream.
    /// - Throws: ``TensorError`` for classes outside 0...9, a relabeling that is not a permutation,
    ///   noise levels outside their ranges, or `size < 1`.
    public func data(train: Dataset, test: Dataset, seed: UInt64) throws(TensorError) -> (train: Dataset, test: Dataset) {
        guard size >= 1 else { throw .invalidArgument(argument: "size of task \(name)", reason: "must be >= 1, got \(size)") }
        guard pixelNoise >= 0, pixelNoise.isFinite else { throw .invalidArgument(argument: "pixelNoise of task \(name)", reason: "must be finite and >= 0, got \(pixelNoise)") }
        guard (0...1).contains(labelNoise) else { throw .invalidArgument(argument: "labelNoise of task \(name)", reason: "must be in [0, 1], got \(labelNoise)") }
        let permutation = relabeling ?? Array(0..<classCount)
        guard permutation.sorted() == Array(0..<classCount) else {
            throw .invalidArgument(argument: "relabeling of task \(name)", reason: "must be a permutation of 0..<\(classCount), got \(permutation)")
        }
        var generator = SplitMix64(seed: seed &* 0x9E37_79B9_7F4A_7C15 ^ salt)
        let pool = try train.classes(classes)
        let order = pool.shuffledIndices(using: &generator)
        var trainData = try pool.subset(Array(order.prefix(size))).mapLabels(classCount: classCount) { permutation[$0] }
        if labelNoise > 0, classCount > 1 {
            var labels = trainData.labels
            for n in labels.indices where generator.nextUniformDouble() < labelNoise {
                let shift = 1 + Int(generator.next() % UInt64(classCount - 1))
                labels[n] = (labels[n] + shift) % classCount
            }
            trainData = try Dataset(inputs: trainData.inputs, labels: labels, classCount: classCount)
        }
        var testData = try test.classes(classes).mapLabels(classCount: classCount) { permutation[$0] }
        if pixelNoise > 0 {
            var trainNoise = generator.fork(), testNoise = generator.fork()
            trainData = try Self.addNoise(trainData, standardDeviation: Float(pixelNoise), using: &trainNoise)
            testData = try Self.addNoise(testData, standardDeviation: Float(pixelNoise), using: &testNoise)
        }
        return (trainData, testData)
    }

    static func addNoise(_ data: Dataset, standardDeviation: Float, using generator: inout SplitMix64) throws(TensorError) -> Dataset {
        var inputs = data.inputs
        inputs.withUnsafeMutableBufferPointer { x in
            for i in x.indices { x[i] += standardDeviation * Float(generator.nextNormal()) }
        }
        return try Dataset(inputs: inputs, labels: data.labels, classCount: data.classCount)
    }

    /// The task set of the experiment.
    ///
    /// Families of related tasks (overlapping class subsets, a relabeling, pixel-noise and label-noise
    /// variants) with training-set sizes that differ from task to task (no two equal, so the
    /// data-set-size baseline has no ties) and are not aligned with the families.
    /// `quick` keeps the first 8 tasks.
    public static func standardSet(size: ExperimentSize) -> [Task2VecTask] {
        let all: [Task2VecTask] = [
            Task2VecTask(name: "{0,1,2}", classes: [0, 1, 2], size: 120, salt: 1),
            Task2VecTask(name: "{0,1,3}", classes: [0, 1, 3], size: 330, salt: 2),
            Task2VecTask(name: "{4,5,6}", classes: [4, 5, 6], size: 300, salt: 3),
            Task2VecTask(name: "{4,5,7}", classes: [4, 5, 7], size: 90, salt: 4),
            Task2VecTask(name: "{6,8,9}", classes: [6, 8, 9], size: 150, salt: 5),
            Task2VecTask(name: "{7,8,9}", classes: [7, 8, 9], size: 360, salt: 6),
            Task2VecTask(name: "{0,1,2} relabelled", classes: [0, 1, 2], relabeling: [2, 0, 1], size: 240, salt: 7),
            Task2VecTask(name: "{4,5,6}+pixel noise", classes: [4, 5, 6], pixelNoise: 0.3, size: 180, salt: 8),
            Task2VecTask(name: "{6,8,9}+label noise", classes: [6, 8, 9], labelNoise: 0.3, size: 390, salt: 9),
            Task2VecTask(name: "{1,2,3}", classes: [1, 2, 3], size: 210, salt: 10),
            Task2VecTask(name: "{2,3,5}", classes: [2, 3, 5], size: 270, salt: 11),
            Task2VecTask(name: "{0,6,8}", classes: [0, 6, 8], size: 100, salt: 12),
        ]
        return size == .quick ? Array(all.prefix(8)) : all
    }
}
