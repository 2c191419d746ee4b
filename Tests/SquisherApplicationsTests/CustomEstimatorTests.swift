import Squisher
import Testing

/// An estimator defined outside the package (here, in a test target that only imports the public
/// API): squared gradients of a *sum* loss on each sample's first class logit. Arbitrary on
/// purpose; the point is that every application takes it unchanged (Must show 3).
struct FirstLogitSensitivity: SensitivityEstimator {
    let name = "first-logit"
    let requirement = EstimatorRequirement.data
    func estimate(model: any Layer, data: Dataset?) throws -> Importance {
        guard let data else { throw EstimatorError(estimator: name, problem: "needs data") }
        let relabeled = try Dataset(inputs: data.inputs, labels: [Int](repeating: 0, count: data.count), classCount: data.classCount)
        var result = try EmpiricalFisher().estimate(model: model, data: relabeled)
        result.estimator = name
        return result
    }
}

@Suite("A custom estimator works in every application")
struct CustomEstimatorTests {
    @Test func everyApplication() throws {
        let run = try DigitsExperiment.trainMLP(hidden: 16, epochs: 3, seed: 2)
        let estimator: any SensitivityEstimator = FirstLogitSensitivity()
        let importance = try estimator.estimate(model: run.model, data: run.train)
        let state = run.model.stateDict()
        #expect(importance.names == state.names)
        // Merging (Fisher and UBGM), pruning, FISH mask, Task2Vec, EWC: no change to their code.
        let merged = try FisherMerging().merge(models: [state, state], importances: [importance, importance])
        #expect(merged.averagedParameters.isEmpty && merged.parameters.names == state.names)
        let ubgm = try UBGMMerging(priorPrecision: 1).merge(base: state, baseImportance: importance, tasks: [state], taskImportances: [importance])
        #expect(ubgm == state)  // merging a model with itself returns it
        let mask = try FisherPruning().mask(parameters: state, importance: importance, sparsity: 0.5)
        #expect(abs(mask.sparsity - 0.5) < 0.01)
        let fish = try FishMask(keepFraction: 0.05).mask(parameters: state, importance: importance)
        #expect(fish.keptCount == Int((0.05 * Double(state.scalarCount)).rounded()))
        let embedding = try Task2Vec().embedding(importance)
        #expect(try Task2Vec.distance(embedding, embedding) < 1e-12)
        let ewc = try ElasticWeightConsolidation(lambda: 1)
        try ewc.consolidate(importance: importance, anchor: state)
        #expect(try ewc.addPenalty(to: run.model.namedParameters, batchSize: 1) == 0)  // at the anchor
    }
}
