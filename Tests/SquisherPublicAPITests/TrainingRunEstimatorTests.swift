import Foundation
import Squisher
import Testing

/// Records when it was prepared (the optimizer's step count then) and what data it got.
struct StepProbe: TrainingRunEstimator {
    let name: String
    let requirement: EstimatorRequirement

    func prepare(for run: TrainingRun) -> Int { run.optimizer.stepCount }

    func estimate(_ run: TrainingRun, observation stepsAtPrepare: Int) throws -> Importance {
        let values = try NamedTensors(run.model.namedParameters.map { ($0.name, Tensor(repeating: 1, shape: $0.parameter.value.shape)) })
        return Importance(unchecked: values, estimator: name, conventions: ["steps_at_prepare": "\(stepsAtPrepare)", "steps_at_estimate": "\(run.optimizer.stepCount)"])
    }
}

/// A plain `SensitivityEstimator` that reports whether it was given data.
struct DataProbe: SensitivityEstimator, TrainingRunEstimator {
    let name = "data-probe"
    let requirement: EstimatorRequirement
    func estimate(model: any Layer, data: Dataset?) throws -> Importance {
        let values = try NamedTensors(model.namedParameters.map { ($0.name, Tensor(repeating: 1, shape: $0.parameter.value.shape)) })
        return Importance(unchecked: values, estimator: name, conventions: ["samples": data.map { "\($0.count)" } ?? "none"])
    }
}

/// The drivers' contract: `requirement` decides when an estimator is prepared and what it gets.
@Suite("TrainingRunObservers follow each estimator's requirement")
struct TrainingRunEstimatorTests {
    @Test(".trainingRun is prepared before the first step, .data and .parametersOnly after the last; data only for .data")
    func requirementDecides() throws {
        let (train, _) = try DigitsExperiment.split(seed: 4)
        let data = try train.subset(Array(0..<64))
        let model = DigitsExperiment.mlp(hidden: [8], seed: 4)
        let adam = try Adam(parameters: model.namedParameters)
        let observers = try TrainingRunObservers(run: TrainingRun(model: model, optimizer: adam, data: data, batchSize: 16), estimators: [
            StepProbe(name: "run", requirement: .trainingRun), StepProbe(name: "data", requirement: .data),
            StepProbe(name: "parameters", requirement: .parametersOnly),
            DataProbe(requirement: .data), DataProbe(requirement: .parametersOnly),
        ])
        try Trainer.train(model: model, optimizer: adam, data: data, configuration: TrainingConfiguration(epochs: 1, batchSize: 16, seed: 0))
        let results = try observers.estimates()
        #expect(results.map { $0.conventions["steps_at_prepare"] } == ["0", "4", "4", nil, nil])
        #expect(results.map { $0.conventions["steps_at_estimate"] } == ["4", "4", "4", nil, nil])
        #expect(results[3].conventions["samples"] == "64" && results[4].conventions["samples"] == "none")
        // A .data estimator on a run without data is refused before training starts.
        let empty = try data.subset([])
        #expect(throws: EstimatorError.self) {
            try TrainingRunObservers(run: TrainingRun(model: model, optimizer: adam, data: empty, batchSize: 16), estimators: [EmpiricalFisher()])
        }
    }
}
