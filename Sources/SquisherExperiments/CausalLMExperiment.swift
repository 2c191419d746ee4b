import Foundation
import SquisherApplications
import SquisherData
import SquisherEstimators
import SquisherLayers
import SquisherOptimizers
import SquisherTensor
import SquisherTraining

/// The ablation's causal-LM setting: a tiny GPT trained in Swift on two generated next-token
/// tasks (``TokenTask``: each a second-order rule with noise, on its own half of a 24-token
/// vocabulary), with per-token cross-entropy (shifted inside, each sequence's loss the sum over its
/// predicted tokens), Adam, mean over the sequences of a batch.
///
/// - Merging: two copies of one shared initialization fine-tuned on task 0 and on task 1 are merged
///   by Fisher merging with each estimator's importance (on each model's own task data at its
///   fine-tuned weights; the Squisher is that fine-tuning's Adam `exp_avg_sq` times `N`), or by plain
///   parameter averaging (the baseline). Metric: next-token accuracy (argmax over the whole
///   vocabulary) on both tasks' held-out sequences, averaged over the tasks; also the per-token NLL.
/// - FISH mask: the task-0 model is the pre-trained model and the union of both tasks the target.
///   As ``FishMaskExperiment``: one dense warm-up epoch on the target (its Adam `v` is the
///   Squisher), the importance at the warmed-up weights, the top-k mask, everything outside the
///   mask reset to the pre-trained weights, sparse training with masked gradients; the baseline is
///   a random mask.
///
/// Estimators: `fisher`, `joint`, `squisher` and `baseline` run on the sequence data. The exact
/// true Fisher is listed as not run: per token it takes one backward pass per (position, class),
/// `T·V = 288` passes over the data, about three times the rest of the experiment. A user's
/// ``AblationEstimator`` is a training-run estimator over a classification ``Dataset`` and is
/// listed as not run too.
public enum CausalLMExperiment {
    /// The knobs of the set-up.
    public struct Setting: Sendable, Hashable {
        /// Transformer blocks, residual width, attention heads, tokens per sequence.
        public var layers = 1, width = 32, heads = 2, length = 12
        /// Training and held-out sequences per task.
        public var trainSequences = 256, testSequences = 128
        /// Probability that a token ignores the task's rule.
        public var noise = 0.1
        /// Fine-tuning epochs per task (merging) and sparse-training epochs (FISH mask).
        public var fineTuneEpochs = 30, sparseEpochs = 10
        /// Adam's learning rate and the mini-batch size (sequences).
        public var learningRate: Float = 1e-2
        public var batchSize = 32
        /// Fractions of parameters the FISH masks keep.
        public var keepFractions = [0.02, 0.1]

        /// The default setting of each size (`quick`: a smaller model and data for tests).
        public init(size: ExperimentSize) {
            if size == .quick {
                width = 16; trainSequences = 128; testSequences = 64; fineTuneEpochs = 20; sparseEpochs = 2; keepFractions = [0.1]
            }
        }
    }

    /// The measured numbers.
    public struct Result: Sendable {
        /// Fisher-merged next-token accuracy per estimator (the baseline: parameter averaging).
        public var mergingAccuracy: [String: Spread]
        /// Fisher-merged per-token NLL (nats) per estimator.
        public var mergingLoss: [String: Spread]
        /// Each fine-tuned model on its own task, averaged over the tasks (the merge's ceiling).
        public var individual: Spread
        /// The shared initialization.
        public var base: Spread
        /// FISH-mask accuracy per estimator and keep fraction.
        public var fishAccuracy: [String: [Spread]]
        /// The pre-trained (task-0) model and dense fine-tuning on the target.
        public var pretrained: Spread, dense: Spread
        /// Estimator display names in report order (the baseline last).
        public var rowOrder: [String]
        /// Users' estimators that could not run on sequence data.
        public var notRun: [String]
        /// The setting.
        public var setting: Setting

