import SquisherCheckpointIO
import SquisherCheckpoints
import SquisherEstimators
import SquisherTensor

/// Task2Vec embeddings of several checkpoints' importances and their distance matrix (see
/// ``Task2Vec``) [1], reading one importance tensor at a time.
///
/// Each tensor's coordinates come from ``Task2Vec/embedding(_:)`` on that tensor alone (grouping as
/// configured, no normalization), concatenated in the first model's tensor order; then, when
/// ``Task2Vec/normalize`` is set, each embedding is divided by its sum (so scale conventions such as
/// `N` or bias correction do not leak into the distances), and ``Task2Vec/distanceMatrix(_:)``
/// compares them. Tensors in ``Task2Vec/skippedParameters`` (the classifier head) and tensors
/// without importance in some checkpoint are left out (the latter listed in the result).
///
/// [1]: Achille et al. 2019, Task2Vec; Li, Dangel, Tam, Raffel 2025, Fishers for Free?
public struct CheckpointEmbedding: Sendable {
    /// Grouping, skipped tensors and normalization.
    public var task2vec: Task2Vec

    /// An embedding rule.
    public init(task2vec: Task2Vec = Task2Vec()) { self.task2vec = task2vec }

    /// Embeddings, distances and what was left out.
    public struct Result: Sendable {
        /// The tensors embedded, in order.
        public var tensors: [String]
        /// Tensors left out because some checkpoint has no importance for them.
        public var withoutImportance: [String]
        /// One embedding per checkpoint.
        public var embeddings: [[Double]]
        /// `distances[i][j]`, the Task2Vec distance between checkpoints `i` and `j`.
        public var distances: [[Double]]
    }

    /// Embeds the importances of checkpoints over the tensors `names` (the first model's order).
    /// - Throws: ``ApplicationError`` for fewer than one importance, shapes that differ across
    ///   checkpoints, negative/non-finite importances, or nothing left to embed.
    public func embed(names: [String], importances: [CheckpointImportance]) throws(ApplicationError) -> Result {
        guard !importances.isEmpty else { throw ApplicationError(application: "task2vec", problem: "needs at least one checkpoint") }
        let perTensor = Task2Vec(grouping: task2vec.grouping, skippedParameters: [], normalize: false)
        var used: [String] = []
        var without: [String] = []
        var embeddings = [[Double]](repeating: [], count: importances.count)
        for name in names where !task2vec.skippedParameters.contains(name) {
            guard importances.allSatisfy({ $0.covers(name) }) else { without.append(name); continue }
            let shape = importances[0].shape(name)!
            // A tensor without elements has nothing to embed; per-unit grouping would still make
            // one coordinate per (empty) row: refused before allocating them.
            guard shape.reduce(1, *) > 0 else {
                throw ApplicationError(application: "task2vec", problem: "importance of '\(name)' in \(importances[0].path) has shape \(shape) with no elements; nothing to embed (leave it out with --skip)")
            }
            for (i, importance) in importances.enumerated() {
                guard importance.shape(name) == shape else {
                    throw ApplicationError(application: "task2vec", problem: "importance of '\(name)' has shape \(importance.shape(name)!) in \(importance.path) but \(shape) in \(importances[0].path)")
                }
                var values = NamedTensors()
                values[name] = Tensor(uncheckedShape: shape, scalars: try checkpoint("importance") { () throws(CheckpointError) in try importance.floats(name, range: 0..<shape.reduce(1, *)) })
                importance.release(name)
                embeddings[i] += try perTensor.embedding(Importance(unchecked: values, estimator: importance.path))
            }
            used.append(name)
        }
        guard !used.isEmpty else {
            throw ApplicationError(application: "task2vec", problem: "no tensor has an importance in every checkpoint (after skipping \(task2vec.skippedParameters.sorted()))")
        }
        if task2vec.normalize {
            embeddings = embeddings.map { e in
                let sum = e.reduce(0, +)
                return sum > 0 ? e.map { $0 / sum } : e
            }
        }
        return Result(tensors: used, withoutImportance: without, embeddings: embeddings, distances: try Task2Vec.distanceMatrix(embeddings))
    }
}
