/// An estimator that may need the training run itself: the optimizer's step hooks (to observe
/// training as it happens), its published state (to recycle after training), the data-set size
/// `N` and the batch size `B`. The open protocol behind the experiment drivers and
/// `AblationStudy`: a Squisher-like estimator written outside the package takes part in every
/// experiment next to the built-ins.
///
/// A driver calls, for each training run:
/// 1. ``prepare(for:)`` **before the first optimizer step** when ``requirement`` is
///    `.trainingRun` (attach hooks here; the returned ``Observation`` is kept for step 2). For
///    `.data` and `.parametersOnly` it is called after training, just before step 2, so that they
///    cost nothing during training.
/// 2. ``estimate(_:observation:)`` after the last step, with the same run. A `.data` estimator
///    gets the run's training data; drivers check that it is not empty.
///
/// Every ``SensitivityEstimator`` that is `Sendable` and needs no observation becomes one with an
/// empty extension (`extension MyEstimator: TrainingRunEstimator {}`): its
/// ``SensitivityEstimator/estimate(model:data:)`` is called with the run's model, and with its
/// training data when ``requirement`` is `.data` (`nil` otherwise). The built-in Fisher variants
/// and baselines conform that way.
///
/// Conventions: as ``SensitivityEstimator`` (sum-reduced over the samples seen unless documented;
/// recorded in ``Importance/conventions``).
public protocol TrainingRunEstimator: Sendable {
    /// What ``prepare(for:)`` hands to ``estimate(_:observation:)`` (e.g. a hook accumulator);
    /// `Void` for estimators that only read the run afterwards.
    associatedtype Observation = Void
    /// A short identifier used in reports and file metadata.
    var name: String { get }
    /// What the estimate needs; decides when drivers call ``prepare(for:)`` (see above).
    var requirement: EstimatorRequirement { get }
    /// Called once per run, before training for `.trainingRun` estimators.
    func prepare(for run: TrainingRun) throws -> Observation
    /// The importance of every parameter of `run.model` (names and shapes as
    /// `run.model.namedParameters`) after training.
    func estimate(_ run: TrainingRun, observation: Observation) throws -> Importance
}

extension TrainingRunEstimator where Observation == Void {
    /// Nothing to observe.
    public func prepare(for run: TrainingRun) {}
}

extension TrainingRunEstimator where Self: SensitivityEstimator, Observation == Void {
    /// ``SensitivityEstimator/estimate(model:data:)`` on the run's model, with its training data
    /// when ``requirement`` is `.data`.
    public func estimate(_ run: TrainingRun, observation: Void) throws -> Importance {
        try estimate(model: run.model, data: requirement == .data ? run.data : nil)
    }
}

extension EmpiricalFisher: TrainingRunEstimator {}
extension TrueFisherExact: TrainingRunEstimator {}
extension TrueFisherMonteCarlo: TrainingRunEstimator {}
extension JointEmpiricalFisher: TrainingRunEstimator {}
extension UniformImportance: TrainingRunEstimator {}
extension MagnitudeImportance: TrainingRunEstimator {}
extension RandomImportance: TrainingRunEstimator {}
