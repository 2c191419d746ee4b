import Foundation
import SquisherLayers
import SquisherTensor
import Testing

/// The loss family: each loss value against a Double reference written from its formula, and its
/// gradient against central differences of that reference (tolerances in ``Tolerance``).
@Suite("Likelihood losses: values and finite differences")
struct LikelihoodLossTests {
    /// `Σ over predicted rows of (1−ε)(−log p(y)) + ε·mean_c(−log p(c))` in Double.
    static func smoothedCrossEntropy(_ z: [Double], rowTargets: [Int?], classes: Int, epsilon: Double) -> Double {
        var total = 0.0
        for (row, target) in rowTargets.enumerated() {
            guard let target else { continue }
            let logits = Array(z[(row * classes)..<((row + 1) * classes)])
            let top = logits.max()!
            let logSum = top + log(logits.map { exp($0 - top) }.reduce(0, +))
            let negatives = logits.map { logSum - $0 }
            total += (1 - epsilon) * negatives[target] + epsilon * negatives.reduce(0, +) / Double(classes)
        }
        return total
    }

    static func check(
        _ loss: some LikelihoodLoss, output: Tensor, targets: Tensor, _ label: String, reference: ([Double]) -> Double,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let (value, gradient) = try loss.lossAndGradient(output: output, targets: targets)
        expectClose([value], [reference(doubles(output))], relative: 1e-6, absolute: 1e-6, "\(label) value", sourceLocation: sourceLocation)
        let numeric = centralDifferences(at: doubles(output), reference)
        expectClose(doubles(gradient), numeric, relative: Tolerance.gradientRelative, absolute: Tolerance.gradientAbsolute, "\(label) gradient", sourceLocation: sourceLocation)
    }

    @Test("cross-entropy per sample, with and without label smoothing", arguments: [0.0, 0.1])
    func perSample(epsilon: Double) throws {
        var generator = SplitMix64(seed: 501)
        let output = Tensor.uniform(shape: [4, 5], low: -2, high: 2, using: &generator)
        let labels = [3, 0, 4, 1]
        let loss = CrossEntropyLikelihood(labelSmoothing: epsilon)
        try Self.check(loss, output: output, targets: Tensor(uncheckedShape: [4], scalars: labels.map(Float.init)), "per-sample ε=\(epsilon)") {
            Self.smoothedCrossEntropy($0, rowTargets: labels, classes: 5, epsilon: epsilon)
        }
    }

    @Test("cross-entropy per token: sum over a sequence's tokens, -100 ignored, causal shift")
    func perToken() throws {
        var generator = SplitMix64(seed: 502)
        let output = Tensor.uniform(shape: [2, 4, 3], low: -2, high: 2, using: &generator)
        let targets: [Float] = [2, 0, -100, 1, 1, 1, 2, -100]
        let tensor = Tensor(uncheckedShape: [2, 4], scalars: targets)
        let unshifted: [Int?] = targets.map { $0 == -100 ? nil : Int($0) }
        try Self.check(CrossEntropyLikelihood(layout: .perToken(shifted: false), labelSmoothing: 0.2), output: output, targets: tensor, "per-token") {
            Self.smoothedCrossEntropy($0, rowTargets: unshifted, classes: 3, epsilon: 0.2)
        }
        // Shifted: row (n, t) predicts target (n, t + 1); the last position predicts nothing.
        let shifted: [Int?] = (0..<8).map { $0 % 4 == 3 ? nil : unshifted[$0 + 1] }
        try Self.check(CrossEntropyLikelihood(layout: .perToken(shifted: true)), output: output, targets: tensor, "per-token shifted") {
            Self.smoothedCrossEntropy($0, rowTargets: shifted, classes: 3, epsilon: 0)
        }
        // Bad targets name themselves.
        #expect(throws: TensorError.self) {
            _ = try CrossEntropyLikelihood(layout: .perToken(shifted: false)).lossAndGradient(output: output, targets: Tensor(repeating: 3, shape: [2, 4]))
        }
        #expect(throws: TensorError.self) {
            _ = try CrossEntropyLikelihood().lossAndGradient(output: output, targets: Tensor(zeros: [2, 4]))
        }
    }

    @Test("Gaussian likelihood: Σ (f − y)² / 2σ²; σ² = 1/2 is PyTorch's MSELoss(sum)", arguments: [1.0, 0.5, 2.0])
    func gaussian(variance: Double) throws {
        var generator = SplitMix64(seed: 503)
        let output = Tensor.uniform(shape: [3, 2], low: -2, high: 2, using: &generator)
        let targets = Tensor.uniform(shape: [3, 2], low: -2, high: 2, using: &generator)
        let t = doubles(targets)
        try Self.check(GaussianLikelihood(variance: variance), output: output, targets: targets, "Gaussian σ²=\(variance)") { f in
            zip(f, t).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) } / (2 * variance)
        }
        if variance == 0.5 {
            let pytorch = try MeanSquaredError(reduction: .sum)(predictions: output, targets: targets)
            #expect(abs(pytorch.loss - (try GaussianLikelihood(variance: 0.5).lossAndGradient(output: output, targets: targets)).loss) < 1e-5)
        }
    }

    @Test("exact Fisher passes: Σ_k G_k² per output row equals E_y (∂l/∂f)² of the distribution")
    func exactPassesMoments() throws {
        // Cross-entropy: E_c[(p − e_c)(p − e_c)ᵀ] diagonal = p(1 − p) (the softmax Hessian diagonal).
        var generator = SplitMix64(seed: 504)
        let output = Tensor.uniform(shape: [2, 3, 4], low: -2, high: 2, using: &generator)
        let targets = Tensor(uncheckedShape: [2, 3], scalars: [1, 2, -100, 0, -100, 3])
        let passes = try CrossEntropyLikelihood(layout: .perToken(shifted: false)).exactFisherPasses(output: output, targets: targets)
        #expect(passes.count == 3 * 4)  // every position is predicted in at least one sample; one pass per (position, class)
        var moments = [Double](repeating: 0, count: 24)
        for k in 0..<passes.count {
            let (gradient, scale) = try passes.pass(k)
            for (i, g) in gradient.scalars.enumerated() { moments[i] += Double(scale) * Double(g) * Double(g) }
        }
        let p = try output.reshaped([6, 4]).softmaxRows()
        let predicted = [true, true, false, true, false, true]
        var expected = [Double](repeating: 0, count: 24)
        for row in 0..<6 where predicted[row] {
            for c in 0..<4 { let q = Double(p[row, c]); expected[row * 4 + c] = q * (1 - q) }
        }
        expectClose(moments, expected, relative: 1e-5, absolute: 1e-6, "cross-entropy pass moments")
    }
}
