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

    /// Quick settings, seeds 0 and 1: both tables are produced with every estimator's row, every
    /// number is finite and in range (accuracies in [0, 1], NLL > 0), and at every seed Fisher
    /// merging with the empirical Fisher and with the Squisher beats parameter averaging by at
    /// least 10 points of next-token accuracy. Measured at the quick size over seeds 0-2: Fisher
    /// 45.6 ± 3.3%, Squisher 52.3 ± 3.6%, averaging 23.3 ± 4.6% (gaps of 22 and 29 points; at the
    /// default size 16-17 points, Guides/CausalLM.md). The FISH-mask ordering is not robust at
    /// either size and is not asserted.
    @Test("quick run: both tables, every number finite, Fisher and Squisher merging beat averaging", .tags(.endToEnd))
    func quickRun() throws {
        let estimators: [AblationEstimator] = [.empiricalFisher, .jointFisher, .squisher, .baseline]
        let result = try CausalLMExperiment.run(size: .quick, seeds: [0, 1], estimators: estimators)
        let averaging = try #require(result.mergingAccuracy[CausalLMExperiment.label(.baseline)]).values
        for choice in [AblationEstimator.empiricalFisher, .squisher] {
            let merged = try #require(result.mergingAccuracy[choice.displayName]).values
            for (seed, (ours, baseline)) in zip(merged, averaging).enumerated() {
                #expect(ours >= baseline + 0.10, "seed \(seed): Fisher merging with \(choice.displayName) \(ours) vs averaging \(baseline)")
            }
        }
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
