import SquisherEstimators

/// The experiment's estimators attached to one training run (the baseline skipped): built before
/// training with ``TrainingRunObservers``, asked for importances after.
struct ObservedEstimators {
    let observers: TrainingRunObservers
    let estimators: [AblationEstimator]

    /// Prepares the `.trainingRun` estimators on `run` (call before training).
    init(_ estimators: [AblationEstimator], run: TrainingRun) throws {
        var unique: [AblationEstimator] = []
        for estimator in estimators where !estimator.isBaseline && !unique.contains(estimator) { unique.append(estimator) }
        self.estimators = unique
        observers = try TrainingRunObservers(run: run, estimators: unique.map { $0.estimator! })
    }

    /// The importance of `estimator` after training (`nil` for the baseline).
    /// - Throws: ``EstimatorError`` for an estimator that was not attached, or what it throws.
    func importance(_ estimator: AblationEstimator) throws -> Importance? {
        guard !estimator.isBaseline else { return nil }
        guard let index = estimators.firstIndex(of: estimator) else {
            throw EstimatorError(estimator: estimator.name, problem: "was not attached to this training run")
        }
        return try observers.estimate(index)
    }
}
