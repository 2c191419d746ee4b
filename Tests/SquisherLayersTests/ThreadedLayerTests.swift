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
}
