import Squisher
import Testing

/// The application formulas against hand-computed values, and bad input (Must show 4).
@Suite("Application formulas and bad input")
struct ApplicationFormulaTests {
    static func named(_ pairs: [(String, [Float])]) throws -> NamedTensors {
        try NamedTensors(pairs.map { ($0.0, try Tensor(shape: [$0.1.count], scalars: $0.1)) })
    }
    static func importance(_ pairs: [(String, [Float])]) throws -> Importance {
        try Importance(values: named(pairs), estimator: "test")
    }

    @Test("Fisher merging: weighted by importance, floor, weights, averaging fallback")
    func fisherMerging() throws {
        let a = try Self.named([("w", [1, 2]), ("b", [0])]), b = try Self.named([("w", [3, 6]), ("b", [4])])
        let fa = try Self.importance([("w", [1, 0])]), fb = try Self.importance([("w", [3, 0])])
        let result = try FisherMerging(epsilon: 1e-6).merge(models: [a, b], importances: [fa, fb], weights: [1, 1])
        // w0: (1*1 + 3*3)/(1+3) = 2.5; w1: both floored to 1e-6 -> plain mean 4; b has no importance -> average 2.
        #expect(result.parameters["w"]!.scalars == [2.5, 4])
        #expect(result.parameters["b"]!.scalars == [2])
        #expect(result.averagedParameters == ["b"])
        let weighted = try FisherMerging().merge(models: [a, b], importances: [fa, fb], weights: [3, 1])
        #expect(abs(weighted.parameters["w"]!.scalars[0] - (3 * 1 * 1 + 1 * 3 * 3) / Float(3 * 1 + 1 * 3)) < 1e-6)
    }

    @Test("UBGM: one task returns the task model; two tasks match the closed form")
    func ubgm() throws {
        let base = try Self.named([("w", [0, 1])])
        let t1 = try Self.named([("w", [2, 1])]), t2 = try Self.named([("w", [0, 5])])
        let f1 = try Self.importance([("w", [1, 2])]), f2 = try Self.importance([("w", [3, 2])])
        let f0 = try Self.importance([("w", [1, 0])])
        let single = try UBGMMerging(priorPrecision: 0).merge(base: base, baseImportance: f0, tasks: [t1], taskImportances: [f1])
        #expect(single["w"]!.scalars == [2, 1])
        let merged = try UBGMMerging(priorPrecision: 0).merge(base: base, baseImportance: f0, tasks: [t1, t2], taskImportances: [f1, f2])
        // w0: 0 + ((1+1)*2 + (3+1)*0) / (1+3+1) = 0.8; w1: 1 + ((2+0)*0 + (2+0)*4)/(2+2+0) = 3.
        #expect(abs(merged["w"]!.scalars[0] - 0.8) < 1e-6 && abs(merged["w"]!.scalars[1] - 3) < 1e-6)
    }

    @Test("pruning: saliency θ²F/2, global and per-tensor top-k")
    func pruning() throws {
        let weights = try NamedTensors([("w", Tensor(shape: [2, 2], scalars: [1, -2, 3, 0.5])), ("b", Tensor(shape: [1], scalars: [9]))])
        let fisher = try Importance(values: NamedTensors([("w", Tensor(shape: [2, 2], scalars: [4, 1, 0.1, 8])), ("b", Tensor(shape: [1], scalars: [1]))]), estimator: "f")
        let saliency = try FisherPruning().saliency(parameters: weights, importance: fisher)
        // θ²F/2 (0.45 is 3²·0.1/2 rounded in float32: one ulp of slack); b (rank 1) is not pruned.
        #expect(zip(saliency["w"]!.scalars, [2, 2, 0.45, 1] as [Float]).allSatisfy { abs($0 - $1) <= $1.ulp })
        #expect(saliency["b"] == nil)
        let mask = try FisherPruning().mask(parameters: weights, importance: fisher, sparsity: 0.5)
        #expect(mask.masks["w"]!.scalars == [1, 1, 0, 0])
        #expect(mask.sparsity == 0.5)
    }

    @Test("FISH mask: classifier always trainable, k counts it")
    func fishMask() throws {
        let parameters = try Self.named([("body", [1, 2, 3, 4, 5, 6]), ("head", [1, 1])])
        let importance = try Self.importance([("body", [6, 5, 4, 3, 2, 1]), ("head", [0, 0])])
        let mask = try FishMask(keepFraction: 0.5, classifierParameters: ["head"]).mask(parameters: parameters, importance: importance)
        // k = 0.5 * 8 - 2 = 2 body entries.
        #expect(mask.masks["body"]!.scalars == [1, 1, 0, 0, 0, 0])
        #expect(mask.masks["head"]!.scalars == [1, 1])
    }

    @Test("Task2Vec: distance is 0 for identical and for rescaled embeddings, MRR by hand")
    func task2vec() throws {
        let a = try Self.importance([("w", [1, 2, 3, 4])])
        let b = try a.scaled(by: 100)
        let t2v = Task2Vec(grouping: .perTensor)
        #expect(try Task2Vec.distance(t2v.embedding(a), t2v.embedding(b)) < 1e-12)
        let mrr = try Task2Vec.meanReciprocalRank(rankings: [[1, 2], [0, 2], [1, 0]], bestSources: [1, 2, 0])
        #expect(abs(mrr - (1 + 0.5 + 0.5) / 3) < 1e-12)
    }

