import SquisherData
import SquisherLayers
import SquisherTensor

/// The exact true (standard) Fisher diagonal:
/// `F = Σ_n Σ_c p(c|x_n) (∇_θ −log p(c|x_n))²`, the expectation over the model's own predictive
/// distribution computed exactly; for softmax cross-entropy it equals the diagonal of the
/// generalized Gauss-Newton (BackPACK's `DiagGGNExact`) [1].
///
/// - Reduction: **sum** over the `N` samples.
/// - Cost: one forward and `C` backward passes per batch (`C` classes): each pass backpropagates
///   `sqrt(p_c)·(p − e_c)` per sample.
///
/// [1]: Li, Dangel, Tam, Raffel 2025, Fishers for Free?; Martens 2020, New insights and
///      perspectives on the natural gradient method.
public struct TrueFisherExact: SensitivityEstimator, Sendable {
    public let name = "true-fisher"
    public let requirement = EstimatorRequirement.data
    /// Samples per pass (speed and memory only).
    public var batchSize: Int
    /// Per-sample rules by layer type.
    public var rules: PerSampleRuleRegistry

    public init(batchSize: Int = 128, rules: PerSampleRuleRegistry = .standard) {
        self.batchSize = batchSize
        self.rules = rules
    }

    public func estimate(model: any Layer, data: Dataset?) throws -> Importance {
        let engine = FisherEngine(estimator: name, batchSize: batchSize, rules: rules)
        let (values, cost) = try engine.run(model: model, data: data) { probabilities, classes, labels in
            (0..<classes).map { c in
                var gradient = [Float](repeating: 0, count: labels.count * classes)
                for row in 0..<labels.count {
                    let weight = probabilities[row * classes + c].squareRoot()
                    for j in 0..<classes {
                        gradient[row * classes + j] = Float(weight * (probabilities[row * classes + j] - (j == c ? 1 : 0)))
                    }
                }
                return (Tensor(uncheckedShape: [labels.count, classes], scalars: gradient), 1)
            }
        }
        return Importance(
            unchecked: values, estimator: name,
            conventions: ["reduction": "sum", "samples": "\(data?.count ?? 0)", "labels": "exact expectation"], cost: cost)
    }
}

/// The Monte-Carlo true Fisher diagonal:
/// `F_MC = Σ_n (1/S) Σ_s (∇_θ −log p(ŷ_s|x_n))²` with `ŷ_s ~ p(·|x_n)` drawn from the model with a
/// seeded generator (BackPACK's `DiagGGNMC` with `mc_samples = S`). Unbiased for ``TrueFisherExact``.
///
/// - Reduction: **sum** over the `N` samples, mean over the `S` label samples.
/// - Cost: one forward and `S` backward passes per batch. Same seed, same bits.
public struct TrueFisherMonteCarlo: SensitivityEstimator, Sendable {
    public var name: String { "true-fisher-mc\(samples)" }
    public let requirement = EstimatorRequirement.data
    /// Label samples per data point (`S >= 1`).
    public var samples: Int
    /// Seed of the label-sampling generator.
    public var seed: UInt64
    /// Samples per pass (speed and memory only; the labels drawn do not depend on it).
    public var batchSize: Int
    /// Per-sample rules by layer type.
    public var rules: PerSampleRuleRegistry

    public init(samples: Int = 1, seed: UInt64 = 0, batchSize: Int = 128, rules: PerSampleRuleRegistry = .standard) {
        self.samples = samples
        self.seed = seed
        self.batchSize = batchSize
        self.rules = rules
    }

    public func estimate(model: any Layer, data: Dataset?) throws -> Importance {
        guard samples >= 1 else { throw EstimatorError(estimator: name, problem: "samples must be >= 1, got \(samples)") }
        var generator = SplitMix64(seed: seed)
        let engine = FisherEngine(estimator: name, batchSize: batchSize, rules: rules)
        let scale = 1 / Float(samples)
        let (values, cost) = try engine.run(model: model, data: data) { probabilities, classes, labels in
            // Draw S labels per row in row order, sample-major, from one seeded stream.
            var sampled = [[Int]](repeating: [], count: samples)
            for row in 0..<labels.count {
                for s in 0..<samples {
                    let u = generator.nextUniformDouble()
                    var cumulative = 0.0, label = classes - 1
                    for c in 0..<classes {
                        cumulative += probabilities[row * classes + c]
                        if u < cumulative { label = c; break }
                    }
                    sampled[s].append(label)
                }
            }
            return sampled.map { draw in
                var gradient = probabilities.map(Float.init)
                for (row, label) in draw.enumerated() { gradient[row * classes + label] -= 1 }
                return (Tensor(uncheckedShape: [labels.count, classes], scalars: gradient), scale)
            }
        }
        return Importance(
            unchecked: values, estimator: name,
            conventions: ["reduction": "sum", "samples": "\(data?.count ?? 0)", "labels": "sampled, S=\(samples), seed=\(seed)"], cost: cost)
    }
}

extension TrueFisherMonteCarlo {
    /// The empirical-Fisher machinery with *given* labels instead of sampled ones: used to
    /// reproduce a reference computed with stored sampled labels (`mc_labels`).
    public static func withLabels(
        _ sampledLabels: [Int], model: any Layer, data: Dataset, batchSize: Int = 128, rules: PerSampleRuleRegistry = .standard
    ) throws -> Importance {
        let relabeled = try Dataset(inputs: data.inputs, labels: sampledLabels, classCount: data.classCount)
        var result = try EmpiricalFisher(batchSize: batchSize, rules: rules).estimate(model: model, data: relabeled)
        result.estimator = "true-fisher-mc1"
        result.conventions["labels"] = "given sampled labels"
        return result
    }
}
