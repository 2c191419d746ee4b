import SquisherLayers
import SquisherTensor
import Testing

/// LayerNorm splits rows over the threads once a thread gets about 32 Ki floats: 2,100 rows of 48
/// (three chunks' worth) against the Double forward (``Reference/layerNorm(_:d:eps:weight:bias:)``)
/// and the Double backward written out here. Float32 sums of 48 (per row) or 2,100 (per parameter)
/// O(1) terms against Double: 1e-5 relative plus 1e-4 absolute (the parameter gradients are sums of
/// 2,100 terms of size ~1, so their float32 rounding reaches ~1e-5 of their ~30 magnitude).
@Suite("LayerNorm with rows split over the threads vs Double")
struct LayerNormThreadedTests {
    /// `dx`, `dweight`, `dbias` in Double for `y = x̂ ⊙ w + b`.
    static func backward(_ x: [Double], _ dy: [Double], d: Int, eps: Double, weight: [Double]) -> (dx: [Double], dw: [Double], db: [Double]) {
        var dx = x, dw = [Double](repeating: 0, count: d), db = [Double](repeating: 0, count: d)
        for r in 0..<(x.count / d) {
            let row = Array(x[(r * d)..<((r + 1) * d)])
            let mean = row.reduce(0, +) / Double(d)
            let rstd = 1 / (row.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(d) + eps).squareRoot()
            let xhat = row.map { ($0 - mean) * rstd }
            let g = (0..<d).map { dy[r * d + $0] * weight[$0] }
            let meanG = g.reduce(0, +) / Double(d), meanGX = zip(g, xhat).map(*).reduce(0, +) / Double(d)
            for i in 0..<d {
                dx[r * d + i] = rstd * (g[i] - meanG - xhat[i] * meanGX)
                dw[i] += dy[r * d + i] * xhat[i]
                db[i] += dy[r * d + i]
            }
        }
        return (dx, dw, db)
    }

    /// At every row-kernel level this CPU runs: the AVX-512 C rows (3, where available) and the Swift lanes (0).
    @Test("forward, input gradient and parameter gradients of [3, 700, 48]", arguments: elementwiseKernelLevels)
    func threadedRows(level: Int) throws {
        var generator = SplitMix64(seed: 41)
        let layer = try LayerNorm(normalizedShape: [48])
        layer.kernelISALevel = level
        layer.weight!.value = Tensor.normal(shape: [48], mean: 1, standardDeviation: 0.3, using: &generator)
        layer.bias!.value = Tensor.normal(shape: [48], standardDeviation: 0.3, using: &generator)
        let input = Tensor.normal(shape: [3, 700, 48], mean: 0.5, standardDeviation: 2, using: &generator)
        let dy = Tensor.normal(shape: [3, 700, 48], using: &generator)
        let x = input.doubles, w = layer.weight!.value.doubles, b = layer.bias!.value.doubles
        let output = try layer.forward(input, mode: .training)
        expectClose(output.doubles, Reference.layerNorm(x, d: 48, eps: 1e-5, weight: w, bias: b), relative: 1e-5, absolute: 1e-5, "forward")
        let dx = try layer.backward(dy, accumulateParameterGradients: true)
        let reference = Self.backward(x, dy.doubles, d: 48, eps: 1e-5, weight: w)
        expectClose(dx.doubles, reference.dx, relative: 1e-5, absolute: 1e-5, "input gradient")
        expectClose(layer.weight!.gradient.doubles, reference.dw, relative: 1e-5, absolute: 1e-4, "weight gradient")
        expectClose(layer.bias!.gradient.doubles, reference.db, relative: 1e-5, absolute: 1e-4, "bias gradient")
        // The per-sample rule's x̂ for the forward's own input comes from the cache, and equals a fresh one.
        let cached = try layer.normalized(input)
        let fresh = try layer.normalized(input.map { $0 })
        expectClose(cached.doubles, fresh.doubles, relative: 0, absolute: 0, "cached x̂")
    }
}
