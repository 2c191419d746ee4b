import Foundation
import SquisherApplications
import SquisherData
import SquisherEstimators
import SquisherLayers
import SquisherOptimizers
import SquisherTensor
import SquisherTraining

/// FISH-mask sparse fine-tuning on digits. An MLP `64-128-10` is pre-trained on classes 0-4 only;
/// the target task is all ten classes. Protocol (the same for every estimator, so that the Squisher
/// has an Adam state to recycle): one dense warm-up epoch on the target from the pre-trained
/// weights; the importance at the warmed-up weights (Fisher variants on the target data, or the
/// warm-up's Adam `v`); the top-k mask over all parameters; every entry outside the mask reset to its
/// pre-trained value ("reset to pre-trained except the mask"); then sparse training with a fresh
/// Adam whose gradients are masked in the pre-step hook. The Fisher-free baseline is a random mask.
public enum FishMaskExperiment {
    public struct Result: Sendable {
        public var keepFractions: [Double]
        /// Target test accuracy by estimator and keep fraction.
        public var accuracy: [String: [Spread]]
        public var pretrained: Spread
        public var dense: Spread
        public var rowOrder: [String]

        public func tables() -> [ResultTable] {
            [ResultTable(
                identifier: "fish_mask", title: "FISH mask (Sung et al. 2021): sparse fine-tuning accuracy",
                columns: ["estimator"] + keepFractions.map { "\(String(format: "%g", 100 * $0))% trained" },
                rows: rowOrder.map { [$0] + accuracy[$0]!.map(\.percent) },
                notes: ["Digits: pre-trained on classes 0-4 (\(pretrained.percent)% on all ten), fine-tuned on all ten classes; dense fine-tuning reaches \(dense.percent)%. Accuracy (%) on held-out digits, mean ± std over \(dense.values.count) seed(s)."])]
        }
    }

    public static func run(
        size: ExperimentSize, seeds: [UInt64], estimators: [AblationEstimator] = AblationEstimator.builtIns,
        keepFractions: [Double] = [0.005, 0.05, 0.5], progress: ProgressReporter = .silent
    ) throws -> Result {
        let epochs = size == .quick ? 5 : 10
        var accuracy: [String: [[Double]]] = [:]
        var pretrainedAccuracy: [Double] = [], denseAccuracy: [Double] = []
        var order: [String] = []
        for seed in seeds {
            let (train, test) = try DigitsExperiment.split(seed: seed)
            let model = DigitsExperiment.mlp(hidden: [128], seed: seed)
            let pretrainOptimizer = try Adam(parameters: model.namedParameters, learningRate: 1e-3)
            try Trainer.train(model: model, optimizer: pretrainOptimizer, data: DigitsExperiment.samples(of: [0, 1, 2, 3, 4], in: train),
                              configuration: TrainingConfiguration(epochs: 10, batchSize: 32, seed: seed))
            let pretrained = model.stateDict()
            pretrainedAccuracy.append(try Trainer.evaluate(model: model, data: test).accuracy)
            // Dense warm-up epoch on the target.
            let warmupOptimizer = try Adam(parameters: model.namedParameters, learningRate: 1e-3)
            let observed = try ObservedEstimators(estimators, run: TrainingRun(model: model, optimizer: warmupOptimizer, data: train, batchSize: 32))
            try Trainer.train(model: model, optimizer: warmupOptimizer, data: train, configuration: TrainingConfiguration(epochs: 1, batchSize: 32, seed: seed &+ 1))
            let warmedUp = model.stateDict()
            // Dense reference: continue all parameters.
            let denseOptimizer = try Adam(parameters: model.namedParameters, learningRate: 1e-3)
            try Trainer.train(model: model, optimizer: denseOptimizer, data: train, configuration: TrainingConfiguration(epochs: epochs, batchSize: 32, seed: seed &+ 2))
            denseAccuracy.append(try Trainer.evaluate(model: model, data: test).accuracy)
            try model.load(warmedUp)
            var makers: [(String, (FishMask) throws -> ParameterMask)] = []
            for choice in estimators {
                if choice.isBaseline {
                    makers.append(("random mask (baseline)", { fish in try fish.randomMask(parameters: warmedUp, seed: seed &+ 5) }))
                } else {
                    let importance = try observed.importance(choice)!
                    makers.append((choice.displayName, { fish in try fish.mask(parameters: warmedUp, importance: importance) }))
                }
            }
            if order.isEmpty { order = makers.map(\.0) }
            for (label, makeMask) in makers {
                var row: [Double] = []
                for keep in keepFractions {
                    let mask = try makeMask(FishMask(keepFraction: keep))
                    let sparse = DigitsExperiment.mlp(hidden: [128], seed: seed)
                    try sparse.load(warmedUp)
                    try FishMask.resetOutsideMask(model: sparse, pretrained: pretrained, mask: mask)
                    let optimizer = try Adam(parameters: sparse.namedParameters, learningRate: 1e-3)
                    _ = mask.enforce(on: optimizer, model: sparse, keepParametersZero: false)
                    try Trainer.train(model: sparse, optimizer: optimizer, data: train, configuration: TrainingConfiguration(epochs: epochs, batchSize: 32, seed: seed &+ 2))
                    row.append(try Trainer.evaluate(model: sparse, data: test).accuracy)
                }
                accuracy[label, default: []].append(row)
            }
            progress.message("fish mask: seed \(seed) done")
        }
        return Result(
            keepFractions: keepFractions,
            accuracy: accuracy.mapValues { runs in keepFractions.indices.map { i in Spread(runs.map { $0[i] }) } },
            pretrained: Spread(pretrainedAccuracy), dense: Spread(denseAccuracy), rowOrder: order)
    }
}
