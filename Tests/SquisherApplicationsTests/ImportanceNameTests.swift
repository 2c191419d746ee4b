import Foundation
import Squisher
import Testing

/// No silent zeros in the applications: an importance whose names do not match the model, or that
/// is zero everywhere, is an ``ApplicationError`` in pruning, EWC, FISH mask and Task2Vec.
@Suite("Applications reject importances that do not match the model")
struct ImportanceNameTests {
    /// A two-level model's parameters (`0.0.weight`, ...) and an importance named as the inner
    /// sub-model names them (`0.weight`, ...): what an optimizer over the sub-model produces.
    static func mismatched() throws -> (parameters: NamedTensors, importance: Importance) {
        let inner = DigitsExperiment.mlp(hidden: [4], classes: 3, inputs: 5, seed: 1)
        let model = Sequential([inner])
        let importance = Importance(unchecked: inner.stateDict().mapTensors { _, t in t.map { abs($0) + 0.1 } }, estimator: "sub-model")
        return (model.stateDict(), importance)
    }

    static func expectMismatch(_ application: String, _ body: () throws -> Void) {
        let error = #expect(throws: ApplicationError.self) { try body() }
        let text = error?.description ?? ""
        #expect(text.contains("'0.0.weight'") && text.contains("'0.weight'") && text.contains("prefix"), "\(application): \(text)")
    }

    @Test("sub-model names: pruning, EWC and FISH mask fail naming both names and the prefix")
    func prefixMismatch() throws {
        let (parameters, importance) = try Self.mismatched()
        Self.expectMismatch("pruning") { _ = try FisherPruning().mask(parameters: parameters, importance: importance, sparsity: 0.5) }
        Self.expectMismatch("ewc") { try ElasticWeightConsolidation(lambda: 1).consolidate(importance: importance, anchor: parameters) }
        Self.expectMismatch("fish-mask") { _ = try FishMask(keepFraction: 0.5).mask(parameters: parameters, importance: importance) }
        Self.expectMismatch("shared check") { try importance.checkNames(matching: parameters.names, application: "merging") }
    }

    @Test("an entry that is no parameter is an error even when every parameter is covered")
    func unexpectedEntry() throws {
        let parameters = try ApplicationFormulaTests.named([("w", [1, 2]), ("b", [1])])
        let importance = try ApplicationFormulaTests.importance([("w", [1, 2]), ("b", [1]), ("extra", [3])])
        for body in [
            { _ = try FisherPruning(weightsOnly: false).mask(parameters: parameters, importance: importance, sparsity: 0.5) },
            { try ElasticWeightConsolidation(lambda: 1).consolidate(importance: importance, anchor: parameters) },
            { _ = try FishMask(keepFraction: 0.5).mask(parameters: parameters, importance: importance) },
        ] as [() throws -> Void] {
            #expect { try body() } throws: { "\($0)".contains("'extra'") }
        }
        // Entries for parameters an application leaves out (a bias outside weight-only pruning) are fine.
        let weights = try ApplicationFormulaTests.named([("w", [1, 2, 3, 4]), ("b", [1])]).mapTensors { name, t in
            name == "w" ? Tensor(uncheckedShape: [2, 2], scalars: t.scalars) : t
        }
        let covering = Importance(unchecked: weights.mapTensors { _, t in t.map { _ in 1 } }, estimator: "ok")
        #expect(try FisherPruning().mask(parameters: weights, importance: covering, sparsity: 0.5).masks.names == ["w"])
    }

    @Test("an importance that is zero everywhere is an error in pruning, EWC, FISH mask and Task2Vec")
    func allZero() throws {
        let parameters = try ApplicationFormulaTests.named([("w", [1, 2, 3, 4])]).mapTensors { _, t in Tensor(uncheckedShape: [2, 2], scalars: t.scalars) }
        let zero = Importance(unchecked: parameters.mapTensors { _, t in Tensor(zeros: t.shape) }, estimator: "never-attached")
        for (application, body) in [
            ("pruning", { _ = try FisherPruning().mask(parameters: parameters, importance: zero, sparsity: 0.5) }),
            ("ewc", { try ElasticWeightConsolidation(lambda: 1).consolidate(importance: zero, anchor: parameters) }),
            ("fish-mask", { _ = try FishMask(keepFraction: 0.5).mask(parameters: parameters, importance: zero) }),
            ("task2vec", { _ = try Task2Vec().embedding(zero) }),
        ] as [(String, () throws -> Void)] {
            #expect(throws: ApplicationError.self, "\(application)") { try body() }
            #expect { try body() } throws: { "\($0)".contains("zero") && "\($0)".contains("never-attached") }
        }
    }

    /// End to end, the case: Adam over a sub-model, the model names its parameters
    /// `0.0.weight`. The Squisher fails (default and `.zero`), and a zero-filled importance made
    /// by hand is rejected by pruning.
    @Test("Adam over a sub-model: the Squisher and pruning both refuse")
    func endToEnd() throws {
        let inner = DigitsExperiment.mlp(hidden: [8], classes: 10, seed: 2)
        let model = Sequential([inner])
        let (train, _) = try DigitsExperiment.split(seed: 2)
        let adam = try Adam(parameters: inner.namedParameters)
        try Trainer.train(model: model, optimizer: adam, data: try train.subset(Array(0..<64)), configuration: TrainingConfiguration(epochs: 1, batchSize: 32, seed: 3))
        #expect(throws: EstimatorError.self) { try Squisher(optimizer: adam).estimate(model: model, data: nil) }
        #expect(throws: EstimatorError.self) { try Squisher(optimizer: adam, unobserved: .zero).estimate(model: model, data: nil) }
        let zeros = Importance(unchecked: model.stateDict().mapTensors { _, t in Tensor(zeros: t.shape) }, estimator: "squisher")
        #expect(throws: ApplicationError.self) { _ = try FisherPruning().mask(parameters: model.stateDict(), importance: zeros, sparsity: 0.5) }
    }
}
