import SquisherApplications
import SquisherData
import SquisherEstimators
import SquisherLayers
import SquisherOptimizers
import SquisherTensor
import SquisherTraining

extension CausalLMExperiment {
    /// One seed's data, shared initialization and training runs.
    struct SeedRun {
        let setting: Setting
        let seed: UInt64
        /// Training and held-out sequences per task.
        let train: [TensorDataset], test: [TensorDataset]
        /// The shared initialization.
        let initial: NamedTensors
        /// The model whose parameters are loaded for each run and score.
        let model: Sequential

        init(setting: Setting, seed: UInt64) throws {
            self.setting = setting
            self.seed = seed
            let tasks = (0..<2).map { TokenTask(index: $0, length: setting.length, noise: setting.noise) }
            train = try tasks.map { try $0.sequences(count: setting.trainSequences, seed: seed &* 2 &+ 1) }
            test = try tasks.map { try $0.sequences(count: setting.testSequences, seed: seed &* 2 &+ 2) }
            model = try TinyGPT.make(layers: setting.layers, width: setting.width, heads: setting.heads, length: setting.length,
                                     vocabulary: TokenTask.vocabulary, seed: seed &+ 100)
            initial = model.stateDict()
        }

        /// Mean over the two tasks' held-out sets of the score of `parameters`.
        func score(_ parameters: NamedTensors) throws -> TokenScore {
            try model.load(parameters)
            let scores = try test.map { try TokenScore.of(model, on: $0) }
            return TokenScore(accuracy: scores.map(\.accuracy).reduce(0, +) / 2, negativeLogLikelihood: scores.map(\.negativeLogLikelihood).reduce(0, +) / 2)
        }

        /// Trains `model` from `start` on `data` with a fresh Adam (masked by `mask` when given) and
        /// returns the optimizer.
        func trainModel(from start: NamedTensors, data: TensorDataset, epochs: Int, seedOffset: UInt64, mask: ParameterMask? = nil) throws -> Adam {
            try model.load(start)
            let optimizer = try Adam(parameters: model.namedParameters, learningRate: setting.learningRate)
            let handles = mask.map { $0.enforce(on: optimizer, model: model, keepParametersZero: false) } ?? []
            defer { for handle in handles { handle.remove() } }
            try LikelihoodTrainer.train(
                model: model, optimizer: optimizer, data: data, loss: CausalLMExperiment.loss,
                configuration: TrainingConfiguration(epochs: epochs, batchSize: setting.batchSize, seed: seed &+ seedOffset))
            return optimizer
        }

        /// The fine-tuned models (one per task), each estimator's importances, and the mean of each
        /// model's accuracy on its own task.
        func fineTuneTasks(estimators: [AblationEstimator]) throws -> (states: [NamedTensors], importances: [AblationEstimator: [Importance]], individual: Double) {
            var states: [NamedTensors] = [], importances: [AblationEstimator: [Importance]] = [:], own = 0.0
            for (task, data) in train.enumerated() {
                let optimizer = try trainModel(from: initial, data: data, epochs: setting.fineTuneEpochs, seedOffset: UInt64(task) + 1)
                states.append(model.stateDict())
                own += try TokenScore.of(model, on: test[task]).accuracy / 2
                for choice in estimators where !choice.isBaseline {
                    guard let value = try CausalLMExperiment.importance(choice, model: model, optimizer: optimizer, data: data, batchSize: setting.batchSize) else { continue }
                    importances[choice, default: []].append(value)
                }
            }
            return (states, importances, own)
        }

        /// FISH-mask sparse fine-tuning from `pretrained` on both tasks: accuracy per row label and
        /// keep fraction, the pre-trained and the dense accuracy.
        func fishMask(pretrained: NamedTensors, estimators: [AblationEstimator]) throws -> (accuracy: [String: [Double]], pretrained: Double, dense: Double) {
            let target = try train[0].concatenated(with: train[1])
            let pretrainedAccuracy = try score(pretrained).accuracy
            let warmup = try trainModel(from: pretrained, data: target, epochs: 1, seedOffset: 10)
            let warmedUp = model.stateDict()
            var importances: [AblationEstimator: Importance] = [:]
            for choice in estimators where !choice.isBaseline {
                importances[choice] = try CausalLMExperiment.importance(choice, model: model, optimizer: warmup, data: target, batchSize: setting.batchSize)
            }
            _ = try trainModel(from: warmedUp, data: target, epochs: setting.sparseEpochs, seedOffset: 11)
            let dense = try score(model.stateDict()).accuracy
            var accuracy: [String: [Double]] = [:]
            for choice in estimators {
                var row: [Double] = []
                for keep in setting.keepFractions {
                    let fish = FishMask(keepFraction: keep)
                    let mask = try choice.isBaseline
                        ? fish.randomMask(parameters: warmedUp, seed: seed &+ 5)
                        : fish.mask(parameters: warmedUp, importance: importances[choice]!)
                    try model.load(warmedUp)
                    try FishMask.resetOutsideMask(model: model, pretrained: pretrained, mask: mask)
                    _ = try trainModel(from: model.stateDict(), data: target, epochs: setting.sparseEpochs, seedOffset: 11, mask: mask)
                    row.append(try score(model.stateDict()).accuracy)
                }
                accuracy[CausalLMExperiment.label(choice)] = row
            }
            return (accuracy, pretrainedAccuracy, dense)
        }
    }
}
