import Foundation
import Squisher
import Testing

@Suite("Agreement metrics and the Importance value type")
struct AgreementAndImportanceTests {
    @Test("metrics match scipy on a fixed example")
    func scipyReference() throws {
        let a: [Float] = [3, 1, 4, 1, 5, 9, 2, 6], b: [Float] = [2, 7, 1, 8, 2, 8, 1, 8]
        let agreement = try Agreement(a, b, topKFraction: 0.25)
        // scipy.stats.pearsonr / spearmanr (ties averaged), numpy cosine and least-squares residual.
        #expect(abs(agreement.pearson - 0.2096553190730121) < 1e-12)
        #expect(abs(agreement.spearman - 0.19885368120992467) < 1e-12)
        #expect(abs(agreement.cosine - 0.7534245026674073) < 1e-12)
        #expect(abs(agreement.relativeErrorAfterScaling - 0.6575344240268869) < 1e-12)
        // top-2 of a: {9 (index 5), 6 (index 7)}; of b: indices {3, 5} (ties by index) -> 1 shared.
        #expect(agreement.topKOverlap == 0.5)
    }

    @Test("invariances: scale-free metrics are 1 or 0 for a multiple, Spearman for a monotone map")
    func invariances() throws {
        var generator = SplitMix64(seed: 1)
        let a = (0..<500).map { _ in generator.nextUniformFloat() + 0.01 }
        let scaled = try Agreement(a, a.map { 7 * $0 })
        #expect(abs(scaled.pearson - 1) < 1e-9 && abs(scaled.cosine - 1) < 1e-9)
        #expect(scaled.relativeErrorAfterScaling < 1e-6 && scaled.topKOverlap == 1)
        let monotone = try Agreement(a, a.map { $0 * $0 * $0 })
        #expect(monotone.spearman == 1)
        #expect(throws: TensorError.self) { try Agreement([1, 2], [1]) }
        #expect(throws: TensorError.self) { try Agreement([1, 2], [1, 2], topKFraction: 0) }
    }

    @Test("importance rejects negative and NaN values, naming the parameter")
    func validation() throws {
        let bad = try NamedTensors([("fc.weight", Tensor(shape: [2], scalars: [1, -1]))])
        #expect {
            try Importance(values: bad, estimator: "test")
        } throws: { error in "\(error)".contains("fc.weight") }
        let nan = try NamedTensors([("fc.bias", Tensor(shape: [1], scalars: [.nan]))])
        #expect(throws: TensorError.self) { try Importance(values: nan, estimator: "test") }
    }

    @Test("arithmetic and safetensors round trip")
    func arithmeticAndFiles() throws {
        let values = try NamedTensors([("a", Tensor(shape: [2], scalars: [1, 3])), ("b", Tensor(shape: [1, 2], scalars: [0, 4]))])
        let importance = try Importance(values: values, estimator: "demo", conventions: ["scaling": "raw"])
        #expect(try importance.scaled(by: 2)["a"]!.scalars == [2, 6])
        #expect(importance.floored(at: 0.5)["b"]!.scalars == [0.5, 4])
        #expect(importance.normalized(.sum)["a"]!.scalars == [0.125, 0.375])
        #expect(importance.normalized(.maximum)["b"]!.scalars == [0, 1])
        #expect(try importance.adding(importance)["b"]!.scalars == [0, 8])
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("importance-\(UUID()).safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        try importance.save(to: url)
        let loaded = try Importance.load(from: url)
        #expect(loaded.values == importance.values)
        #expect(loaded.estimator == "demo" && loaded.conventions["scaling"] == "raw")
    }

    @Test("a layer with parameters and no per-sample rule is an error naming it")
    func unsupportedLayer() throws {
        final class Scale: Layer {
            let typeName = "Scale"
            let factor = Parameter(Tensor(repeating: 2, shape: [1]))
            var localParameters: [(name: String, parameter: Parameter)] { [("factor", factor)] }
            func forward(_ input: Tensor, mode: LayerMode) throws(TensorError) -> Tensor { factor.value.scalars[0] * input }
            func backward(_ g: Tensor, accumulateParameterGradients: Bool) throws(TensorError) -> Tensor { factor.value.scalars[0] * g }
        }
        var generator = SplitMix64(seed: 0)
        let model = Sequential([Linear(inputFeatures: 3, outputFeatures: 2, generator: &generator), Scale()])
        let data = try Dataset(inputs: Tensor.normal(shape: [4, 3], using: &generator), labels: [0, 1, 0, 1], classCount: 2)
        #expect {
            try EmpiricalFisher().estimate(model: model, data: data)
        } throws: { error in "\(error)".contains("'1' (Scale)") }
    }
}
