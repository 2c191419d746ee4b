import Foundation
import Squisher
import Testing

/// Must show 2: the Monte-Carlo true Fisher is unbiased at S = 1 and converges to the exact one
/// as S grows. Everything is seeded, so these statistical tests are deterministic; the bounds are
/// chosen so that a correct estimator fails them with probability < 1e-4 under a normal
/// approximation, while a biased one (e.g. a wrong label distribution) fails by far.
@Suite("Monte-Carlo true Fisher")
struct MonteCarloTests {
    @Test("unbiased at S = 1: the mean over 300 seeds is within 4 standard errors of the exact value")
    func unbiased() throws {
        let model = try OracleFisherTests.mlpModel()
        let (data, _) = try OracleFisherTests.batch("mlp")
        let exact = try TrueFisherExact().estimate(model: model, data: data)
        let seeds = 300
        // Test the per-tensor totals (sum of the diagonal): scalar statistics with a clean z-test.
        var totals: [String: [Double]] = [:]
        for seed in 0..<seeds {
            let mc = try TrueFisherMonteCarlo(samples: 1, seed: UInt64(seed)).estimate(model: model, data: data)
            for (name, tensor) in mc.values { totals[name, default: []].append(tensor.sum()) }
        }
        for (name, values) in totals {
            let mean = values.reduce(0, +) / Double(seeds)
            let variance = values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(seeds - 1)
            let standardError = (variance / Double(seeds)).squareRoot()
            let target = exact[name]!.sum()
            #expect(abs(mean - target) < 4 * standardError, "\(name): MC mean \(mean), exact \(target), standard error \(standardError)")
        }
    }

    @Test("error shrinks like 1/sqrt(S)")
    func converges() throws {
        let model = try OracleFisherTests.mlpModel()
        let (data, _) = try OracleFisherTests.batch("mlp")
        let exact = try TrueFisherExact().estimate(model: model, data: data).flattened.map(Double.init)
        func error(_ samples: Int) throws -> Double {
            let mc = try TrueFisherMonteCarlo(samples: samples, seed: 11).estimate(model: model, data: data).flattened
            let diff = zip(mc, exact).reduce(0.0) { $0 + (Double($1.0) - $1.1) * (Double($1.0) - $1.1) }.squareRoot()
            return diff / exact.reduce(0.0) { $0 + $1 * $1 }.squareRoot()
        }
        let e1 = try error(1), e16 = try error(16), e256 = try error(256)
        // Expected ratios 1/4 and 1/16; allow a factor 1.6 of sampling slack.
        #expect(e16 < 0.4 * e1, "S=1: \(e1), S=16: \(e16)")
        #expect(e256 < 0.1 * e1, "S=1: \(e1), S=256: \(e256)")
        #expect(e256 < 0.05, "S=256 relative error \(e256)")
    }

    @Test("same seed, same bits; batch size does not change the labels drawn")
    func reproducible() throws {
        let model = try OracleFisherTests.mlpModel()
        let (data, _) = try OracleFisherTests.batch("mlp")
        let a = try TrueFisherMonteCarlo(samples: 2, seed: 9, batchSize: 128).estimate(model: model, data: data)
        let b = try TrueFisherMonteCarlo(samples: 2, seed: 9, batchSize: 128).estimate(model: model, data: data)
        let c = try TrueFisherMonteCarlo(samples: 2, seed: 9, batchSize: 32).estimate(model: model, data: data)
        #expect(a.values == b.values)
        let deviation = Deviation(c.flattened, a.flattened.map(Double.init))
        #expect(deviation.normwise < 1e-6, "\(deviation)")  // only summation order differs
    }
}
