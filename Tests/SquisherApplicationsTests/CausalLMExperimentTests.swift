import Squisher
import Testing

@Suite("Causal-LM experiment")
struct CausalLMExperimentTests {
    /// The generated tasks follow their rules: on positions 2.., a token equals the rule's next symbol
    /// with probability `1 − noise + noise/12`. With 4,000 sequences x 10 positions the binomial
    /// standard deviation of that fraction is ~0.0015; tolerance 0.01 (6σ).
    @Test("generated token tasks: id ranges, rule frequency, same seed same sequences", arguments: [0, 1])
    func tokenTask(index: Int) throws {
        let task = TokenTask(index: index, length: 12, noise: 0.1)
        let data = try task.sequences(count: 4000, seed: 3)
        #expect(data.inputs.shape == [4000, 12] && data.targets == data.inputs)
        #expect(try task.sequences(count: 4000, seed: 3).inputs == data.inputs)
        #expect(try task.sequences(count: 4000, seed: 4).inputs != data.inputs)
        let ids = data.inputs.scalars.map(Int.init)
        let offset = index * TokenTask.symbols
        #expect(ids.allSatisfy { $0 >= offset && $0 < offset + TokenTask.symbols })
        var following = 0, total = 0
        for sample in 0..<4000 {
            for step in 2..<12 {
                let (a, b, c) = (ids[sample * 12 + step - 2] - offset, ids[sample * 12 + step - 1] - offset, ids[sample * 12 + step] - offset)
                let rule = index == 0 ? (b + 5) % 12 : (a + 1) % 12
                if c == rule { following += 1 }
                total += 1
            }
        }
        let fraction = Double(following) / Double(total)
        #expect(abs(fraction - (0.9 + 0.1 / 12)) < 0.01, "rule followed at \(fraction)")
        #expect(throws: TensorError.self) { try TokenTask(index: index, length: 2).sequences(count: 1, seed: 0) }
    }

    /// Quick settings, one seed: both tables are produced with every estimator's row, and every
    /// number is finite and in range (accuracies in [0, 1], NLL > 0). At the quick size the models
    /// are barely trained, so no ordering of the estimators is asserted here; the measured
    /// full-size numbers are in Guides/CausalLM.md.
    @Test("quick run: both tables, every number finite", .tags(.endToEnd))
    func quickRun() throws {
        let estimators: [AblationEstimator] = [.empiricalFisher, .jointFisher, .squisher, .baseline]
        let result = try CausalLMExperiment.run(size: .quick, seeds: [0], estimators: estimators)
        #expect(result.rowOrder.count == estimators.count)
        for row in result.rowOrder {
            let accuracy = try #require(result.mergingAccuracy[row]).mean, nll = try #require(result.mergingLoss[row]).mean
            #expect(accuracy >= 0 && accuracy <= 1 && nll.isFinite && nll > 0, "\(row): merged accuracy \(accuracy), NLL \(nll)")
            let fish = try #require(result.fishAccuracy[row])
            #expect(fish.count == result.setting.keepFractions.count && fish.allSatisfy { $0.mean >= 0 && $0.mean <= 1 }, "\(row): FISH \(fish)")
        }
        for spread in [result.individual, result.base, result.pretrained, result.dense] { #expect(spread.mean.isFinite) }
        let tables = result.tables()
        #expect(tables.map(\.identifier) == ["lm_merging", "lm_fish_mask"])
        #expect(tables.allSatisfy { $0.rows.count == estimators.count })
    }

    @Test("tensor data set rows and concatenation keep rows intact; bad rows are errors")
    func datasetRows() throws {
        let inputs = Tensor(uncheckedShape: [3, 2], scalars: [0, 1, 2, 3, 4, 5])
        let data = try TensorDataset(inputs: inputs, targets: Tensor(uncheckedShape: [3], scalars: [7, 8, 9]))
        let picked = try data.rows([2, 0])
        #expect(picked.inputs.scalars == [4, 5, 0, 1] && picked.targets.scalars == [9, 7])
        let joined = try data.concatenated(with: picked)
        #expect(joined.count == 5 && joined.inputs.scalars == [0, 1, 2, 3, 4, 5, 4, 5, 0, 1] && joined.targets.scalars == [7, 8, 9, 9, 7])
        #expect(throws: TensorError.self) { try data.rows([3]) }
        #expect(throws: TensorError.self) { try data.concatenated(with: TensorDataset(inputs: Tensor(zeros: [1, 3]), targets: Tensor(zeros: [1]))) }
    }
}
