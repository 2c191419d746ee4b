import Squisher
import Testing

/// The per-sample squared gradients of `Linear` and HF `Conv1D` over sequences (`[N, T, in]`) are
/// made in cached column blocks, split over the threads by columns (wide layers) or by samples
/// (narrow ones), each with the squares kernel (AVX-512) and with the product-then-square path of other
/// CPUs. Against the definition in Double: `Σ_n (Σ_t x_{n,t} δ_{n,t}ᵀ)²`.
/// Float32 products of T = 3 terms, squared and summed over 5 samples, against Double: 1e-5 normwise.
@Suite("Per-sample squared gradients over sequences: column and sample splits")
struct SequenceLinearSquaresTests {
    /// The settings every case runs with: the default (on AVX-512 CPUs the squares kernel, products never
    /// stored), and instruction-set levels 2 and 0 (each block of the products computed by the AVX2 or
    /// portable GEMM into scratch, then squared): the paths of CPUs without AVX-512.
    struct Products: Sendable, CustomTestStringConvertible {
        let configuration: GEMMConfiguration?
        let testDescription: String
        static let all = [
            Products(configuration: nil, testDescription: "default"),
            Products(configuration: GEMMConfiguration(isaLevel: 2), testDescription: "ISA level 2"),
            Products(configuration: GEMMConfiguration(isaLevel: 0), testDescription: "ISA level 0"),
        ]
    }

    /// `Σ_n (Σ_t x_{n,t,a} δ_{n,t,b})²` as `[in, out]`, and the bias `Σ_n (Σ_t δ_{n,t,b})²`.
    static func reference(_ x: Tensor, _ d: Tensor) -> (weight: [Double], bias: [Double]) {
        let (n, t, i, o) = (x.shape[0], x.shape[1], x.shape[2], d.shape[2])
        var weight = [Double](repeating: 0, count: i * o), bias = [Double](repeating: 0, count: o)
        for sample in 0..<n {
            var g = [Double](repeating: 0, count: i * o), b = [Double](repeating: 0, count: o)
            for position in 0..<t {
                for a in 0..<i {
                    let xv = Double(x.scalars[(sample * t + position) * i + a])
                    for c in 0..<o { g[a * o + c] += xv * Double(d.scalars[(sample * t + position) * o + c]) }
                }
                for c in 0..<o { b[c] += Double(d.scalars[(sample * t + position) * o + c]) }
            }
            for k in 0..<(i * o) { weight[k] += g[k] * g[k] }
            for c in 0..<o { bias[c] += b[c] * b[c] }
        }
        return (weight, bias)
    }

    /// `[in, out]` Double matrix to `[out, in]`.
    static func transposed(_ m: [Double], rows: Int, columns: Int) -> [Double] {
        (0..<(rows * columns)).map { k in m[(k % rows) * columns + k / rows] }
    }

