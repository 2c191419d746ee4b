import Foundation
import SquisherLayers
import SquisherOptimizers
import SquisherTensor
import Testing

/// Every optimizer against its recurrence written out independently in Double (PyTorch's
/// documented algorithm), over a few steps with pseudo-random gradients.
///
/// Tolerance: relative 1e-5 with an absolute floor of 1e-6. Our float32 update rounds each of its
/// ~10 operations per element and step (relative 6e-8 each); the operands are of magnitude <= ~4
/// (parameters ~N(0, 1)), so each rounding is at most ~2.4e-7 in absolute terms and an element
/// that passes near zero keeps that absolute error (measured: max absolute deviation < 1e-7, max
/// relative 1.1e-5 only on elements below 1e-2, where the floor applies). A wrong coefficient (e.g.
/// dampening applied on the first step, lr_decay off by one step, β cast to float before `1 − β`)
/// changes values at the 1e-5 to 1e-3 level and fails.
@Suite("Optimizers follow their recurrences (Double reference)")
struct AnalyticRecurrenceTests {
    static let stepCount = 6
    static let size = 37  // two full 16-lane chunks and a 5-element tail

    /// One configuration: a name and a factory for the optimizer and its Double reference.
    struct Case: Sendable, CustomTestStringConvertible {
        var name: String
        var make: @Sendable ([(name: String, parameter: Parameter)]) throws -> any Optimizer
        var reference: @Sendable () -> Reference
        var testDescription: String { name }
    }

    /// A Double reference: `step(θ, g)` updates θ in place; `buffers` mirrors the state buffers.
    final class Reference {
        var buffers: [String: [Double]] = [:]
        let update: (inout [Double], [Double], Int, inout [String: [Double]]) -> Void
        init(_ update: @escaping (inout [Double], [Double], Int, inout [String: [Double]]) -> Void) { self.update = update }
    }

    static func sgd(lr: Double, momentum: Double = 0, dampening: Double = 0, weightDecay: Double = 0,
                    nesterov: Bool = false, maximize: Bool = false) -> Case {
        Case(name: "SGD(lr \(lr), momentum \(momentum), dampening \(dampening), wd \(weightDecay), nesterov \(nesterov), maximize \(maximize))",
             make: { try SGD(parameters: $0, learningRate: Float(lr), momentum: Float(momentum), dampening: Float(dampening),
                             weightDecay: Float(weightDecay), nesterov: nesterov, maximize: maximize) },
             reference: {
                 Reference { theta, gradient, t, buffers in
                     var b = buffers["momentum_buffer"] ?? []
                     for i in theta.indices {
                         var d = maximize ? -gradient[i] : gradient[i]
                         d += weightDecay * theta[i]
                         if momentum != 0 {
                             if t == 1 { b.append(d) } else { b[i] = momentum * b[i] + (1 - dampening) * d }
                             d = nesterov ? d + momentum * b[i] : b[i]
                         }
                         theta[i] -= lr * d
                     }
                     if momentum != 0 { buffers["momentum_buffer"] = b }
                 }
             })
    }

    static func rmsprop(lr: Double, alpha: Double = 0.99, eps: Double = 1e-8, weightDecay: Double = 0,
                        momentum: Double = 0, centered: Bool = false) -> Case {
        Case(name: "RMSprop(lr \(lr), alpha \(alpha), wd \(weightDecay), momentum \(momentum), centered \(centered))",
             make: { try RMSprop(parameters: $0, learningRate: Float(lr), alpha: Float(alpha), eps: Float(eps),
                                 weightDecay: Float(weightDecay), momentum: Float(momentum), centered: centered) },
             reference: {
                 Reference { theta, gradient, _, buffers in
                     var s = buffers["square_avg"] ?? Array(repeating: 0, count: theta.count)
                     var a = buffers["grad_avg"] ?? Array(repeating: 0, count: theta.count)
                     var b = buffers["momentum_buffer"] ?? Array(repeating: 0, count: theta.count)
                     for i in theta.indices {
                         let d = gradient[i] + weightDecay * theta[i]
                         s[i] = alpha * s[i] + (1 - alpha) * d * d
                         var variance = s[i]
                         if centered {
                             a[i] = alpha * a[i] + (1 - alpha) * d
                             variance -= a[i] * a[i]
                         }
                         let denominator = variance.squareRoot() + eps
                         if momentum > 0 {
                             b[i] = momentum * b[i] + d / denominator
                             theta[i] -= lr * b[i]
                         } else {
                             theta[i] -= lr * d / denominator
                         }
                     }
                     buffers["square_avg"] = s
                     if centered { buffers["grad_avg"] = a }
                     if momentum > 0 { buffers["momentum_buffer"] = b }
                 }
             })
    }

