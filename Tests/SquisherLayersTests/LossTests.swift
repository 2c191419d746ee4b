import SquisherLayers
import SquisherTensor
import Testing

@Suite("Losses")
struct LossTests {
    @Test("SoftmaxCrossEntropy: loss and logits gradient vs Double reference and finite differences", arguments: Reduction.allCases)
    func crossEntropy(_ reduction: Reduction) throws {
        var generator = SplitMix64(seed: 41)
        let logits = Tensor.uniform(shape: [4, 5], low: -3, high: 3, using: &generator)
        let labels = [0, 3, 4, 3]
        let loss = SoftmaxCrossEntropy(reduction: reduction)
        let (value, gradient) = try loss(logits: logits, labels: labels)
        let mean = reduction == .mean
        let expected = Reference.crossEntropy(doubles(logits), labels: labels, classes: 5, mean: mean)
        // Loss of 4 rows of O(1) float32 log-probabilities: 1e-5 relative covers float32 rounding.
        expectClose([value], [expected], relative: Tolerance.forwardRelative, absolute: Tolerance.forwardAbsolute, "cross-entropy \(reduction)")
        let numeric = centralDifferences(at: doubles(logits)) { Reference.crossEntropy($0, labels: labels, classes: 5, mean: mean) }
        expectClose(doubles(gradient), numeric, relative: Tolerance.gradientRelative, absolute: Tolerance.gradientAbsolute, "cross-entropy \(reduction) gradient")
    }

    @Test("SoftmaxCrossEntropy is stable for logits of ±1e4")
    func crossEntropyStability() throws {
        let logits = try Tensor(shape: [2, 3], scalars: [1e4, -1e4, 0, -1e4, 1e4, 1e4])
        let (loss, gradient) = try SoftmaxCrossEntropy(reduction: .sum)(logits: logits, labels: [1, 2])
        // Analytic: row 0 has -log p_1 = 2e4 + log(1 + e^-2e4 + e^-1e4) = 2e4 (exactly in float32);
        // row 1 has two equal maxima, -log p_2 = log 2.
        #expect(gradient.isFinite && loss.isFinite)
        expectClose([loss], [2e4 + 0.6931471805599453], relative: 1e-7, absolute: 1e-6, "loss at ±1e4")
        // Gradient softmax - onehot: row 0 = [1, -1, 0], row 1 = [0, 0.5, -0.5] (float32 exact or 1 ulp).
        expectClose(doubles(gradient), [1, -1, 0, 0, 0.5, -0.5], relative: 1e-6, absolute: 1e-7, "gradient at ±1e4")
        let logSoftmax = try logits.logSoftmaxRows()
        #expect(logSoftmax.isFinite)
        expectClose(doubles(logSoftmax), [0, -2e4, -1e4, -2e4 - 0.6931471805599453, -0.6931471805599453, -0.6931471805599453],
                    relative: 1e-7, absolute: 1e-6, "log-softmax at ±1e4")
        let softmax = try logits.softmaxRows()
        expectClose(doubles(softmax), [1, 0, 0, 0, 0.5, 0.5], relative: 1e-6, absolute: 1e-7, "softmax at ±1e4")
    }

    @Test("MeanSquaredError: sum over elements, or mean over all elements (PyTorch MSELoss)", arguments: Reduction.allCases)
    func meanSquaredError(_ reduction: Reduction) throws {
        var generator = SplitMix64(seed: 42)
        let predictions = Tensor.uniform(shape: [3, 4], low: -2, high: 2, using: &generator)
        let targets = Tensor.uniform(shape: [3, 4], low: -2, high: 2, using: &generator)
        let (value, gradient) = try MeanSquaredError(reduction: reduction)(predictions: predictions, targets: targets)
        let mean = reduction == .mean
        let t = doubles(targets)
        let expected = Reference.squaredError(doubles(predictions), t, mean: mean)
        expectClose([value], [expected], relative: Tolerance.forwardRelative, absolute: Tolerance.forwardAbsolute, "MSE \(reduction)")
        let numeric = centralDifferences(at: doubles(predictions)) { Reference.squaredError($0, t, mean: mean) }
        expectClose(doubles(gradient), numeric, relative: Tolerance.gradientRelative, absolute: Tolerance.gradientAbsolute, "MSE \(reduction) gradient")
        // Analytic: with all differences 1, sum = count and mean = 1.
        let ones = try MeanSquaredError(reduction: reduction)(predictions: Tensor(repeating: 1, shape: [3, 4]), targets: Tensor(zeros: [3, 4]))
        #expect(ones.loss == (mean ? 1 : 12))
    }

    @Test("MeanSquaredError names itself on a shape mismatch")
    func meanSquaredErrorShape() {
        do {
            _ = try MeanSquaredError()(predictions: Tensor(zeros: [2, 3]), targets: Tensor(zeros: [3, 2]))
            Issue.record("mismatched shapes accepted")
        } catch {
            #expect("\(error)".contains("MeanSquaredError") && "\(error)".contains("[3, 2]"), "\(error)")
        }
    }
}
