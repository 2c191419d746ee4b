import Foundation
import SquisherApplications
import SquisherData
import SquisherEstimators
import SquisherLayers
import SquisherOptimizers
import SquisherTensor
import SquisherTraining

/// The Task2Vec experiment on the bundled digits: embed each task of ``Task2VecTask/standardSet(size:)``
/// with every estimator, predict for each target the best source task by embedding distance, and
/// score the predictions by mean reciprocal rank (MRR) against measured transfer [1, 2].
///
/// Per seed:
/// 1. **Probe**: an MLP `64-hidden-10` pre-trained with Adam on the whole digits train split.
/// 2. **Embeddings**: for each task the probe's body plus a fresh head is fine-tuned with Adam for a
///    short run on the task's training data; each estimator then gives an importance at the
///    fine-tuned weights (Fisher variants on the task's training data; the Squisher = `N·v` from that
///    very fine-tuning run, no extra pass), and ``Task2Vec`` turns it into an embedding (per output
///    unit, classifier skipped, normalized to unit sum).
/// 3. **Ground truth**: an expert per task (the same MLP, trained from scratch on the task); for each
///    (source, target) pair the source expert's body plus a fresh head is fine-tuned for a few
///    full-batch Adam steps on a few labelled target samples per class and evaluated on the target's
///    test set. The best source of a target is the one with the highest test accuracy (ties: lowest
///    test loss).
/// 4. **Scores**: MRR of the ranking by embedding distance (closest first) for each estimator; the
///    Fisher-free baseline ranks sources by training-set size, largest first [2].
///
/// Everything is seeded: two runs with one seed agree bit for bit.
///
/// [1]: Achille et al. 2019, Task2Vec: Task Embedding for Meta-Learning.
/// [2]: Li, Dangel, Tam, Raffel 2025, Fishers for Free?
public enum Task2VecExperiment {
    /// The hyper-parameters of a run.
    public struct Configuration: Sendable, Hashable, Codable {
        /// Hidden widths of the probe and expert MLPs.
        public var hidden: [Int]
        /// Mini-batch size of every training run except the transfer fine-tuning (full batch).
        public var batchSize: Int
        /// Epochs of the probe's pre-training on all ten digits.
        public var probeEpochs: Int
        /// Epochs of the per-task head warm-up: the probe's body frozen, only the fresh head trained
        /// (a convex problem, so the head converges to the same solution up to a relabeling).
        public var headEpochs: Int
        /// Adam learning rate of the head warm-up.
        public var headLearningRate: Float
        /// Epochs of the per-task fine-tuning of the whole probe after the warm-up, with a fresh Adam
        /// whose `exp_avg_sq` is the Squisher; the Fisher variants are computed at its end.
        public var embeddingEpochs: Int
        /// Adam learning rate of the probe's pre-training and the per-task fine-tuning.
        public var learningRate: Float
        /// Epochs of each expert's training from scratch.
        public var expertEpochs: Int
        /// Labelled target samples per class used for the transfer fine-tuning.
        public var transferShotsPerClass: Int
        /// Full-batch Adam steps of the transfer fine-tuning.
        public var transferSteps: Int
        /// Adam learning rate of the transfer fine-tuning.
        public var transferLearningRate: Float
        /// Whether the transfer fine-tuning also updates the source body (`false`: only the fresh
        /// head is trained, a linear probe of the source expert's features).
        public var transferTrainsBody: Bool
        /// How importances become embeddings.
        public var grouping: Task2Vec.Grouping

        /// The defaults are the settings of `Guides/Task2Vec.md` (probe `64-32-classes`).
        public init(
            hidden: [Int] = [32], batchSize: Int = 32, probeEpochs: Int = 10, headEpochs: Int = 20, headLearningRate: Float = 1e-2, embeddingEpochs: Int = 3, learningRate: Float = 1e-3,
            expertEpochs: Int = 20, transferShotsPerClass: Int = 5, transferSteps: Int = 20, transferLearningRate: Float = 1e-2,
            transferTrainsBody: Bool = false, grouping: Task2Vec.Grouping = .perOutputUnit
        ) {
            self.hidden = hidden
            self.batchSize = batchSize
            self.probeEpochs = probeEpochs
            self.headEpochs = headEpochs
            self.headLearningRate = headLearningRate
            self.embeddingEpochs = embeddingEpochs
            self.learningRate = learningRate
            self.expertEpochs = expertEpochs
            self.transferShotsPerClass = transferShotsPerClass
            self.transferSteps = transferSteps
            self.transferLearningRate = transferLearningRate
            self.transferTrainsBody = transferTrainsBody
            self.grouping = grouping
        }

        /// The configuration used for an experiment size (the same training recipe; `quick` differs
        /// only in its smaller task set).
        public static func standard(size: ExperimentSize) -> Configuration { Configuration() }
    }