    static func adagrad(lr: Double, lrDecay: Double = 0, weightDecay: Double = 0, initial: Double = 0, eps: Double = 1e-10) -> Case {
        Case(name: "Adagrad(lr \(lr), lr_decay \(lrDecay), wd \(weightDecay), initial \(initial))",
             make: { try Adagrad(parameters: $0, learningRate: Float(lr), learningRateDecay: Float(lrDecay),
                                 weightDecay: Float(weightDecay), initialAccumulatorValue: Float(initial), eps: Float(eps)) },
             reference: {
                 Reference { theta, gradient, t, buffers in
                     var s = buffers["sum"] ?? Array(repeating: initial, count: theta.count)
                     let clr = lr / (1 + Double(t - 1) * lrDecay)
                     for i in theta.indices {
                         let d = gradient[i] + weightDecay * theta[i]
                         s[i] += d * d
                         theta[i] -= clr * d / (s[i].squareRoot() + eps)
                     }
                     buffers["sum"] = s
                 }
             })
    }

    static func adam(lr: Double, weightDecay: Double = 0, decoupled: Bool = false, amsgrad: Bool = false) -> Case {
        let (beta1, beta2, eps) = (0.9, 0.999, 1e-8)
        return Case(name: "Adam(lr \(lr), wd \(weightDecay), decoupled \(decoupled), amsgrad \(amsgrad))",
             make: { try Adam(parameters: $0, learningRate: Float(lr), weightDecay: Float(weightDecay),
                              decoupledWeightDecay: decoupled, amsgrad: amsgrad) },
             reference: {
                 Reference { theta, gradient, t, buffers in
                     let zeros = Array(repeating: 0.0, count: theta.count)
                     var m = buffers["exp_avg"] ?? zeros, v = buffers["exp_avg_sq"] ?? zeros
                     var vMax = buffers["max_exp_avg_sq"] ?? zeros
                     for i in theta.indices {
                         var d = gradient[i]
                         if decoupled { theta[i] *= 1 - lr * weightDecay } else { d += weightDecay * theta[i] }
                         m[i] = beta1 * m[i] + (1 - beta1) * d
                         v[i] = beta2 * v[i] + (1 - beta2) * d * d
                         vMax[i] = max(vMax[i], v[i])
                         let second = amsgrad ? vMax[i] : v[i]
                         let mHat = m[i] / (1 - pow(beta1, Double(t)))
                         let vHat = second / (1 - pow(beta2, Double(t)))
                         theta[i] -= lr * mHat / (vHat.squareRoot() + eps)
                     }
                     buffers["exp_avg"] = m
                     buffers["exp_avg_sq"] = v
                     if amsgrad { buffers["max_exp_avg_sq"] = vMax }
                 }
             })
    }

    static let cases: [Case] = [
        sgd(lr: 0.1),
        sgd(lr: 0.1, momentum: 0.9),
        sgd(lr: 0.05, momentum: 0.9, dampening: 0.3),
        sgd(lr: 0.1, momentum: 0.9, nesterov: true),
        sgd(lr: 0.1, momentum: 0.5, weightDecay: 0.01, nesterov: true),
        sgd(lr: 0.1, weightDecay: 0.1, maximize: true),
        rmsprop(lr: 0.01),
        rmsprop(lr: 0.01, alpha: 0.9, centered: true),
        rmsprop(lr: 0.01, momentum: 0.9),
        rmsprop(lr: 0.01, alpha: 0.95, weightDecay: 0.05, momentum: 0.5, centered: true),
        adagrad(lr: 0.1),
        adagrad(lr: 0.1, lrDecay: 0.5),
        adagrad(lr: 0.1, lrDecay: 0.1, weightDecay: 0.01, initial: 0.1),
        adam(lr: 0.01),
        adam(lr: 0.01, weightDecay: 0.1),
        adam(lr: 0.01, weightDecay: 0.1, decoupled: true),
        adam(lr: 0.01, amsgrad: true),
    ]

