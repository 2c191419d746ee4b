import Squisher
import Testing

/// EWC on split digits (task-incremental, `EWCExperiment`) and the EWC regularizer's input checks.
@Suite("Elastic weight consolidation")
struct EWCTests {
    /// The quick preset (MLP 64-50-50-50-10, Adam lr 1e-2, 10 epochs per task): plain fine-tuning
    /// forgets a lot there, and EWC with the empirical Fisher and with the Squisher (`N·v`) both
    /// recover most of it. λ = 1000 for both is in the middle of both validation optima of the
    /// full sweep (Guides/EWC.md). Margin: ≥ 10 accuracy points on the mean over seeds 0-3
    /// (the failure message prints the three means and the per-seed values; four seeds because the
    /// baseline's own seed spread is about 12 points and rounding changes in the kernels moved it by 10
    /// with two).
    @Test func ewcWithFisherAndSquisherBeatsNoRegularization() throws {
        let configuration = EWCConfiguration.preset(.quick)
        let seeds: [UInt64] = [0, 1, 2, 3]
        func finalAccuracy(_ importance: EWCImportance, lambda: Double) throws -> Spread {
            Spread(try seeds.map {
                try EWCExperiment.sequence(scenario: .taskIncremental, importance: importance, lambda: lambda, seed: $0,
                                           configuration: configuration).finalAverageTestAccuracy
            })
        }
        let baseline = try finalAccuracy(.none, lambda: 0)
        let fisher = try finalAccuracy(.estimator(.empiricalFisher), lambda: 1000)
        let squisher = try finalAccuracy(.estimator(.squisher), lambda: 1000)
        let margin = 0.10
        let numbers = "baseline \(baseline.percent) (\(baseline.values)), Fisher \(fisher.percent) (\(fisher.values)), Squisher \(squisher.percent) (\(squisher.values)); required margin \(100 * margin) points"
        #expect(fisher.mean >= baseline.mean + margin, "EWC with the empirical Fisher must beat no regularization: \(numbers)")
        #expect(squisher.mean >= baseline.mean + margin, "EWC with the Squisher must beat no regularization: \(numbers)")
    }