    @Test("EWC: penalty (λ/2) Σ F (θ − θ*)² and its gradient")
    func ewc() throws {
        let ewc = try ElasticWeightConsolidation(lambda: 4)
        try ewc.consolidate(importance: Self.importance([("w", [1, 2])]), anchor: Self.named([("w", [0, 1])]))
        let parameter = Parameter(try Tensor(shape: [2], scalars: [1, 3]))
        let penalty = try ewc.addPenalty(to: [("w", parameter)], batchSize: 8)
        #expect(abs(penalty - 2 * (1 * 1 + 2 * 4)) < 1e-9)  // λ/2 Σ F Δ² = 2 * 9
        #expect(parameter.gradient.scalars == [4, 16])      // λ F Δ
    }

    @Test("bad input: mismatched names and shapes, empty lists, negative/NaN importance, bad sparsity")
    func badInput() throws {
        let a = try Self.named([("w", [1, 2])]), renamed = try Self.named([("v", [1, 2])]), reshaped = try Self.named([("w", [1, 2, 3])])
        func expectError(_ fragment: String, _ body: () throws -> Void) {
            #expect { try body() } throws: { "\($0)".contains(fragment) }
        }
        expectError("no parameter 'w'") { _ = try ParameterAveraging.merge(models: [a, renamed]) }
        expectError("shape [3]") { _ = try ParameterAveraging.merge(models: [a, reshaped]) }
        expectError("at least one") { _ = try ParameterAveraging.merge(models: []) }
        expectError("at least one task") { _ = try UBGMMerging().merge(base: a, baseImportance: nil, tasks: [], taskImportances: []) }
        let negative = Importance(unchecked: try Self.named([("w", [1, -1])]), estimator: "bad")
        let nan = Importance(unchecked: try Self.named([("w", [.nan, 1])]), estimator: "bad")
        expectError("importance of 'w'") { _ = try FisherMerging().merge(models: [a, a], importances: [negative, nil]) }
        expectError("importance of 'w'") { _ = try FisherPruning(weightsOnly: false).mask(parameters: a, importance: nan, sparsity: 0.5) }
        let good = try Self.importance([("w", [1, 2])])
        expectError("sparsity must be in [0, 1)") { _ = try FisherPruning(weightsOnly: false).mask(parameters: a, importance: good, sparsity: 1) }
        expectError("sparsity must be in [0, 1)") { _ = try FisherPruning(weightsOnly: false).mask(parameters: a, importance: good, sparsity: -0.1) }
        expectError("keepFraction") { _ = try FishMask(keepFraction: 0).mask(parameters: a, importance: good) }
        expectError("lambda") { _ = try ElasticWeightConsolidation(lambda: -1) }
        expectError("'w'") { try ElasticWeightConsolidation(lambda: 1).consolidate(importance: nan, anchor: a) }
    }
}

@Suite("Online EWC and label sampling")
struct OnlineEWCAndSamplingTests {
    @Test("online EWC keeps one term: F ← F_new + γ F_old, anchored at the latest parameters")
    func onlineEWC() throws {
        let ewc = try ElasticWeightConsolidation(lambda: 2, mode: .online(gamma: 0.5))
        try ewc.consolidate(importance: ApplicationFormulaTests.importance([("w", [4, 2])]), anchor: ApplicationFormulaTests.named([("w", [0, 0])]))
        try ewc.consolidate(importance: ApplicationFormulaTests.importance([("w", [1, 1])]), anchor: ApplicationFormulaTests.named([("w", [1, 1])]))
        #expect(ewc.terms.count == 1)
        #expect(ewc.terms[0].importance["w"]!.scalars == [3, 2])  // 1 + 0.5·4, 1 + 0.5·2
        let parameter = Parameter(try Tensor(shape: [2], scalars: [2, 1]))
        let penalty = try ewc.addPenalty(to: [("w", parameter)], batchSize: 1)
        #expect(penalty == 1 * 3 * 1)           // λ/2 Σ F Δ² = 1 · (3·1² + 2·0²)
        #expect(parameter.gradient.scalars == [6, 0])  // λ F Δ
    }

    @Test("labels sampled from the model's predictive distribution have its frequencies")
    func sampling() throws {
        // One row of logits with probabilities (0.5, 0.3, 0.2), 20,000 draws: each frequency within 4
        // standard errors (sqrt(p(1-p)/n) <= 0.0036) of its probability.
        let p: [Double] = [0.5, 0.3, 0.2]
        let row = p.map { Float(ScalarMath.log($0)) }
        let logits = try Tensor(shape: [20_000, 3], scalars: (0..<20_000).flatMap { _ in row })
        var generator = SplitMix64(seed: 8)
        let labels = try SoftmaxCrossEntropy.sampleLabels(logits: logits, using: &generator)
        for c in 0..<3 {
            let frequency = Double(labels.filter { $0 == c }.count) / 20_000
            #expect(abs(frequency - p[c]) < 4 * 0.0036, "class \(c): \(frequency) vs \(p[c])")
        }
        var again = SplitMix64(seed: 8)
        #expect(try SoftmaxCrossEntropy.sampleLabels(logits: logits, using: &again) == labels)
    }
}