    @Test(arguments: cases)
    func followsRecurrence(_ testCase: Case) throws {
        var generator = SplitMix64(seed: 20251123)
        let initial = Tensor.normal(shape: [Self.size], using: &generator)
        let parameters = makeParameters([("w", initial)])
        let optimizer = try testCase.make(parameters)
        let reference = testCase.reference()
        var theta = initial.doubles
        for t in 1...Self.stepCount {
            // Gradients shrink and grow across steps so that momentum and the averages matter.
            let gradient = Tensor.normal(shape: [Self.size], standardDeviation: t % 2 == 0 ? 0.5 : 2, using: &generator)
            parameters[0].parameter.gradient = gradient
            try optimizer.step(batchSize: 1)
            reference.update(&theta, gradient.doubles, t, &reference.buffers)
            let (ok, deviation) = compare(parameters[0].parameter.value.doubles, theta, relative: 1e-5, absoluteFloor: 1e-6)
            #expect(ok, "\(testCase.name) parameter after step \(t): \(deviation)")
        }
        let state = optimizer.state
        #expect(state.steps["w"] == Self.stepCount)
        #expect(Set(state.buffers.keys) == Set(reference.buffers.keys), "\(testCase.name) publishes \(state.buffers.keys.sorted())")
        for (bufferName, expected) in reference.buffers {
            let actual = try #require(state.buffer(bufferName, for: "w"), "\(testCase.name) lacks \(bufferName)")
            let (ok, deviation) = compare(actual.doubles, expected, relative: 1e-5, absoluteFloor: 1e-6)
            #expect(ok, "\(testCase.name) \(bufferName): \(deviation)")
        }
    }

    /// SGD momentum by hand: θ₀ = 1, g ≡ 1, lr = 0.1, μ = 0.9. Heavy ball: b = 1, 1.9, 2.71 so
    /// θ = 0.9, 0.71, 0.439. Nesterov: b = 1, 1.9, 2.71 and d = g + μb = 1.9, 2.71, 3.439 so
    /// θ = 0.81, 0.539, 0.1951. Float32 rounding of these short sums is below 1e-6.
    @Test(arguments: [(false, [0.9, 0.71, 0.439]), (true, [0.81, 0.539, 0.1951])])
    func sgdMomentumByHand(nesterov: Bool, expected: [Double]) throws {
        let parameters = makeParameters([("x", Tensor(scalar: 1))])
        let sgd = try SGD(parameters: parameters, learningRate: 0.1, momentum: 0.9, nesterov: nesterov)
        for (t, value) in expected.enumerated() {
            parameters[0].parameter.gradient = Tensor(scalar: 1)
            try sgd.step(batchSize: 1)
            #expect(abs(Double(parameters[0].parameter.value.scalars[0]) - value) < 1e-6, "step \(t + 1)")
        }
        #expect(abs(Double(try #require(sgd.state.buffer("momentum_buffer", for: "x")).scalars[0]) - 2.71) < 1e-6)
    }

    /// Adagrad's lr_decay by hand: g ≡ 1, lr = 1, lr_decay = 1, eps ≈ 0: sum = t, clr = 1/t, so the
    /// step t moves θ by −1/(t·sqrt t): θ₃ = −(1 + 1/(2√2) + 1/(3√3)). Tolerance 1e-6 (float32).
    @Test func adagradLearningRateDecayByHand() throws {
        let parameters = makeParameters([("x", Tensor(scalar: 0))])
        let adagrad = try Adagrad(parameters: parameters, learningRate: 1, learningRateDecay: 1, eps: 0)
        for _ in 0..<3 {
            parameters[0].parameter.gradient = Tensor(scalar: 1)
            try adagrad.step(batchSize: 1)
        }
        let expected = -(1 + 1 / (2 * 2.0.squareRoot()) + 1 / (3 * 3.0.squareRoot()))
        #expect(abs(Double(parameters[0].parameter.value.scalars[0]) - expected) < 1e-6)
        #expect(adagrad.state.buffer("sum", for: "x")?.scalars == [3])
    }

    /// Centered RMSprop with momentum by hand: g ≡ 1, α = 0.5, lr = 1, μ = 0.5, eps ≈ 0.
    /// Step 1: s = 0.5, a = 0.5, var = 0.25, avg = 0.5, b = 2, θ = −2.
    /// Step 2: s = 0.75, a = 0.75, var = 0.1875, avg = 0.4330127, b = 1 + 2.3094011 = 3.3094011,
    /// θ = −5.3094011. Tolerance 1e-5 (float32 sqrt and division of numbers near 1).
    @Test func centeredRMSpropWithMomentumByHand() throws {
        let parameters = makeParameters([("x", Tensor(scalar: 0))])
        let rmsprop = try RMSprop(parameters: parameters, learningRate: 1, alpha: 0.5, eps: 0, momentum: 0.5, centered: true)
        for _ in 0..<2 {
            parameters[0].parameter.gradient = Tensor(scalar: 1)
            try rmsprop.step(batchSize: 1)
        }
        let expectedTheta = -(2 + 0.5 * 2 + 1 / 0.1875.squareRoot())
        #expect(abs(Double(parameters[0].parameter.value.scalars[0]) - expectedTheta) < 1e-5)
        let state = rmsprop.state
        #expect(state.buffer("square_avg", for: "x")?.scalars == [0.75])
        #expect(state.buffer("grad_avg", for: "x")?.scalars == [0.75])
    }
}