    /// The β₂ = 0.999 hook accumulator on the training Adam (β₂ = 0.999) reproduces Adam's own
    /// `exp_avg_sq` bit for bit, so the whole EWC sequence must be identical to the Squisher's;
    /// and a sequence is deterministic in its seed. Exact equality: same operations, same order.
    @Test func hookAccumulatorAtAdamsBeta2ReproducesTheSquisherRun() throws {
        let configuration = EWCConfiguration.preset(.quick)
        let squisher = try EWCExperiment.sequence(scenario: .taskIncremental, importance: .estimator(.squisher), lambda: 1000, seed: 7, configuration: configuration)
        let again = try EWCExperiment.sequence(scenario: .taskIncremental, importance: .estimator(.squisher), lambda: 1000, seed: 7, configuration: configuration)
        let hook = try EWCExperiment.sequence(scenario: .taskIncremental, importance: .squisherEMA(beta2: 0.999), lambda: 1000, seed: 7, configuration: configuration)
        let raw = try EWCExperiment.sequence(scenario: .taskIncremental, importance: .squisherRaw, lambda: 1000, seed: 7, configuration: configuration)
        #expect(squisher.testAccuracy == again.testAccuracy, "same seed, different result: \(squisher.testAccuracy) vs \(again.testAccuracy)")
        #expect(hook.testAccuracy == squisher.testAccuracy, "hook β₂ = 0.999 \(hook.testAccuracy) vs Squisher \(squisher.testAccuracy)")
        #expect(hook.validationAccuracy == squisher.validationAccuracy)
        // Raw v is N (about 230) times smaller: a different penalty, so a different run (this
        // guards against the importance being ignored).
        #expect(raw.testAccuracy != squisher.testAccuracy, "raw v and N·v gave identical runs: \(raw.testAccuracy)")
        #expect(squisher.testAccuracy.count == 5 && squisher.testAccuracy.allSatisfy { $0.count == 5 })
        // Right after training on task t its own test accuracy is high: 2-way digit pairs reach
        // ~100% without a penalty; λ = 1000 costs some plasticity (measured ≥ 90.7% on seed 7).
        for t in 0..<5 { #expect(squisher.testAccuracy[t][t] >= 0.85, "task \(t) right after training: \(squisher.testAccuracy[t][t])") }
    }

    /// The full pipeline at a tiny size: tables, rows and the raw numbers are consistent.
    @Test func runProducesTablesAndRawNumbers() throws {
        var configuration = EWCConfiguration.preset(.quick)
        configuration.epochsPerTask = 1
        configuration.classIncrementalEpochsPerTask = 1
        configuration.lambdas = [10, 1000]
        configuration.classIncrementalLambdas = [100]
        configuration.ablationBeta2s = [0.9]
        let result = try EWCExperiment.run(configuration: configuration, seeds: [3], estimators: [.empiricalFisher, .squisher, .baseline])
        #expect(result.main.map(\.importance) == [.none, .estimator(.empiricalFisher), .estimator(.squisher)])
        #expect(result.classIncremental.map(\.importance) == [.none, .estimator(.empiricalFisher), .estimator(.squisher)])
        // Baselines, 2 methods × 2 λ task-incremental, the N·B·v ablation's own sweep over the same
        // 2 λ, 2 methods × 1 λ class-incremental.
        #expect(result.sweep.count == 2 * 1 + 2 * 2 + 2 + 2 * 1, "sweep rows: \(result.sweep.map { "\($0.scenario) \($0.importance) \($0.lambda)" })")
        for variant in result.main + result.classIncremental + result.ablations {
            #expect(variant.runs.count == 1)
            #expect(variant.finalTestAccuracy.mean >= 0 && variant.finalTestAccuracy.mean <= 1, "\(variant.importance): \(variant.finalTestAccuracy)")
            #expect(variant.meanTestAccuracy.count == 5)
        }
        // Main λs are the validation argmax of the sweep.
        for variant in result.main where variant.importance != .none {
            let candidates = result.sweep.filter { $0.scenario == .taskIncremental && $0.importance == variant.importance }
            let best = candidates.map(\.finalValidationAccuracy.mean).max() ?? -1
            #expect(variant.finalValidationAccuracy.mean == best, "\(variant.importance) chose λ = \(variant.lambda)")
        }
        #expect(result.ablations.contains { $0.importance == .squisherRaw })
        #expect(result.ablations.contains { $0.importance == .squisherEMA(beta2: 0.9) })
        let matched = result.ablations.filter { $0.importance == .squisherSumReducedFisher }
        #expect(matched.map(\.lambdaChoice) == ["Fisher's best λ", "own best (validation)"])
        let tables = result.tables()
        #expect(tables.map(\.identifier) == ["ewc", "ewc-ablations", "ewc-class-incremental", "ewc-lambda-sweep"])
        #expect(tables[0].rows.count == 3 && tables[2].rows.count == 3)
        #expect(tables.allSatisfy { table in table.rows.allSatisfy { $0.count == table.columns.count } })
    }

    @Test func runRejectsBadSettings() throws {
        var configuration = EWCConfiguration.preset(.quick)
        #expect(throws: ApplicationError.self) { try EWCExperiment.run(configuration: configuration, seeds: []) }
        configuration.lambdas = [10, -1]
        let error = #expect(throws: ApplicationError.self) { try EWCExperiment.run(configuration: configuration, seeds: [0]) }
        #expect(error?.problem.contains("lambdas") == true, "\(String(describing: error))")
    }

    // MARK: - Bad input to the regularizer

    /// The parameters of a tiny MLP 3-4-2 (`0.weight`, `0.bias`, `2.weight`, `2.bias`).
    private func anchor() -> NamedTensors {
        DigitsExperiment.mlp(hidden: [4], classes: 2, inputs: 3, seed: 1).stateDict()
    }

    private func importance(_ anchor: NamedTensors, corrupt name: String? = nil, value: Float = .nan, dropping dropped: String? = nil) throws -> Importance {
        let pairs = anchor.names.filter { $0 != dropped }.map { parameter -> (String, Tensor) in
            var scalars = [Float](repeating: 0.5, count: anchor[parameter]!.count)
            if parameter == name { scalars[1] = value }
            return (parameter, Tensor(uncheckedShape: anchor[parameter]!.shape, scalars: scalars))
        }
        return Importance(unchecked: try NamedTensors(pairs), estimator: "test-importance")
    }

    @Test(arguments: [Float.nan, -1, .infinity])
    func consolidateRejectsBadImportanceNamingTheParameter(_ value: Float) throws {
        let anchor = anchor()
        let ewc = try ElasticWeightConsolidation(lambda: 1)
        let error = #expect(throws: ApplicationError.self) {
            try ewc.consolidate(importance: try importance(anchor, corrupt: "2.weight", value: value), anchor: anchor)
        }
        #expect(error?.description.contains("'2.weight'") == true, "error must name the parameter: \(String(describing: error))")
        #expect(ewc.terms.isEmpty)
    }