    @Test("Conv1D 600 -> 1000 (sums of 600 rows: 6 column blocks of 192, split by columns), scale 0.5", arguments: Products.all)
    func columnSplit(products: Products) throws {
        var generator = SplitMix64(seed: 31)
        let layer = TransposedLinear(inputFeatures: 600, outputFeatures: 1000, generator: &generator)
        let x = Tensor.normal(shape: [5, 3, 600], using: &generator), d = Tensor.normal(shape: [5, 3, 1000], using: &generator)
        var sums: [String: Tensor] = [:]
        _ = try TransposedLinearSquaredGradientRule(products: products.configuration).accumulateSquaredGradients(layer: layer, input: x, outputGradient: d, scale: 0.5, into: &sums)
        let (weight, bias) = Self.reference(x, d)
        let weightDeviation = Deviation(try #require(sums["weight"]).scalars, weight.map { 0.5 * $0 })
        let biasDeviation = Deviation(try #require(sums["bias"]).scalars, bias.map { 0.5 * $0 })
        #expect(weightDeviation.normwise < 1e-5, "weight: \(weightDeviation)")
        #expect(biasDeviation.normwise < 1e-5, "bias: \(biasDeviation)")
    }

    @Test("Conv1D 1000 -> 600 (sums of 1000 rows, 600 columns: 6 row blocks of 192, the last 40 rows, split by blocks)", arguments: Products.all)
    func rowSplit(products: Products) throws {
        var generator = SplitMix64(seed: 33)
        let layer = TransposedLinear(inputFeatures: 1000, outputFeatures: 600, generator: &generator)
        let x = Tensor.normal(shape: [5, 3, 1000], using: &generator), d = Tensor.normal(shape: [5, 3, 600], using: &generator)
        var sums: [String: Tensor] = [:]
        _ = try TransposedLinearSquaredGradientRule(products: products.configuration).accumulateSquaredGradients(layer: layer, input: x, outputGradient: d, scale: 2, into: &sums)
        let (weight, bias) = Self.reference(x, d)
        let weightDeviation = Deviation(try #require(sums["weight"]).scalars, weight.map { 2 * $0 })
        let biasDeviation = Deviation(try #require(sums["bias"]).scalars, bias.map { 2 * $0 })
        #expect(weightDeviation.normwise < 1e-5, "weight: \(weightDeviation)")
        #expect(biasDeviation.normwise < 1e-5, "bias: \(biasDeviation)")
    }

    @Test("Linear 70 -> 40 (one column block, split by samples: 2 + 3 per thread)", arguments: Products.all)
    func sampleSplit(products: Products) throws {
        var generator = SplitMix64(seed: 32)
        let layer = Linear(inputFeatures: 70, outputFeatures: 40, generator: &generator)
        let x = Tensor.normal(shape: [5, 3, 70], using: &generator), d = Tensor.normal(shape: [5, 3, 40], using: &generator)
        var sums: [String: Tensor] = [:]
        _ = try LinearSquaredGradientRule(products: products.configuration).accumulateSquaredGradients(layer: layer, input: x, outputGradient: d, scale: 1, into: &sums)
        let (weight, bias) = Self.reference(x, d)
        let weightDeviation = Deviation(try #require(sums["weight"]).scalars, Self.transposed(weight, rows: 70, columns: 40))
        let biasDeviation = Deviation(try #require(sums["bias"]).scalars, bias)
        #expect(weightDeviation.normwise < 1e-5, "weight: \(weightDeviation)")
        #expect(biasDeviation.normwise < 1e-5, "bias: \(biasDeviation)")
    }

    @Test("trailing zero output-gradient rows (a causal true-Fisher pass) and an all-zero sample", arguments: Products.all)
    func trailingZeroRows(products: Products) throws {
        var generator = SplitMix64(seed: 33)
        let layer = TransposedLinear(inputFeatures: 40, outputFeatures: 24, generator: &generator)
        let x = Tensor.normal(shape: [4, 6, 40], using: &generator)
        var scalars = Tensor.normal(shape: [4, 6, 24], using: &generator).scalars
        // Sample 0 keeps positions 0...2, sample 1 all six, sample 2 none, sample 3 only position 0;
        // sample 1's position 4 is zero in the middle (kept: only trailing rows are left out).
        for (sample, kept) in [(0, 3), (1, 6), (2, 0), (3, 1)] {
            for position in kept..<6 { for c in 0..<24 { scalars[(sample * 6 + position) * 24 + c] = 0 } }
        }
        for c in 0..<24 { scalars[(1 * 6 + 4) * 24 + c] = 0 }
        let d = try Tensor(shape: [4, 6, 24], scalars: scalars)
        var sums: [String: Tensor] = [:]
        _ = try TransposedLinearSquaredGradientRule(products: products.configuration).accumulateSquaredGradients(layer: layer, input: x, outputGradient: d, scale: 1, into: &sums)
        let (weight, bias) = Self.reference(x, d)
        let weightDeviation = Deviation(try #require(sums["weight"]).scalars, weight)
        let biasDeviation = Deviation(try #require(sums["bias"]).scalars, bias)
        #expect(weightDeviation.normwise < 1e-5, "weight: \(weightDeviation)")
        #expect(biasDeviation.normwise < 1e-5, "bias: \(biasDeviation)")
    }

    /// The sums go straight into the accumulators: a second call adds to the first (no reset, no
    /// separate sums), in both splits; a frozen bias gets no accumulator.
    @Test("a second batch adds into the first's sums (column split, sample split); frozen bias skipped", arguments: Products.all)
    func addsIntoExistingSums(products: Products) throws {
        var generator = SplitMix64(seed: 35)
        let wide = TransposedLinear(inputFeatures: 600, outputFeatures: 1000, generator: &generator)
        let narrow = Linear(inputFeatures: 70, outputFeatures: 40, generator: &generator)
        narrow.bias?.requiresGradient = false
        for (layer, inFeatures, outFeatures) in [(wide as any Layer, 600, 1000), (narrow as any Layer, 70, 40)] {
            let batches = (0..<2).map { _ in
                (Tensor.normal(shape: [5, 3, inFeatures], using: &generator), Tensor.normal(shape: [5, 3, outFeatures], using: &generator))
            }
            let scales: [Float] = [0.5, 3]
            var sums: [String: Tensor] = [:]
            var weight = [Double](repeating: 0, count: inFeatures * outFeatures), bias = [Double](repeating: 0, count: outFeatures)
            for ((x, d), scale) in zip(batches, scales) {
                if layer is Linear {
                    _ = try LinearSquaredGradientRule(products: products.configuration)
                        .accumulateSquaredGradients(layer: layer, input: x, outputGradient: d, scale: scale, into: &sums)
                } else {
                    _ = try TransposedLinearSquaredGradientRule(products: products.configuration)
                        .accumulateSquaredGradients(layer: layer, input: x, outputGradient: d, scale: scale, into: &sums)
                }
                let reference = Self.reference(x, d)
                for k in weight.indices { weight[k] += Double(scale) * reference.weight[k] }
                for k in bias.indices { bias[k] += Double(scale) * reference.bias[k] }
            }
            let expectedWeight = layer is Linear ? Self.transposed(weight, rows: inFeatures, columns: outFeatures) : weight
            let weightDeviation = Deviation(try #require(sums["weight"]).scalars, expectedWeight)
            #expect(weightDeviation.normwise < 1e-5, "\(layer.typeName) weight: \(weightDeviation)")
            if layer is Linear {
                #expect(sums["bias"] == nil, "a frozen bias got an accumulator")
            } else {
                let biasDeviation = Deviation(try #require(sums["bias"]).scalars, bias)
                #expect(biasDeviation.normwise < 1e-5, "\(layer.typeName) bias: \(biasDeviation)")
            }
        }
    }
}
