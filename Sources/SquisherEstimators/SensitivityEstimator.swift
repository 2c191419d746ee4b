import SquisherData
import SquisherLayers
import SquisherOptimizers
import SquisherTensor

/// What an estimator needs to produce its estimate.
public enum EstimatorRequirement: String, Sendable, Hashable {
    /// Only the parameters (uniform, magnitude, random baselines).
    case parametersOnly
    /// A training run it observed or an optimizer state it reads (the Squisher): no data pass.
    case trainingRun
    /// Extra passes over data (the Fisher variants).
    case data
}

/// Anything that turns a model (and possibly data or a training run) into a per-parameter
/// importance: the open protocol behind every estimator in Squisher. Applications take the
/// resulting ``Importance``, so a custom estimator written outside the package works everywhere.
///
/// Conventions (per-sample loss `l_n = −log p(y_n|x_n)`, per-sample gradient `g_n`, `N` samples):
/// estimators that need data return **sum-reduced** quantities over the samples they saw unless
/// their documentation says otherwise, and record it in ``Importance/conventions``.
public protocol SensitivityEstimator {
    /// A short identifier used in reports and file metadata (`"empirical-fisher"`).
    var name: String { get }
    /// What the estimate needs.
    var requirement: EstimatorRequirement { get }
    /// Computes the importance of every parameter of `model` (names and shapes as
    /// `model.namedParameters`). `data` is required when ``requirement`` is `.data`.
    func estimate(model: any Layer, data: Dataset?) throws -> Importance
}

/// An estimator that learns during training by observing optimizer steps through the step hooks
/// (no change to the training loop beyond attaching it).
public protocol TrainingObserver: AnyObject {
    /// Starts observing `optimizer`'s steps; the handle detaches.
    @discardableResult
    func attach(to optimizer: any Optimizer) -> HookHandle
}

/// Errors raised by estimators: each names the estimator and the layer, argument or data at fault.
public struct EstimatorError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The estimator (`"empirical-fisher"`).
    public var estimator: String
    /// What went wrong.
    public var problem: String

    public init(estimator: String, problem: String) {
        self.estimator = estimator
        self.problem = problem
    }

    public var description: String { "\(estimator): \(problem)" }
}
