import SquisherData
import SquisherLayers
import SquisherOptimizers

/// One training run as an estimator sees it: the model being trained, the optimizer training it
/// (its step hooks, to attach to before training, and its published state, to read after), the
/// training data and the mini-batch size.
///
/// Experiment drivers make one per training run, hand it to every ``TrainingRunEstimator`` before
/// the first step (``TrainingRunEstimator/prepare(for:)``) and again after the last
/// (``TrainingRunEstimator/estimate(_:observation:)``). The model and the optimizer are references:
/// what an estimator reads at estimate time is their state after training.
public struct TrainingRun {
    /// The model, with PyTorch-style parameter names (`0.weight`).
    public let model: any Layer
    /// The optimizer that trains `model`; its parameter names must be the model's.
    public let optimizer: any Optimizer
    /// The training data; `N = data.count`.
    public let data: Dataset
    /// Samples per mini-batch `B` (the loss is mean-reduced over the batch unless the driver says
    /// otherwise).
    public let batchSize: Int

    /// A run over `data` in mini-batches of `batchSize`.
    public init(model: any Layer, optimizer: any Optimizer, data: Dataset, batchSize: Int) {
        self.model = model
        self.optimizer = optimizer
        self.data = data
        self.batchSize = batchSize
    }

    /// The data-set size `N`.
    public var datasetSize: Int { data.count }
    /// The optimizer's published state (Adam's `exp_avg_sq`, ...), a snapshot taken now.
    public var optimizerState: OptimizerState { optimizer.state }
    /// The optimizer's step hooks (register pre/post-step observers here before training).
    public var hooks: StepHookRegistry { optimizer.hooks }
}
