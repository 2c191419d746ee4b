import Foundation
import SquisherApplications
import SquisherEstimators

/// What one seed of ``Task2VecExperiment`` measured.
public struct Task2VecSeedResult: Sendable, Codable, Hashable {
    /// The scores of one estimator (or the baseline) on this seed.
    public struct EstimatorScore: Sendable, Codable, Hashable {
        /// The estimator; ``AblationEstimator/baseline`` is the data-set-size ranking.
        public var estimator: AblationEstimator
        /// Task2Vec distances `[task][task]` (symmetric, zero diagonal, in [0, 1]); `nil` for the baseline.
        public var distances: [[Double]]?
        /// For each target, the other tasks from predicted best to worst source.
        public var rankings: [[Int]]
        /// Mean over targets of `1 / rank` of the measured best source (1 is perfect).
        public var meanReciprocalRank: Double
        /// Fraction of targets whose top-ranked source is the measured best source.
        public var topOneAccuracy: Double
        /// Wall-clock seconds spent computing this estimator's importances over all tasks
        /// (0 for the baseline; the Squisher only reads Adam's state).
        public var seconds: Double
    }

    /// The seed (of the split, the probe, the experts, the sample selection and the noise).
    public var seed: UInt64
    /// Training samples of each task.
    public var trainingSizes: [Int]
    /// Target test accuracy in [0, 1] after few-shot fine-tuning from each source, `[source][target]`.
    /// The diagonal is the target's own expert, a reference only: a task is never its own candidate source.
    public var transferAccuracy: [[Double]]
    /// Target mean test cross-entropy (nats) after few-shot fine-tuning, `[source][target]`.
    public var transferLoss: [[Double]]
    /// The measured best source of each target (highest accuracy, ties: lowest loss).
    public var bestSources: [Int]
    /// One entry per estimator, in the order requested.
    public var scores: [EstimatorScore]
    /// Wall-clock seconds of the seed.
    public var seconds: Double

    /// The score of one estimator, if it was run.
    public func score(_ estimator: AblationEstimator) -> EstimatorScore? { scores.first { $0.estimator == estimator } }
}

/// The outcome of ``Task2VecExperiment``: raw matrices per seed and summary tables.
public struct Task2VecResult: Sendable, Codable, Hashable {
    /// The tasks, in matrix order.
    public var tasks: [Task2VecTask]
    /// The hyper-parameters used.
    public var configuration: Task2VecExperiment.Configuration
    /// The estimators compared, in the order requested (duplicates removed).
    public var estimators: [AblationEstimator]
    /// One result per seed.
    public var runs: [Task2VecSeedResult]

    /// Bundles the runs of an experiment (made by ``Task2VecExperiment/run(size:seeds:estimators:progress:)``).
    public init(tasks: [Task2VecTask], configuration: Task2VecExperiment.Configuration, estimators: [AblationEstimator], runs: [Task2VecSeedResult]) {
        self.tasks = tasks
        self.configuration = configuration
        self.estimators = estimators
        self.runs = runs
    }

    /// Task names in matrix order.
    public var taskNames: [String] { tasks.map(\.name) }

    /// MRR over seeds (mean ± sample std) of one estimator.
    public func meanReciprocalRank(_ estimator: AblationEstimator) -> Spread {
        Spread(runs.compactMap { $0.score(estimator)?.meanReciprocalRank })
    }

    /// Top-1 accuracy over seeds of one estimator.
    public func topOneAccuracy(_ estimator: AblationEstimator) -> Spread {
        Spread(runs.compactMap { $0.score(estimator)?.topOneAccuracy })
    }

    /// The MRR of a uniformly random ranking of `tasks.count − 1` candidates, `(1/K) Σ_{k=1}^{K} 1/k`.
    public var randomRankingMRR: Double {
        let k = max(tasks.count - 1, 1)
        return (1...k).reduce(0.0) { $0 + 1 / Double($1) } / Double(k)
    }

    /// Spearman rank correlation, over seeds, of the upper triangles of two estimators' distance
    /// matrices (`nil` unless both have distances).
    /// - Throws: ``TensorError`` when the matrices cannot be compared (fewer than two pairs).
    public func distanceAgreement(_ a: AblationEstimator, _ b: AblationEstimator) throws -> Spread? {
        var values: [Double] = []
        for run in runs {
            guard let x = run.score(a)?.distances, let y = run.score(b)?.distances else { return nil }
            values.append(try Agreement(Self.upperTriangle(x), Self.upperTriangle(y)).spearman)
        }
        return Spread(values)
    }

