import SquisherLayers
import SquisherTensor
import Testing

/// ReLU and 2x2 max pooling on tensors large enough to be split over two threads
/// (`parallelChunks`: at least 2·32768 elements), against plain loops: both are exact operations
/// (a select, a maximum, a copy), so the results must be identical, bit for bit.
@Suite("Threaded element-wise layers and pooling")
struct ThreadedLayerTests {
    @Test("ReLU forward and backward on 70,001 elements equal the scalar definition, NaN included")
    func relu() throws {
        var generator = SplitMix64(seed: 51)
        var values = Tensor.uniform(shape: [7, 10_001], low: -1, high: 1, using: &generator).scalars
        values[3] = .nan
        values[40_000] = 0
        values[69_999] = -0.0
        let input = try Tensor(shape: [7, 10_001], scalars: values)
        let dy = Tensor.uniform(shape: [7, 10_001], low: -1, high: 1, using: &generator)
        let layer = ReLU()
        let output = try layer.forward(input, mode: .training)
        let dx = try layer.backward(dy, accumulateParameterGradients: false)
        for i in values.indices {
            let x = values[i]
            let expected: Float = x > 0 || x.isNaN ? x : 0
            #expect(output.scalars[i].bitPattern == expected.bitPattern || (x <= 0 && output.scalars[i] == 0), "y[\(i)]")
            #expect(dx.scalars[i] == (x > 0 ? dy.scalars[i] : 0), "dx[\(i)]")
        }
    }

    @Test("MaxPool2d 2x2 on 256 planes equals the window maximum and sends each gradient to its place")
    func maxPool() throws {
        var generator = SplitMix64(seed: 52)
        let (n, c, h, w) = (32, 8, 16, 17)  // odd width: the last column is outside every window
        let input = Tensor.uniform(shape: [n, c, h, w], low: -1, high: 1, using: &generator)
        let layer = try MaxPool2d(kernelSize: 2)
        let output = try layer.forward(input, mode: .training)
        let (oh, ow) = (h / 2, w / 2)
        #expect(output.shape == [n, c, oh, ow])
        let dy = Tensor.uniform(shape: output.shape, low: -1, high: 1, using: &generator)
        let dx = try layer.backward(dy, accumulateParameterGradients: false)
        var expectedGradient = [Float](repeating: 0, count: input.count)
        let x = input.scalars
        for plane in 0..<(n * c) {
            for r in 0..<oh {
                for q in 0..<ow {
                    // First maximum in row-major window order (random values: no ties).
                    var best = plane * h * w + 2 * r * w + 2 * q
                    for (i, j) in [(0, 1), (1, 0), (1, 1)] where x[plane * h * w + (2 * r + i) * w + 2 * q + j] > x[best] {
                        best = plane * h * w + (2 * r + i) * w + 2 * q + j
                    }
                    let o = (plane * oh + r) * ow + q
                    #expect(output.scalars[o] == x[best], "y[\(o)]")
                    expectedGradient[best] = dy.scalars[o]
                }
            }
        }
        #expect(dx.scalars == expectedGradient)
    }

    @Test("AvgPool2d on 256 planes, overlapping windows, equals the Double window mean and spreads the gradient")
    func avgPool() throws {
        var generator = SplitMix64(seed: 53)
        let (n, c, h, w) = (32, 8, 16, 17)
        let (kh, kw, sh, sw) = (3, 2, 2, 1)  // overlapping rows: gradients of neighbouring windows add up
        let input = Tensor.uniform(shape: [n, c, h, w], low: -1, high: 1, using: &generator)
        let layer = try AvgPool2d(kernelSize: (kh, kw), stride: (sh, sw))
        let output = try layer.forward(input, mode: .training)
        let (oh, ow) = ((h - kh) / sh + 1, (w - kw) / sw + 1)
        #expect(output.shape == [n, c, oh, ow])
        let dy = Tensor.uniform(shape: output.shape, low: -1, high: 1, using: &generator)
        let dx = try layer.backward(dy, accumulateParameterGradients: false)
        let (x, y, g, dxs) = (input.doubles, output.scalars, dy.doubles, dx.scalars)
        var expectedGradient = [Double](repeating: 0, count: input.count)
        var worst = 0.0
        for plane in 0..<(n * c) {
            for r in 0..<oh {
                for q in 0..<ow {
                    var sum = 0.0
                    for i in 0..<kh {
                        for j in 0..<kw {
                            let at = plane * h * w + (r * sh + i) * w + q * sw + j
                            sum += x[at]
                            expectedGradient[at] += g[(plane * oh + r) * ow + q] / Double(kh * kw)
                        }
                    }
                    worst = max(worst, abs(Double(y[(plane * oh + r) * ow + q]) - sum / Double(kh * kw)))
                }
            }
        }
        // Six float32 additions and a scaling of values in [-1, 1]: at most ~7 roundings of
        // magnitude <= 6·2^-24 each; 1e-6 is well above that and far below any wrong window.
        #expect(worst <= 1e-6, "worst output error \(worst)")
        let gradientError = zip(dxs, expectedGradient).map { abs(Double($0) - $1) }.max() ?? 0
        #expect(gradientError <= 1e-6, "worst input-gradient error \(gradientError)")
    }
}
