import Foundation

// Double references of the transformer pieces: plain loops written from the PyTorch / Hugging Face
// formulas, sharing no code with the layers under test.

extension Reference {
    /// HF `Conv1D`: `y[r, o] = b[o] + Σ_i x[r, i] W[i, o]` with `W` `[in, out]`.
    static func transposedLinear(_ x: [Double], weight: [Double], bias: [Double], inputFeatures: Int, outputFeatures: Int) -> [Double] {
        let rows = x.count / inputFeatures
        var y = [Double](repeating: 0, count: rows * outputFeatures)
        for r in 0..<rows {
            for o in 0..<outputFeatures {
                var s = bias[o]
                for i in 0..<inputFeatures { s += x[r * inputFeatures + i] * weight[i * outputFeatures + o] }
                y[r * outputFeatures + o] = s
            }
        }
        return y
    }

    /// Attention over `[N, T, 3D]` (q | k | v), `heads` heads, scores `/√d`, masked keys removed.
    static func attention(_ x: [Double], n: Int, t: Int, d: Int, heads: Int, causal: Bool, mask: [Double]?) -> [Double] {
        let hd = d / heads
        var y = [Double](repeating: 0, count: n * t * d)
        for sample in 0..<n {
            for head in 0..<heads {
                for query in 0..<t {
                    var scores = [Double](repeating: -.infinity, count: t)
                    for key in 0..<t where (!causal || key <= query) && (mask?[sample * t + key] ?? 1) != 0 {
                        var s = 0.0
                        for j in 0..<hd {
                            s += x[(sample * t + query) * 3 * d + head * hd + j] * x[(sample * t + key) * 3 * d + d + head * hd + j]
                        }
                        scores[key] = s / Double(hd).squareRoot()
                    }
                    let top = scores.max()!
                    guard top > -.infinity else { continue }
                    let e = scores.map { exp($0 - top) }
                    let total = e.reduce(0, +)
                    for key in 0..<t where e[key] > 0 {
                        for j in 0..<hd {
                            y[(sample * t + query) * d + head * hd + j] += e[key] / total * x[(sample * t + key) * 3 * d + 2 * d + head * hd + j]
                        }
                    }
                }
            }
        }
        return y
    }

    /// `a + b` element-wise.
    static func add(_ a: [Double], _ b: [Double]) -> [Double] { zip(a, b).map { $0 + $1 } }

    /// `[..., a] ++ [..., b] ++ [..., c]` along the last axis.
    static func concatenate(_ parts: [[Double]], width: Int) -> [Double] {
        let rows = parts[0].count / width
        var y: [Double] = []
        for r in 0..<rows { for part in parts { y += part[(r * width)..<((r + 1) * width)] } }
        return y
    }
}