    /// Entries above the diagonal, row by row.
    public static func upperTriangle(_ matrix: [[Double]]) -> [Float] {
        var values: [Float] = []
        for i in matrix.indices { for j in matrix[i].indices where j > i { values.append(Float(matrix[i][j])) } }
        return values
    }

    /// Distances averaged over seeds for one estimator (`nil` for the baseline), for heat maps.
    public func meanDistances(_ estimator: AblationEstimator) -> [[Double]]? {
        let matrices = runs.compactMap { $0.score(estimator)?.distances }
        guard let first = matrices.first else { return nil }
        return first.indices.map { i in first[i].indices.map { j in matrices.reduce(0) { $0 + $1[i][j] } / Double(matrices.count) } }
    }

    /// Transfer accuracy `[source][target]` averaged over seeds (diagonal: the target's own expert).
    public var meanTransferAccuracy: [[Double]] {
        guard let first = runs.first else { return [] }
        return first.transferAccuracy.indices.map { i in
            first.transferAccuracy[i].indices.map { j in runs.reduce(0) { $0 + $1.transferAccuracy[i][j] } / Double(runs.count) }
        }
    }

    /// Summary tables: MRR and top-1 per estimator; agreement of each estimator's distances with the
    /// empirical Fisher's; the measured best source of each target with each estimator's prediction
    /// (first seed).
    public func tables() -> [ResultTable] {
        let seedList = runs.map { String($0.seed) }.joined(separator: ", ")
        var mrrRows: [[String]] = []
        // No wall-clock column: result files are byte-for-byte repeatable (timings go to the progress output).
        for estimator in estimators {
            mrrRows.append([estimator.displayName, Self.format(meanReciprocalRank(estimator)), Self.format(topOneAccuracy(estimator))])
        }
        mrrRows.append(["random ranking (expected)", String(format: "%.3f", randomRankingMRR), String(format: "%.3f", 1 / Double(max(tasks.count - 1, 1)))])
        var tables = [
            ResultTable(
                identifier: "task2vec", title: "Task2Vec on digits: mean reciprocal rank of the best source",
                columns: ["estimator", "MRR", "top-1"], rows: mrrRows,
                notes: [
                    "\(tasks.count) tasks, seeds \(seedList); mean ± sample std over seeds. MRR = mean over targets of 1/rank of the measured best source among the other \(tasks.count - 1) tasks.",
                    "Best source = highest target test accuracy after \(configuration.transferSteps) full-batch Adam steps on \(configuration.transferShotsPerClass) target samples per class, starting from the source expert's body and a fresh head.",
                    "Task2Vec ranks by the normalized cosine distance of per-unit embeddings (classifier skipped, unit-sum normalized); the baseline ranks by training-set size, largest first.",
                ])
        ]
        let reference: AblationEstimator? = estimators.contains(.empiricalFisher) ? .empiricalFisher : estimators.first { !$0.isBaseline }
        if let reference {
            var rows: [[String]] = []
            for estimator in estimators where !estimator.isBaseline && estimator != reference {
                if let spread = try? distanceAgreement(reference, estimator) {
                    rows.append([estimator.displayName, Self.format(spread)])
                }
            }
            if !rows.isEmpty {
                tables.append(ResultTable(
                    identifier: "task2vec-agreement", title: "Task2Vec on digits: agreement of distance matrices with the \(reference.displayName)",
                    columns: ["estimator", "Spearman (upper triangle)"], rows: rows,
                    notes: ["Spearman rank correlation of the \(tasks.count * (tasks.count - 1) / 2) pairwise distances; mean ± sample std over seeds \(seedList)."]))
            }
        }
        if let run = runs.first {
            var rows: [[String]] = []
            for (t, task) in tasks.enumerated() {
                let best = run.bestSources[t]
                var row = [task.name, String(run.trainingSizes[t]), tasks[best].name, String(format: "%.1f", 100 * run.transferAccuracy[best][t])]
                for estimator in estimators {
                    let predicted = run.score(estimator)?.rankings[t].first
                    row.append(predicted.map { tasks[$0].name } ?? "-")
                }
                rows.append(row)
            }
            tables.append(ResultTable(
                identifier: "task2vec-best-sources", title: "Task2Vec on digits: measured best source and each estimator's top pick (seed \(run.seed))",
                columns: ["target", "train size", "best source", "accuracy %"] + estimators.map(\.displayName), rows: rows))
        }
        return tables
    }

    static func format(_ spread: Spread) -> String {
        spread.values.count < 2 ? String(format: "%.3f", spread.mean) : String(format: "%.3f ± %.3f", spread.mean, spread.standardDeviation)
    }
}

/// Groupings are stored by their raw name in encoded configurations.
extension Task2Vec.Grouping: Codable {}