    /// Runs the experiment on ``Task2VecTask/standardSet(size:)`` for each seed.
    /// - Parameter estimators: the estimators to compare; ``AblationEstimator/baseline`` is the
    ///   data-set-size ranking.
    /// - Throws: ``ApplicationError`` or ``TensorError`` naming the failing step.
    public static func run(
        size: ExperimentSize, seeds: [UInt64], estimators: [AblationEstimator] = AblationEstimator.builtIns,
        progress: ProgressReporter = .silent
    ) throws -> Task2VecResult {
        try run(tasks: Task2VecTask.standardSet(size: size), configuration: .standard(size: size), seeds: seeds, estimators: estimators, progress: progress)
    }

    /// Runs the experiment on any task set (at least three tasks) for each seed.
    /// - Throws: ``ApplicationError`` for fewer than three tasks, no seeds or no estimators, or
    ///   whatever training and estimation throw.
    public static func run(
        tasks: [Task2VecTask], configuration: Configuration, seeds: [UInt64], estimators: [AblationEstimator],
        progress: ProgressReporter = .silent
    ) throws -> Task2VecResult {
        guard tasks.count >= 3 else { throw ApplicationError(application: "task2vec", problem: "needs at least 3 tasks, got \(tasks.count)") }
        guard !seeds.isEmpty else { throw ApplicationError(application: "task2vec", problem: "needs at least one seed") }
        var unique: [AblationEstimator] = []
        for choice in estimators where !unique.contains(choice) { unique.append(choice) }
        guard !unique.isEmpty else { throw ApplicationError(application: "task2vec", problem: "needs at least one estimator") }
        var runs: [Task2VecSeedResult] = []
        for (index, seed) in seeds.enumerated() {
            let start = Date()
            runs.append(try runSeed(tasks: tasks, configuration: configuration, seed: seed, estimators: unique))
            progress.update("task2vec", done: index + 1, total: seeds.count)
            progress.message(String(format: "task2vec seed %llu: %.2f s", seed, Date().timeIntervalSince(start)))
        }
        return Task2VecResult(tasks: tasks, configuration: configuration, estimators: unique, runs: runs)
    }

    /// The parameter names of the classifier (the last `Linear`) of ``DigitsExperiment/mlp(hidden:classes:inputs:seed:)``.
    static func classifierNames(hidden: [Int]) -> Set<String> {
        let index = 2 * hidden.count
        return ["\(index).weight", "\(index).bias"]
    }

    /// A fresh MLP for `classes` classes whose body (everything but the classifier) is `body`.
    static func model(body: NamedTensors, hidden: [Int], classes: Int, seed: UInt64) throws(TensorError) -> Sequential {
        let model = DigitsExperiment.mlp(hidden: hidden, classes: classes, seed: seed)
        try model.load(body, strict: false)
        return model
    }

    /// The body (non-classifier parameters) of a model, copied.
    static func body(of model: any Layer, hidden: [Int]) throws(TensorError) -> NamedTensors {
        let skipped = classifierNames(hidden: hidden)
        return try NamedTensors(model.namedParameters.filter { !skipped.contains($0.name) }.map { ($0.name, $0.parameter.value) })
    }