        /// The merging and FISH-mask tables.
        public func tables() -> [ResultTable] {
            let seeds = base.values.count
            let model = "tiny GPT (\(setting.layers) block, width \(setting.width), \(setting.heads) heads, \(setting.length) tokens, vocabulary \(TokenTask.vocabulary))"
            let skipped = notRun.isEmpty ? "" : " Not run here: \(notRun.joined(separator: ", ")) (the exact true Fisher needs T·V backward passes per token sequence; a user's estimator runs on classification data)."
            let mergeNote = "Causal LM: \(model) trained with Adam (lr \(setting.learningRate), batch \(setting.batchSize)) from one shared initialization for \(setting.fineTuneEpochs) epochs on each of two generated tasks (\(TokenTask(index: 0).name); \(TokenTask(index: 1).name); \(setting.trainSequences) sequences each, noise \(setting.noise)), then merged. Next-token accuracy (%, argmax over the whole vocabulary, positions 1..T-2) and per-token NLL (nats) on \(setting.testSequences) held-out sequences per task, averaged over the two tasks; mean ± std over \(seeds) seed(s). Each fine-tuned model on its own task: \(individual.percent)%; shared initialization: \(base.percent)%." + skipped
            let fishNote = "Causal LM: the task-0 model pre-trained (\(pretrained.percent)% on both tasks), target = both tasks; one dense warm-up epoch, mask, reset outside the mask, \(setting.sparseEpochs) epochs of sparse training; dense fine-tuning reaches \(dense.percent)%. Next-token accuracy (%) on both tasks' held-out sequences, mean ± std over \(seeds) seed(s)." + skipped
            return [
                ResultTable(identifier: "lm_merging", title: "Causal LM: Fisher merging of two task models (next-token accuracy and NLL)",
                            columns: ["estimator", "accuracy (%)", "NLL (nats/token)"],
                            rows: rowOrder.compactMap { row in mergingAccuracy[row].map { [row, $0.percent, String(format: "%.3f ± %.3f", mergingLoss[row]!.mean, mergingLoss[row]!.standardDeviation)] } },
                            notes: [mergeNote]),
                ResultTable(identifier: "lm_fish_mask", title: "Causal LM: FISH mask sparse fine-tuning (next-token accuracy)",
                            columns: ["estimator"] + setting.keepFractions.map { "\(String(format: "%g", 100 * $0))% trained" },
                            rows: rowOrder.compactMap { row in fishAccuracy[row].map { [row] + $0.map(\.percent) } },
                            notes: [fishNote]),
            ]
        }
    }

    /// The loss of the tasks: per-token cross-entropy, position `t` predicting token `t + 1`.
    static let loss = CrossEntropyLikelihood(layout: .perToken(shifted: true))

    /// The row label of an estimator.
    public static func label(_ choice: AblationEstimator) -> String {
        choice.isBaseline ? "baseline (averaging / random mask)" : choice.displayName
    }

    /// The estimators that run on sequence data.
    static let supported: Set<String> = [AblationEstimator.empiricalFisher.name, AblationEstimator.jointFisher.name, AblationEstimator.squisher.name]

    /// The importance of a built-in estimator for a model trained by `optimizer` on `data`, or nil
    /// for an estimator that cannot run on sequence data.
    static func importance(_ choice: AblationEstimator, model: any Layer, optimizer: any Optimizer, data: TensorDataset, batchSize: Int) throws -> Importance? {
        switch choice.name {
        case AblationEstimator.empiricalFisher.name: try EmpiricalFisher(batchSize: 64, loss: loss).estimate(model: model, data: data)
        case AblationEstimator.jointFisher.name: try JointEmpiricalFisher(batchSize: batchSize, loss: loss).estimate(model: model, data: data).scaled(by: 1 / Double(batchSize))
        case AblationEstimator.squisher.name: try Squisher(optimizer: optimizer, scaling: .datasetSize(data.count)).estimate(model: model, data: nil)
        default: nil
        }
    }

    /// Runs both parts for every seed.
    /// - Throws: ``TensorError``, ``EstimatorError`` or ``ApplicationError`` from the parts.
    public static func run(
        size: ExperimentSize, seeds: [UInt64], estimators: [AblationEstimator] = AblationEstimator.builtIns,
        setting: Setting? = nil, progress: ProgressReporter = .silent
    ) throws -> Result {
        let setting = setting ?? Setting(size: size)
        let estimators = AblationEstimator.reportOrder(estimators)
        let runnable = estimators.filter { $0.isBaseline || supported.contains($0.name) }
        var accuracy: [String: [Double]] = [:], nll: [String: [Double]] = [:], fish: [String: [[Double]]] = [:]
        var individual: [Double] = [], base: [Double] = [], pretrained: [Double] = [], dense: [Double] = []
        for seed in seeds {
            let seedRun = try SeedRun(setting: setting, seed: seed)
            base.append(try seedRun.score(seedRun.initial).accuracy)
            let models = try seedRun.fineTuneTasks(estimators: runnable)
            individual.append(models.individual)
            for choice in runnable {
                let score = try seedRun.score(choice.isBaseline
                    ? ParameterAveraging.merge(models: models.states)
                    : FisherMerging().merge(models: models.states, importances: models.importances[choice]!).parameters)
                accuracy[label(choice), default: []].append(score.accuracy)
                nll[label(choice), default: []].append(score.negativeLogLikelihood)
            }
            progress.message("lm: merging seed \(seed) done")
            let fishRun = try seedRun.fishMask(pretrained: models.states[0], estimators: runnable)
            pretrained.append(fishRun.pretrained)
            dense.append(fishRun.dense)
            for (row, values) in fishRun.accuracy { fish[row, default: []].append(values) }
            progress.message("lm: fish mask seed \(seed) done")
        }
        return Result(
            mergingAccuracy: accuracy.mapValues(Spread.init), mergingLoss: nll.mapValues(Spread.init),
            individual: Spread(individual), base: Spread(base),
            fishAccuracy: fish.mapValues { runs in setting.keepFractions.indices.map { i in Spread(runs.map { $0[i] }) } },
            pretrained: Spread(pretrained), dense: Spread(dense), rowOrder: runnable.map(label),
            notRun: estimators.filter { !$0.isBaseline && !supported.contains($0.name) }.map(\.displayName), setting: setting)
    }
}