    @Test func consolidateRejectsMissingParameterNamingIt() throws {
        let anchor = anchor()
        let ewc = try ElasticWeightConsolidation(lambda: 1, mode: .online(gamma: 0.9))
        let error = #expect(throws: ApplicationError.self) {
            try ewc.consolidate(importance: try importance(anchor, dropping: "0.bias"), anchor: anchor)
        }
        #expect(error?.description.contains("'0.bias'") == true, "error must name the parameter: \(String(describing: error))")
    }

    @Test(arguments: [-1.0, -1e-9, .nan, .infinity])
    func negativeOrNonFiniteLambdaIsRejected(_ lambda: Double) {
        let error = #expect(throws: ApplicationError.self) { try ElasticWeightConsolidation(lambda: lambda) }
        #expect(error?.problem.contains("lambda") == true, "\(String(describing: error))")
    }

    /// The penalty and its gradient against the closed form `(λ/2) Σ F δ²`, `λ F δ` in Double
    /// (float32 accumulation over 26 terms: relative 1e-5).
    @Test func penaltyMatchesClosedForm() throws {
        let model = DigitsExperiment.mlp(hidden: [4], classes: 2, inputs: 3, seed: 1)
        let anchor = model.stateDict()
        let fisher = try importance(anchor)
        let ewc = try ElasticWeightConsolidation(lambda: 3)
        try ewc.consolidate(importance: fisher, anchor: anchor)
        var generator = SplitMix64(seed: 11)
        var expected = 0.0
        for (name, parameter) in model.namedParameters {
            parameter.value = parameter.value.map { $0 + Float.random(in: -1...1, using: &generator) }
            parameter.gradient = Tensor(zeros: parameter.value.shape)
            for (theta, star) in zip(parameter.value.scalars, anchor[name]!.scalars) {
                expected += 1.5 * 0.5 * Double(theta - star) * Double(theta - star)
            }
        }
        let penalty = try ewc.addPenalty(to: model.namedParameters, batchSize: 8)
        #expect(abs(penalty - expected) <= 1e-5 * expected, "penalty \(penalty), closed form \(expected)")
        for (name, parameter) in model.namedParameters {
            for (i, (theta, star)) in zip(parameter.value.scalars, anchor[name]!.scalars).enumerated() {
                let want = 3 * 0.5 * (Double(theta) - Double(star))
                #expect(abs(Double(parameter.gradient.scalars[i]) - want) <= 1e-5 * max(1, abs(want)), "\(name)[\(i)]")
            }
        }
    }
}
