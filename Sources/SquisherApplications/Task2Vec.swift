import SquisherEstimators
import SquisherTensor

/// Task2Vec (Achille et al. 2019): a task's embedding is the Fisher diagonal of a fixed probe
/// network trained on it, averaged per parameter group; tasks are compared by the normalized
/// cosine distance `d(F_a, F_b) = d_cos(F_a/(F_a+F_b), F_b/(F_a+F_b))` [1].
///
/// As the AWS reference code: each weight tensor is reshaped to `(output units, −1)` and averaged
/// per unit (or per tensor), classifier tensors are skipped, and `1e-8` guards the ratio. Because
/// that ratio is not invariant to rescaling one embedding, each embedding is normalized to unit sum
/// first (otherwise scale conventions such as `N` or bias correction leak into distances) [2].
///
/// [1]: Achille et al. 2019, Task2Vec: Task Embedding for Meta-Learning.
/// [2]: Li, Dangel, Tam, Raffel 2025, Fishers for Free?
public struct Task2Vec: Sendable {
    /// How entries are grouped into embedding coordinates.
    public enum Grouping: String, Sendable, CaseIterable {
        /// One coordinate per tensor (its mean).
        case perTensor
        /// One coordinate per output unit (row of the `(out, −1)` reshape); biases per entry.
        case perOutputUnit
    }

    public var grouping: Grouping
    /// Parameters left out (the classifier head, whose size depends on the task).
    public var skippedParameters: Set<String>
    /// Divide each embedding by its sum before comparing.
    public var normalize: Bool

    public init(grouping: Grouping = .perOutputUnit, skippedParameters: Set<String> = [], normalize: Bool = true) {
        self.grouping = grouping
        self.skippedParameters = skippedParameters
        self.normalize = normalize
    }

    /// The embedding of one importance, coordinates in parameter order.
    /// - Throws: ``ApplicationError`` for negative/NaN importances, when nothing is left to embed, or
    ///   (with ``normalize``) when the importance is zero on every embedded parameter.
    public func embedding(_ importance: Importance) throws(ApplicationError) -> [Double] {
        var coordinates: [Double] = []
        for (name, tensor) in importance.values where !skippedParameters.contains(name) {
            _ = try Validation.checkImportance(importance, covers: name, shape: tensor.shape, application: "task2vec", owner: importance.estimator)
            let units = grouping == .perTensor || tensor.rank == 0 ? 1 : tensor.shape[0]
            let width = tensor.count / Swift.max(units, 1)
            for unit in 0..<units {
                var total = 0.0
                for j in 0..<width { total += Double(tensor.scalars[unit * width + j]) }
                coordinates.append(total / Double(Swift.max(width, 1)))
            }
        }
        guard !coordinates.isEmpty else { throw ApplicationError(application: "task2vec", problem: "no parameters left to embed after skipping \(skippedParameters.sorted())") }
        if normalize {
            let sum = coordinates.reduce(0, +)
            guard sum > 0 else {
                throw ApplicationError(application: "task2vec", problem: "importance '\(importance.estimator)' is zero on every embedded parameter: nothing was observed (an optimizer or accumulator over other parameters?), and a zero embedding has no direction")
            }
            coordinates = coordinates.map { $0 / sum }
        }
        return coordinates
    }

    /// The normalized cosine distance `1 − cos(a/(a+b+1e-8), b/(a+b+1e-8))`, in [0, 1] for
    /// non-negative embeddings.
    /// - Throws: ``ApplicationError`` when the lengths differ.
    public static func distance(_ a: [Double], _ b: [Double]) throws(ApplicationError) -> Double {
        guard a.count == b.count else { throw ApplicationError(application: "task2vec", problem: "embeddings have \(a.count) and \(b.count) coordinates") }
        var dot = 0.0, na = 0.0, nb = 0.0
        for i in a.indices {
            let denominator = a[i] + b[i] + 1e-8
            let x = a[i] / denominator, y = b[i] / denominator
            dot += x * y
            na += x * x
            nb += y * y
        }
        guard na > 0, nb > 0 else { return 1 }
        return 1 - dot / (na * nb).squareRoot()
    }

    /// All pairwise distances.
    public static func distanceMatrix(_ embeddings: [[Double]]) throws(ApplicationError) -> [[Double]] {
        var matrix = [[Double]](repeating: [Double](repeating: 0, count: embeddings.count), count: embeddings.count)
        for i in embeddings.indices {
            for j in embeddings.indices where j > i {
                let d = try distance(embeddings[i], embeddings[j])
                matrix[i][j] = d
                matrix[j][i] = d
            }
        }
        return matrix
    }

    /// Candidate source indices ordered from closest to farthest from `target` (itself excluded).
    public static func rankSources(target: Int, distances: [[Double]]) -> [Int] {
        distances.indices.filter { $0 != target }.sorted { (distances[target][$0], $0) < (distances[target][$1], $1) }
    }

    /// Mean reciprocal rank: the mean over targets of `1 / (rank of the true best source in the
    /// predicted ranking)`, 1-based.
    /// - Throws: ``ApplicationError`` when the lists differ in length or a best source is absent.
    public static func meanReciprocalRank(rankings: [[Int]], bestSources: [Int]) throws(ApplicationError) -> Double {
        guard rankings.count == bestSources.count, !rankings.isEmpty else {
            throw ApplicationError(application: "task2vec", problem: "got \(rankings.count) rankings for \(bestSources.count) targets")
        }
        var total = 0.0
        for (ranking, best) in zip(rankings, bestSources) {
            guard let position = ranking.firstIndex(of: best) else {
                throw ApplicationError(application: "task2vec", problem: "best source \(best) is not among the ranked candidates \(ranking)")
            }
            total += 1 / Double(position + 1)
        }
        return total / Double(rankings.count)
    }
}
