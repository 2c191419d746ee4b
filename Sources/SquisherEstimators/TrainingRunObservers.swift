/// The estimators attached to one training run: made before training (which calls
/// ``TrainingRunEstimator/prepare(for:)`` on every `.trainingRun` estimator, attaching their
/// hooks), asked for importances after training. The drivers' one place where
/// ``TrainingRunEstimator/requirement`` decides what happens when.
///
/// ```swift
/// let run = TrainingRun(model: model, optimizer: adam, data: train, batchSize: 32)
/// let observers = try TrainingRunObservers(run: run, estimators: [EmpiricalFisher(), MySquisher()])
/// try Trainer.train(model: model, optimizer: adam, data: train, configuration: configuration)
/// let importances = try observers.estimates()
/// ```
public struct TrainingRunObservers {
    /// The run observed.
    public let run: TrainingRun
    /// The estimators' names, in the order given.
    public let names: [String]
    private let pending: [() throws -> Importance]

    /// Prepares every estimator whose requirement is `.trainingRun` now (call before training).
    /// - Throws: ``EstimatorError`` when a `.data` estimator is given a run without data, or
    ///   whatever a `prepare` throws.
    public init(run: TrainingRun, estimators: [any TrainingRunEstimator]) throws {
        self.run = run
        names = estimators.map(\.name)
        pending = try estimators.map { estimator in try Self.open(estimator, run: run) }
    }

    private static func open<E: TrainingRunEstimator>(_ estimator: E, run: TrainingRun) throws -> () throws -> Importance {
        switch estimator.requirement {
        case .trainingRun:
            let observation = try estimator.prepare(for: run)
            return { try estimator.estimate(run, observation: observation) }
        case .data:
            guard run.data.count > 0 else {
                throw EstimatorError(estimator: estimator.name, problem: "needs data, and the training run's data set is empty")
            }
            return { try estimator.estimate(run, observation: try estimator.prepare(for: run)) }
        case .parametersOnly:
            return { try estimator.estimate(run, observation: try estimator.prepare(for: run)) }
        }
    }

    /// The importance of estimator `index` (in the order given) after training.
    public func estimate(_ index: Int) throws -> Importance { try pending[index]() }

    /// Every estimator's importance, in the order given.
    public func estimates() throws -> [Importance] { try pending.map { try $0() } }
}
