import Foundation
import SquisherLayers
import SquisherOptimizers
import SquisherTensor
import Testing

/// Global-norm gradient clipping (`torch.nn.utils.clip_grad_norm_`) against a Double reference.
@Suite("Gradient clipping by global norm")
struct GradientClippingTests {
    func gradients(seed: UInt64, scale: Float = 1) -> NamedTensors {
        var generator = SplitMix64(seed: seed)
        var result = NamedTensors()
        result["a"] = Tensor.normal(shape: [5, 3], standardDeviation: scale, using: &generator)
        result["b"] = Tensor.normal(shape: [7], standardDeviation: scale, using: &generator)
        return result
    }

    /// The reference global norm in Double: all elements as one vector.
    func referenceNorm(_ gradients: NamedTensors, _ q: Double) -> Double {
        let all = gradients.flatMap { $0.tensor.doubles.map(abs) }
        if q == .infinity { return all.max() ?? 0 }
        return pow(all.reduce(0) { $0 + pow($1, q) }, 1 / q)
    }

    /// The norm is accumulated in Double, so it matches the reference to ~1e-12 relative; the
    /// clipped values are float32 products g·c with one rounding (relative 6e-8), checked at 1e-6.
    @Test(arguments: [2.0, 1.0, 3.0, Double.infinity])
    func clipsToMaxNormAndReturnsTheNormBefore(_ q: Double) throws {
        let original = gradients(seed: 21)
        let expectedNorm = referenceNorm(original, q)
        let maxNorm: Float = 0.5
        var clipped = original
        let norm = try clipGradientNorm(&clipped, maxNorm: maxNorm, normType: Float(q))
        #expect(abs(norm - expectedNorm) <= 1e-12 * expectedNorm, "norm \(norm) vs \(expectedNorm)")
        #expect(expectedNorm > Double(maxNorm))  // the case clips
        let coefficient = Double(maxNorm) / (expectedNorm + 1e-6)
        for (name, tensor) in original {
            let expected = tensor.doubles.map { $0 * coefficient }
            let (ok, deviation) = compare(try clipped.tensor(named: name).doubles, expected, relative: 1e-6, absoluteFloor: 1e-12)
            #expect(ok, "\(name): \(deviation)")
        }
        // The clipped gradients have norm maxNorm·total/(total + 1e-6) ≈ maxNorm.
        #expect(abs(referenceNorm(clipped, q) - Double(maxNorm)) < 1e-6)
        #expect(clipped.names == original.names)
    }

    @Test func leavesSmallGradientsUnchanged() throws {
        let original = gradients(seed: 22, scale: 0.01)
        var clipped = original
        let norm = try clipGradientNorm(&clipped, maxNorm: 1)
        #expect(norm < 1)
        #expect(clipped == original)
    }

    @Test func invalidArgumentsAreNamed() throws {
        var g = gradients(seed: 23)
        #expect(invalidArgumentName { try clipGradientNorm(&g, maxNorm: -1) } == "maxNorm")
        #expect(invalidArgumentName { try clipGradientNorm(&g, maxNorm: .nan) } == "maxNorm")
        #expect(invalidArgumentName { try clipGradientNorm(&g, maxNorm: 1, normType: 0) } == "normType")
        let sgd = try SGD(parameters: [])
        #expect(invalidArgumentName { _ = try sgd.clipGradientNorm(maxNorm: -2) } == "maxNorm")
    }

    /// As a pre-step hook: with SGD (lr 1, no momentum) the parameter moves by exactly the clipped
    /// gradient; hooks registered later see the clipped gradients; removing the handle stops it.
    @Test func preStepHookClipsTheUpdate() throws {
        let original = gradients(seed: 24)
        let parameters = makeParameters([("a", Tensor(zeros: [5, 3])), ("b", Tensor(zeros: [7]))])
        let sgd = try SGD(parameters: parameters, learningRate: 1)
        var reported: [(Int, Double)] = []
        let handle = try sgd.clipGradientNorm(maxNorm: 1) { reported.append(($0, $1)) }
        var seen: NamedTensors?
        sgd.registerStepPreHook { seen = $0.gradients }
        try setGradients(parameters, original)
        try sgd.step(batchSize: 1)
        var expected = original
        let norm = try clipGradientNorm(&expected, maxNorm: 1)
        #expect(reported.count == 1 && reported[0].0 == 1 && reported[0].1 == norm)
        #expect(seen == expected)
        for (name, parameter) in parameters {
            #expect(parameter.value == expected[name]!.map { -$0 }, "\(name)")  // 0 − 1·g
        }
        handle.remove()
        try setGradients(parameters, original)
        try sgd.step(batchSize: 1)
        #expect(seen == original)
        #expect(reported.count == 1)
    }

    /// The function over parameters clips their accumulated gradients, skipping frozen ones
    /// (which neither count towards the norm nor change).
    @Test func clipsParameterGradientsSkippingFrozenOnes() throws {
        let original = gradients(seed: 25)
        let parameters = makeParameters([("a", Tensor(zeros: [5, 3])), ("b", Tensor(zeros: [7]))])
        try setGradients(parameters, original)
        parameters[1].parameter.requiresGradient = false
        let norm = try clipGradientNorm(of: parameters, maxNorm: 0.1)
        var onlyA = NamedTensors()
        onlyA["a"] = original["a"]
        #expect(abs(norm - referenceNorm(onlyA, 2)) <= 1e-12 * norm)
        #expect(parameters[1].parameter.gradient == original["b"])
        #expect(abs(referenceNorm(try NamedTensors([("a", parameters[0].parameter.gradient)]), 2) - 0.1) < 1e-6)
    }

    /// A NaN gradient gives a NaN norm, leaves the gradients unchanged, and the step then throws
    /// naming the parameter (no silent NaN).
    @Test func nonFiniteGradientsAreLeftForTheStepToReport() throws {
        var g = gradients(seed: 26)
        g["b"] = Tensor(repeating: .nan, shape: [7])
        let before = g
        let norm = try clipGradientNorm(&g, maxNorm: 1)
        #expect(norm.isNaN)
        #expect(g["a"] == before["a"])
        let parameters = makeParameters([("a", Tensor(zeros: [5, 3])), ("b", Tensor(zeros: [7]))])
        let sgd = try SGD(parameters: parameters)
        try sgd.clipGradientNorm(maxNorm: 1)
        try setGradients(parameters, before)
        #expect(invalidArgumentName { try sgd.step(batchSize: 1) }?.contains("'b'") == true)
    }
}
