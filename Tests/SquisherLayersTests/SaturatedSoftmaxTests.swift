import Foundation
import SquisherLayers
import SquisherTensor
import Testing

/// Softmax-based layers evaluate `exp` 16 lanes at a time. In a saturated softmax (a tied GPT-2
/// head gives its input token a logit hundreds above the rest) the true probabilities of the other
/// classes underflow float32 to 0; they must come out as exactly 0, never as tiny (let alone
/// subnormal) numbers, which slow down every backward product they enter.
@Suite("Saturated softmax: underflowing probabilities are exactly 0")
struct SaturatedSoftmaxTests {
    @Test("cross-entropy gradient of logits [500, 0, -300, 420, 499] (target 1)")
    func crossEntropy() throws {
        let logits = try Tensor(shape: [1, 5], scalars: [500, 0, -300, 420, 499])
        let (loss, gradient) = try CrossEntropyLikelihood().lossAndGradient(output: logits, targets: Tensor(shape: [1], scalars: [1]))
        // Double reference: p = softmax; classes 1, 2 and 3 have p = e^-500, e^-800, e^-80 (0, 0, 1.8e-35 in float32).
        let z: [Double] = [500, 0, -300, 420, 499], m = 500.0
        let total = z.map { Foundation.exp($0 - m) }.reduce(0, +)
        let p = z.map { Foundation.exp($0 - m) / total }
        #expect(abs(loss - (m + Foundation.log(total) - 0)) < 1e-9 * 500)
        for c in 0..<5 {
            let expected = p[c] - (c == 1 ? 1 : 0)
            let actual = Double(gradient.scalars[c])
            #expect(abs(actual - expected) <= 1e-6 * max(abs(expected), 1e-30), "class \(c): \(actual) vs \(expected)")
            #expect(actual == 0 || abs(actual) >= Double(Float.leastNormalMagnitude), "class \(c): subnormal \(actual)")
        }
        #expect(gradient.scalars[2] == 0, "e^-800 underflows to exactly 0")
    }

    @Test("causal attention with scores 300 apart: probabilities exactly 0 or normal")
    func attention() throws {
        // One sample, T = 3, one head of width 1: q = k = [0, 20, -20], so scores q_t k_s span ±400.
        // At every softmax kernel level this CPU runs (AVX-512 C rows, Swift loops).
        for level in elementwiseKernelLevels {
            let layer = try ScaledDotProductAttention(heads: 1, causal: true)
            layer.kernelISALevel = level
            let x = try Tensor(shape: [1, 3, 3], scalars: [0, 0, 1, 20, 20, 2, -20, -20, 3])
            _ = try layer.forward(x, mode: .evaluation)
            let p = try #require(layer.probabilities).scalars
            #expect(p.allSatisfy { $0 == 0 || $0 >= Float.leastNormalMagnitude }, "level \(level): \(p)")
            // Row 2 (query -20) over keys [0, 20, -20]: scores [0, -400, 400] → [e^-400, e^-800, 1] → [0, 0, 1].
            #expect(Array(p[6..<9]) == [0, 0, 1], "level \(level)")
        }
    }
}
