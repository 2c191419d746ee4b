import Foundation
import Squisher
import Testing

/// The merging defaults on importances at the scale real checkpoints have, and UBGM with a base
/// whose layout differs from the task models'.
@Suite("Merging defaults: scale-free floor, UBGM with a real pretrained base")
struct MergingDefaultsTests {
    /// Two models and importances spread over six orders of magnitude around 5e-11, the median raw
    /// `exp_avg_sq` of a converged BERT: almost every entry is below an absolute floor of 1e-6.
    static func tinyImportances(seed: UInt64) throws -> (models: [NamedTensors], importances: [Importance]) {
        var generator = SplitMix64(seed: seed)
        var models: [NamedTensors] = [], importances: [Importance] = []
        for _ in 0..<2 {
            let theta = Tensor.uniform(shape: [64, 8], low: -1, high: 1, using: &generator)
            let exponents = Tensor.uniform(shape: [64, 8], low: -13, high: -7, using: &generator)
            models.append(try NamedTensors([("w", theta)]))
            importances.append(try Importance(values: NamedTensors([("w", exponents.map { Float(pow(10, Double($0))) })]), estimator: "v"))
        }
        return (models, importances)
    }

    /// The default floor is relative to each importance, so raw `v` and `N·v` (N = 4096) merge to
    /// the same parameters. Tolerance: the floors are rounded to float32 separately (1 ulp each) and
    /// the merge rounds once, so 4 ulps of the largest |θ|.
    @Test func defaultFloorIsScaleFree() throws {
        let (models, importances) = try Self.tinyImportances(seed: 1)
        let scaled = try importances.map { try $0.scaled(by: 4096) }
        let raw = try FisherMerging().merge(models: models, importances: importances)
        let nv = try FisherMerging().merge(models: models, importances: scaled)
        let (a, b) = (raw.parameters["w"]!.scalars, nv.parameters["w"]!.scalars)
        let worst = zip(a, b).map { abs($0 - $1) }.max()!
        #expect(worst <= 4 * Float(1).ulp, "raw v and N·v merges differ by \(worst)")
        #expect(raw.flooredEntries == [0, 0], "the relative floor (1e-6 × mean) should replace no entry here, replaced \(raw.flooredEntries)")
        // The merge is not the plain average: the importances move it.
        let average = try ParameterAveraging.merge(models: models)["w"]!.scalars
        #expect(zip(a, average).map { abs($0 - $1) }.max()! > 0.1)
    }

    /// An absolute floor of 1e-6 replaces every entry of these importances and reduces Fisher
    /// merging to the plain average (bit for bit up to the division's rounding, 1 ulp), and the
    /// result says so.
    @Test func absoluteFloorReportsWhatItReplaced() throws {
        let (models, importances) = try Self.tinyImportances(seed: 2)
        let result = try FisherMerging(epsilon: 1e-6).merge(models: models, importances: importances)
        #expect(result.flooredEntries == [512, 512] && result.importanceEntries == 512)
        let average = try ParameterAveraging.merge(models: models)["w"]!.scalars
        for (x, y) in zip(result.parameters["w"]!.scalars, average) { #expect(abs(x - y) <= y.ulp) }
    }

    /// Weights whose sum overflows are refused instead of producing zeros.
    @Test func overflowingWeightsAreRefused() throws {
        let (models, _) = try Self.tinyImportances(seed: 3)
        #expect(throws: ApplicationError.self) { try ParameterAveraging.merge(models: models, weights: [1e308, 1e308]) }
    }

    /// A pretrained base without the classifier head and with an MLM head it does not pass on:
    /// the head is merged as `Σ F_t θ_t / Σ F_t` (computed here by hand), the MLM head is dropped,
    /// and both are reported; shared tensors follow the UBGM formula.
    @Test func ubgmWithPretrainedBase() throws {
        let named = { (pairs: [(String, [Float])]) throws in try NamedTensors(pairs.map { ($0.0, try Tensor(shape: [$0.1.count], scalars: $0.1)) }) }
        let base = try named([("encoder", [0, 1]), ("mlm_head", [7])])
        let t1 = try named([("encoder", [2, 1]), ("head", [1, 0])]), t2 = try named([("encoder", [0, 5]), ("head", [3, 4])])
        let f1 = try Importance(values: named([("encoder", [1, 2]), ("head", [1, 0])]), estimator: "f")
        let f2 = try Importance(values: named([("encoder", [3, 2]), ("head", [3, 0])]), estimator: "f")
        let result = try UBGMMerging(priorPrecision: 0).mergeReporting(base: base, baseImportance: nil, tasks: [t1, t2], taskImportances: [f1, f2])
        #expect(result.parametersWithoutBase == ["head"])
        #expect(result.baseOnlyParameters == ["mlm_head"])
        #expect(result.parameters["mlm_head"] == nil)
        // head[0] = (1·1 + 3·3) / 4 = 2.5; head[1]: both importances 0 -> the plain average 2.
        #expect(result.parameters["head"]!.scalars == [2.5, 2])
        #expect(result.averagedEntries == 1)
        // encoder[0] = 0 + (1·2 + 3·0) / 4 = 0.5; encoder[1] = 1 + (2·0 + 2·4) / 4 = 3.
        #expect(result.parameters["encoder"]!.scalars == [0.5, 3])
    }
}
