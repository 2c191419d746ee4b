import Foundation
import SquisherLayers
import SquisherOptimizers
import SquisherTensor
import Testing

/// AdamW on a parameter large enough to be split over the threads (300,001 elements: chunks of
/// 64 Ki and more, a ragged tail), against a scalar replica of PyTorch's single-tensor AdamW
/// written here element by element in PyTorch's order (`param.mul_(1 - lr·wd)`, `lerp_`, `mul_`,
/// `addcmul_`, `addcdiv_`; scalars in double precision from the decimal hyperparameters, as
/// ``AdamOracleTests`` verifies against PyTorch itself). Every element is independent, so the
/// split must not change a single bit: the tolerance is 0 ulp for the moments and the parameter.
@Suite("Adam split over the threads")
struct AdamLargeParameterTests {
    static let count = 300_001

    /// One replica step for every element; `t` is the 1-based step.
    static func replicaStep(theta: inout [Float], m: inout [Float], v: inout [Float], g: [Float], t: Int) {
        let lr = 1e-3, beta1 = 0.9, beta2 = 0.999, weightDecay = 0.01
        let decay = Float(1 - lr * weightDecay)
        let oneMinusBeta1 = Float(1 - beta1), oneMinusBeta2 = Float(1 - beta2), beta2Float = Float(beta2)
        let negativeStep = Float(-(lr / (1 - pow(beta1, Double(t)))))
        let bc2Sqrt = Float((1 - pow(beta2, Double(t))).squareRoot())
        for i in theta.indices {
            theta[i] *= decay
            m[i] = m[i].addingProduct(oneMinusBeta1, g[i] - m[i])
            v[i] = (v[i] * beta2Float).addingProduct(oneMinusBeta2 * g[i], g[i])
            let denominator = v[i].squareRoot() / bc2Sqrt + Float(1e-8)
            theta[i] = (negativeStep * m[i]) / denominator + theta[i]
        }
    }

    @Test func threadedAdamWMatchesTheScalarReplicaBitForBit() throws {
        var generator = SplitMix64(seed: 11)
        let initial = Tensor.normal(shape: [Self.count], using: &generator)
        let parameter = Parameter(initial)
        let adamw = try Adam.adamW(parameters: [("w", parameter)], learningRate: 1e-3, weightDecay: 0.01)
        var theta = initial.scalars, m = [Float](repeating: 0, count: Self.count), v = m
        for t in 1...3 {
            let g = Tensor.normal(shape: [Self.count], using: &generator)
            parameter.gradient = g
            try adamw.step(batchSize: 1)
            Self.replicaStep(theta: &theta, m: &m, v: &v, g: g.scalars, t: t)
        }
        let state = adamw.state
        let expAvg = try #require(state.buffer("exp_avg", for: "w")), expAvgSq = try #require(state.buffer("exp_avg_sq", for: "w"))
        let firstMismatch = (0..<Self.count).first {
            parameter.value.scalars[$0].bitPattern != theta[$0].bitPattern
                || expAvg.scalars[$0].bitPattern != m[$0].bitPattern || expAvgSq.scalars[$0].bitPattern != v[$0].bitPattern
        }
        #expect(firstMismatch == nil, "element \(firstMismatch ?? -1) differs from the scalar replica")
    }

    /// A NaN far into the tensor (in the last thread's chunk) must stop the step before any element
    /// changes, and be reported by parameter name.
    @Test func nonFiniteGradientInTheLastChunkLeavesEverythingUnchanged() throws {
        var generator = SplitMix64(seed: 12)
        let initial = Tensor.normal(shape: [Self.count], using: &generator)
        let parameter = Parameter(initial)
        let adamw = try Adam.adamW(parameters: [("w", parameter)])
        var gradient = Tensor.normal(shape: [Self.count], using: &generator)
        gradient.withUnsafeMutableBufferPointer { $0[Self.count - 3] = .nan }
        parameter.gradient = gradient
        #expect(throws: TensorError.self) { try adamw.step(batchSize: 1) }
        #expect(parameter.value.scalars == initial.scalars)
        #expect(adamw.stepCount == 0)
        do {
            try adamw.step(batchSize: 1)
        } catch {
            #expect("\(error)".contains("'w'"), "the error names the parameter: \(error)")
        }
    }
}
