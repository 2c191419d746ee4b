import SquisherLayers
import SquisherTensor
import Testing

/// The public hooks that per-sample estimators build on reproduce each sample's own gradient
/// (the gradient of the layer run on that sample alone, which the gradient checks validate).
@Suite("Per-sample hooks")
struct PerSampleHookTests {
    @Test("Conv2d: g_n · unfold(x)_nᵀ is sample n's weight gradient, sum of g_n its bias gradient")
    func conv2d() throws {
        var generator = SplitMix64(seed: 61)
        let layer = try Conv2d(inputChannels: 2, outputChannels: 3, kernelSize: (3, 2), stride: (2, 1), padding: (1, 1), generator: &generator)
        let input = Tensor.uniform(shape: [3, 2, 5, 4], low: -1, high: 1, using: &generator)
        let output = try layer.forward(input, mode: .training)
        let gradient = Tensor.uniform(shape: output.shape, low: -1, high: 1, using: &generator)
        let columns = try layer.unfold(input)
        let (k, l) = (columns.shape[1], columns.shape[2])
        #expect(k == layer.fanIn && l == output.shape[2] * output.shape[3])
        for n in 0..<3 {
            let g = try Tensor(shape: [3, l], scalars: Array(gradient.scalars[(n * 3 * l)..<((n + 1) * 3 * l)]))
            let u = try Tensor(shape: [k, l], scalars: Array(columns.scalars[(n * k * l)..<((n + 1) * k * l)]))
            let perSampleWeight = try Tensor.matmul(g, u, transposeB: true)
            let perSampleBias = try g.reshaped([3, l]).scalars.chunked(l).map { $0.reduce(0, +) }
            // The same sample run alone through the layer.
            layer.zeroGradients()
            let x = try Tensor(shape: [1, 2, 5, 4], scalars: Array(input.scalars[(n * 40)..<((n + 1) * 40)]))
            _ = try layer.forward(x, mode: .training)
            _ = try layer.backward(try g.reshaped([1, 3, output.shape[2], output.shape[3]]), accumulateParameterGradients: true)
            // Both sum the same ~l * k float32 products in different orders.
            expectClose(doubles(perSampleWeight), doubles(layer.weight.gradient), relative: 1e-5, absolute: 1e-5, "conv weight, sample \(n)")
            expectClose(perSampleBias.map(Double.init), doubles(layer.bias!.gradient), relative: 1e-5, absolute: 1e-5, "conv bias, sample \(n)")
        }
    }

    @Test("LayerNorm: sum over positions of g * normalized(x) is a sample's weight gradient")
    func layerNorm() throws {
        var generator = SplitMix64(seed: 62)
        let layer = try LayerNorm(normalizedShape: [4])
        layer.weight!.value = Tensor.uniform(shape: [4], low: 0.5, high: 1.5, using: &generator)
        let input = Tensor.uniform(shape: [2, 3, 4], low: -1, high: 1, using: &generator)
        let gradient = Tensor.uniform(shape: [2, 3, 4], low: -1, high: 1, using: &generator)
        let xhat = try layer.normalized(input)
        for n in 0..<2 {
            var weight = [Double](repeating: 0, count: 4)
            for t in 0..<3 { for i in 0..<4 { weight[i] += Double(gradient[n, t, i]) * Double(xhat[n, t, i]) } }
            layer.zeroGradients()
            _ = try layer.forward(try Tensor(shape: [1, 3, 4], scalars: Array(input.scalars[(n * 12)..<((n + 1) * 12)])), mode: .training)
            _ = try layer.backward(try Tensor(shape: [1, 3, 4], scalars: Array(gradient.scalars[(n * 12)..<((n + 1) * 12)])), accumulateParameterGradients: true)
            expectClose(weight, doubles(layer.weight!.gradient), relative: 1e-5, absolute: 1e-6, "layer norm weight, sample \(n)")
        }
    }
}

extension Array {
    /// Consecutive slices of `size` elements.
    func chunked(_ size: Int) -> [[Element]] {
        stride(from: 0, to: count, by: size).map { Array(self[$0..<Swift.min($0 + size, count)]) }
    }
}