    static func runSeed(tasks: [Task2VecTask], configuration c: Configuration, seed: UInt64, estimators: [AblationEstimator]) throws -> Task2VecSeedResult {
        let start = Date()
        let (train, test) = try DigitsExperiment.split(seed: seed)
        var seeds = SplitMix64(seed: seed ^ 0x7A5C_2FEC)
        let probeSeed = seeds.next(), headSeed = seeds.next(), expertSeed = seeds.next(), shuffleSeed = seeds.next()
        let data = try tasks.map { task throws(TensorError) in try task.data(train: train, test: test, seed: seed) }

        // 1. The probe, pre-trained on all ten digits.
        let probe = DigitsExperiment.mlp(hidden: c.hidden, classes: train.classCount, seed: probeSeed)
        try Trainer.train(
            model: probe, optimizer: try Adam(parameters: probe.namedParameters, learningRate: c.learningRate), data: train,
            configuration: TrainingConfiguration(epochs: c.probeEpochs, batchSize: c.batchSize, seed: shuffleSeed))
        let probeBody = try body(of: probe, hidden: c.hidden)

        // 2. Embeddings per estimator from the probe fine-tuned on each task.
        let classifier = classifierNames(hidden: c.hidden)
        let importanceChoices = estimators.filter { !$0.isBaseline }
        let task2vec = Task2Vec(grouping: c.grouping, skippedParameters: classifierNames(hidden: c.hidden), normalize: true)
        var embeddings = [[[Double]]](repeating: [], count: importanceChoices.count)
        var estimatorSeconds = [Double](repeating: 0, count: importanceChoices.count)
        for (t, task) in tasks.enumerated() {
            let model = try model(body: probeBody, hidden: c.hidden, classes: task.classCount, seed: headSeed)
            try Trainer.train(
                model: model, optimizer: try Adam(parameters: model.namedParameters.filter { classifier.contains($0.name) }, learningRate: c.headLearningRate),
                data: data[t].train, configuration: TrainingConfiguration(epochs: c.headEpochs, batchSize: c.batchSize, seed: shuffleSeed &+ 2000 &+ UInt64(t)))
            let optimizer = try Adam(parameters: model.namedParameters, learningRate: c.learningRate)
            let observed = try ObservedEstimators(importanceChoices, run: TrainingRun(model: model, optimizer: optimizer, data: data[t].train, batchSize: c.batchSize))
            try Trainer.train(
                model: model, optimizer: optimizer, data: data[t].train,
                configuration: TrainingConfiguration(epochs: c.embeddingEpochs, batchSize: c.batchSize, seed: shuffleSeed &+ UInt64(t)))
            for (e, choice) in importanceChoices.enumerated() {
                let clock = Date()
                guard let importance = try observed.importance(choice) else { continue }
                estimatorSeconds[e] += Date().timeIntervalSince(clock)
                embeddings[e].append(try task2vec.embedding(importance))
            }
        }
        var distances: [[[Double]]] = []
        for e in importanceChoices.indices { distances.append(try Task2Vec.distanceMatrix(embeddings[e])) }

        // 3. Ground truth: experts from scratch, then few-shot transfer to every other task.
        var experts: [NamedTensors] = []
        for (t, task) in tasks.enumerated() {
            let expert = DigitsExperiment.mlp(hidden: c.hidden, classes: task.classCount, seed: expertSeed)
            try Trainer.train(
                model: expert, optimizer: try Adam(parameters: expert.namedParameters, learningRate: c.learningRate), data: data[t].train,
                configuration: TrainingConfiguration(epochs: c.expertEpochs, batchSize: c.batchSize, seed: shuffleSeed &+ 1000 &+ UInt64(t)))
            experts.append(try body(of: expert, hidden: c.hidden))
        }
        var accuracy = [[Double]](repeating: [Double](repeating: 0, count: tasks.count), count: tasks.count)
        var loss = accuracy
        for (t, task) in tasks.enumerated() {
            let shots = try fewShot(data[t].train, perClass: c.transferShotsPerClass)
            for s in tasks.indices {
                let model = try model(body: experts[s], hidden: c.hidden, classes: task.classCount, seed: headSeed &+ 1)
                let trained = c.transferTrainsBody ? model.namedParameters : model.namedParameters.filter { classifier.contains($0.name) }
                try Trainer.train(
                    model: model, optimizer: try Adam(parameters: trained, learningRate: c.transferLearningRate), data: shots,
                    configuration: TrainingConfiguration(epochs: c.transferSteps, batchSize: shots.count, seed: 0, shuffle: false))
                let evaluation = try Trainer.evaluate(model: model, data: data[t].test)
                accuracy[s][t] = evaluation.accuracy
                loss[s][t] = evaluation.loss
            }
        }
        let best = tasks.indices.map { t in
            tasks.indices.filter { $0 != t }.min { a, b in (-accuracy[a][t], loss[a][t], a) < (-accuracy[b][t], loss[b][t], b) }!
        }

        // 4. Rankings and scores.
        var scores: [Task2VecSeedResult.EstimatorScore] = []
        for choice in estimators {
            let rankings: [[Int]]
            var matrix: [[Double]]? = nil
            var seconds = 0.0
            if choice.isBaseline {
                rankings = tasks.indices.map { t in baselineRanking(target: t, sizes: data.map(\.train.count)) }
            } else {
                let e = importanceChoices.firstIndex(of: choice)!
                matrix = distances[e]
                seconds = estimatorSeconds[e]
                rankings = tasks.indices.map { Task2Vec.rankSources(target: $0, distances: distances[e]) }
            }
            let mrr = try Task2Vec.meanReciprocalRank(rankings: rankings, bestSources: best)
            let top1 = Double(zip(rankings, best).filter { $0.first == $1 }.count) / Double(tasks.count)
            scores.append(.init(estimator: choice, distances: matrix, rankings: rankings, meanReciprocalRank: mrr, topOneAccuracy: top1, seconds: seconds))
        }
        return Task2VecSeedResult(
            seed: seed, trainingSizes: data.map(\.train.count), transferAccuracy: accuracy, transferLoss: loss, bestSources: best,
            scores: scores, seconds: Date().timeIntervalSince(start))
    }

    /// Candidate sources for `target` by training-set size, largest first (ties: lower index first):
    /// the Fisher-free baseline of [2].
    public static func baselineRanking(target: Int, sizes: [Int]) -> [Int] {
        sizes.indices.filter { $0 != target }.sorted { (-sizes[$0], $0) < (-sizes[$1], $1) }
    }

    /// The first `perClass` samples of each class, in storage order.
    static func fewShot(_ data: Dataset, perClass: Int) throws(TensorError) -> Dataset {
        var taken = [Int](repeating: 0, count: data.classCount)
        var indices: [Int] = []
        for (n, label) in data.labels.enumerated() where taken[label] < perClass {
            taken[label] += 1
            indices.append(n)
        }
        return try data.subset(indices)
    }
}
