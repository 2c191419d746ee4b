import Foundation
import SquisherApplications
import SquisherData
import SquisherEstimators
import SquisherLayers
import SquisherOptimizers
import SquisherTensor
import SquisherTraining

/// Fisher pruning on digits: an MLP `64-128-10` trained with Adam (30 epochs) is pruned globally by
/// saliency `θ² F / 2` at several sparsities of its weight matrices (biases stay dense), and
/// evaluated before and after a short fine-tuning (2 epochs of Adam with the mask enforced through
/// the step hooks). The Fisher-free baseline is a random mask; magnitude pruning (`F = 1`) is shown
/// for reference.
public enum PruningExperiment {
    /// Accuracy per (estimator, sparsity).
    public struct Result: Sendable {
        public var sparsities: [Double]
        /// Without fine-tuning, by estimator then sparsity index.
        public var withoutFineTuning: [String: [Spread]]
        /// After fine-tuning.
        public var withFineTuning: [String: [Spread]]
        /// Dense accuracy.
        public var dense: Spread
        /// Row order for reports.
        public var rowOrder: [String]

        public func tables() -> [ResultTable] {
            let columns = ["estimator"] + sparsities.map { "\(Int(100 * $0))% pruned" }
            func rows(_ values: [String: [Spread]]) -> [[String]] { rowOrder.map { [$0] + values[$0]!.map(\.percent) } }
            let note = "Digits, MLP 64-128-10 (dense accuracy \(dense.percent)%), pruning of the weight matrices by θ²F/2 ranked globally after dividing each matrix's scores by their L2 norm (the default scope); accuracy (%) on held-out digits, mean ± std over \(dense.values.count) seed(s)."
            return [
                ResultTable(identifier: "pruning", title: "Fisher pruning (Theis et al. 2018): accuracy without fine-tuning", columns: columns, rows: rows(withoutFineTuning), notes: [note]),
                ResultTable(identifier: "pruning_finetuned", title: "Fisher pruning: accuracy after 2 epochs of masked fine-tuning", columns: columns, rows: rows(withFineTuning), notes: [note]),
            ]
        }
    }

    public static func run(
        size: ExperimentSize, seeds: [UInt64], estimators: [EstimatorChoice] = EstimatorChoice.allCases,
        sparsities: [Double] = [0.25, 0.5, 0.75, 0.9], progress: ProgressReporter = .silent
    ) throws -> Result {
        var without: [String: [[Double]]] = [:], with: [String: [[Double]]] = [:]
        var dense: [Double] = []
        var order: [String] = []
        for seed in seeds {
            let run = try DigitsExperiment.trainMLP(hidden: 128, epochs: size == .quick ? 20 : 30, seed: seed)
            dense.append(run.testAccuracy)
            let trained = run.model.stateDict()
            var masks: [(String, (Double) throws -> ParameterMask)] = []
            let pruning = FisherPruning()  // the library's default scope, as `squisher prune`
            for choice in estimators {
                if choice == .baseline {
                    masks.append(("random mask (baseline)", { s in try pruning.randomMask(parameters: trained, sparsity: s, seed: seed &+ 99) }))
                } else {
                    let importance = try choice.importance(model: run.model, optimizer: run.optimizer, data: run.train, batchSize: 32)!
                    masks.append((choice.displayName, { s in try pruning.mask(parameters: trained, importance: importance, sparsity: s) }))
                }
            }
            let magnitude = try UniformImportance().estimate(model: run.model, data: nil)
            masks.append(("magnitude θ² (reference)", { s in try pruning.mask(parameters: trained, importance: magnitude, sparsity: s) }))
            if order.isEmpty { order = masks.map(\.0) }
            for (label, makeMask) in masks {
                var rowWithout: [Double] = [], rowWith: [Double] = []
                for sparsity in sparsities {
                    let mask = try makeMask(sparsity)
                    let model = DigitsExperiment.mlp(hidden: [128], seed: seed)
                    try model.load(mask.applied(to: trained))
                    rowWithout.append(try Trainer.evaluate(model: model, data: run.test).accuracy)
                    let optimizer = try Adam(parameters: model.namedParameters, learningRate: 1e-3)
                    _ = mask.enforce(on: optimizer, model: model, keepParametersZero: true)
                    try Trainer.train(model: model, optimizer: optimizer, data: run.train, configuration: TrainingConfiguration(epochs: 2, batchSize: 32, seed: seed &+ 7))
                    rowWith.append(try Trainer.evaluate(model: model, data: run.test).accuracy)
                }
                without[label, default: []].append(rowWithout)
                with[label, default: []].append(rowWith)
            }
            progress.message("pruning: seed \(seed) done")
        }
        func spreads(_ values: [String: [[Double]]]) -> [String: [Spread]] {
            values.mapValues { runs in sparsities.indices.map { i in Spread(runs.map { $0[i] }) } }
        }
        return Result(sparsities: sparsities, withoutFineTuning: spreads(without), withFineTuning: spreads(with), dense: Spread(dense), rowOrder: order)
    }
}
