import Foundation
import SquisherApplications
import SquisherData
import SquisherEstimators
import SquisherLayers
import SquisherOptimizers
import SquisherTensor
import SquisherTraining

/// Shared set-up of the experiments on the bundled digits: a seeded 80/20 split, MLPs with
/// PyTorch naming, and Adam training runs whose optimizer (and so the Squisher) is kept.
public enum DigitsExperiment {
    /// A trained model with its optimizer, data and results.
    public struct Run {
        public var model: Sequential
        public var optimizer: Adam
        public var train: Dataset
        public var test: Dataset
        public var testAccuracy: Double
        public var testLoss: Double
        /// Training seconds.
        public var seconds: Double
        /// The importances of the estimators passed to ``trainMLP(hidden:epochs:batchSize:learningRate:seed:estimators:progress:)``,
        /// by ``AblationEstimator/name``, computed right after training (the baseline has none).
        public var importances: [String: Importance] = [:]
    }

    /// The digits split 80/20 with a seeded shuffle.
    public static func split(seed: UInt64) throws -> (train: Dataset, test: Dataset) {
        var generator = SplitMix64(seed: seed ^ 0x5EED_5EED)
        return try Digits.load().split(testFraction: 0.2, using: &generator)
    }

    /// An MLP `64-hidden...-classes` with ReLUs, named as `nn.Sequential` (`0.weight`, `2.weight`, ...).
    public static func mlp(hidden: [Int], classes: Int = 10, inputs: Int = 64, seed: UInt64) -> Sequential {
        var generator = SplitMix64(seed: seed)
        var layers: [any Layer] = []
        var width = inputs
        for h in hidden {
            layers.append(Linear(inputFeatures: width, outputFeatures: h, generator: &generator))
            layers.append(ReLU())
            width = h
        }
        layers.append(Linear(inputFeatures: width, outputFeatures: classes, generator: &generator))
        return Sequential(layers)
    }

    /// Trains a `64-hidden-10` MLP with Adam (mean-reduced cross-entropy) on the train split,
    /// evaluates on the test split, and computes the importances of `estimators` on the training
    /// run (those that need it observe training through the step hooks).
    public static func trainMLP(
        hidden: Int = 128, epochs: Int = 30, batchSize: Int = 32, learningRate: Float = 1e-3, seed: UInt64 = 0,
        estimators: [AblationEstimator] = [], progress: ProgressReporter = .silent
    ) throws -> Run {
        let (train, test) = try split(seed: seed)
        let model = mlp(hidden: [hidden], seed: seed)
        let optimizer = try Adam(parameters: model.namedParameters, learningRate: learningRate)
        let observed = try ObservedEstimators(estimators, run: TrainingRun(model: model, optimizer: optimizer, data: train, batchSize: batchSize))
        let start = Date()
        try Trainer.train(
            model: model, optimizer: optimizer, data: train,
            configuration: TrainingConfiguration(epochs: epochs, batchSize: batchSize, seed: seed), evaluationData: test, progress: progress)
        let seconds = Date().timeIntervalSince(start)
        let evaluation = try Trainer.evaluate(model: model, data: test)
        var run = Run(model: model, optimizer: optimizer, train: train, test: test, testAccuracy: evaluation.accuracy,
                      testLoss: evaluation.loss, seconds: seconds)
        for estimator in observed.estimators { run.importances[estimator.name] = try observed.importance(estimator) }
        return run
    }

    /// The samples of `data` whose label is in `classes`, labels unchanged (the 10-way head is kept).
    public static func samples(of classes: [Int], in data: Dataset) throws -> Dataset {
        let keep = Set(classes)
        return try data.subset(data.labels.indices.filter { keep.contains(data.labels[$0]) })
    }
}
