import Foundation

// Independent Double-precision reference forwards: plain loops over [Double], written from the
// PyTorch formulas, sharing no code with the layers under test.

enum Reference {
    /// `y[r, o] = b[o] + sum_i x[r, i] W[o, i]` over rows `r` of `x` (any leading shape).
    static func linear(_ x: [Double], weight: [Double], bias: [Double]?, inputFeatures: Int, outputFeatures: Int) -> [Double] {
        let rows = x.count / inputFeatures
        var y = [Double](repeating: 0, count: rows * outputFeatures)
        for r in 0..<rows {
            for o in 0..<outputFeatures {
                var s = bias?[o] ?? 0
                for i in 0..<inputFeatures { s += x[r * inputFeatures + i] * weight[o * inputFeatures + i] }
                y[r * outputFeatures + o] = s
            }
        }
        return y
    }

    static func relu(_ x: [Double]) -> [Double] { x.map { max($0, 0) } }
    static func tanh(_ x: [Double]) -> [Double] { x.map { Foundation.tanh($0) } }
    static func sigmoid(_ x: [Double]) -> [Double] { x.map { 1 / (1 + Foundation.exp(-$0)) } }
    static func geluExact(_ x: [Double]) -> [Double] { x.map { 0.5 * $0 * (1 + erf($0 / 2.0.squareRoot())) } }
    static func geluTanh(_ x: [Double]) -> [Double] {
        x.map { v in 0.5 * v * (1 + Foundation.tanh((2 / Double.pi).squareRoot() * (v + 0.044715 * v * v * v))) }
    }

    /// Direct convolution over NCHW with zero padding.
    static func conv2d(
        _ x: [Double], batch: Int, inputChannels: Int, height: Int, width: Int,
        weight: [Double], bias: [Double]?, outputChannels: Int,
        kernel: (Int, Int), stride: (Int, Int), padding: (Int, Int)
    ) -> (output: [Double], outputHeight: Int, outputWidth: Int) {
        let oh = (height + 2 * padding.0 - kernel.0) / stride.0 + 1
        let ow = (width + 2 * padding.1 - kernel.1) / stride.1 + 1
        var y = [Double](repeating: 0, count: batch * outputChannels * oh * ow)
        for n in 0..<batch {
            for o in 0..<outputChannels {
                for r in 0..<oh {
                    for c in 0..<ow {
                        var s = bias?[o] ?? 0
                        for ci in 0..<inputChannels {
                            for i in 0..<kernel.0 {
                                for j in 0..<kernel.1 {
                                    let ih = r * stride.0 - padding.0 + i, iw = c * stride.1 - padding.1 + j
                                    guard ih >= 0, ih < height, iw >= 0, iw < width else { continue }
                                    s += weight[((o * inputChannels + ci) * kernel.0 + i) * kernel.1 + j]
                                        * x[((n * inputChannels + ci) * height + ih) * width + iw]
                                }
                            }
                        }
                        y[((n * outputChannels + o) * oh + r) * ow + c] = s
                    }
                }
            }
        }
        return (y, oh, ow)
    }

    /// Max (or mean) over windows of each `[H, W]` plane, no padding.
    static func pool2d(
        _ x: [Double], planes: Int, height: Int, width: Int, kernel: (Int, Int), stride: (Int, Int), average: Bool
    ) -> (output: [Double], outputHeight: Int, outputWidth: Int) {
        let oh = (height - kernel.0) / stride.0 + 1, ow = (width - kernel.1) / stride.1 + 1
        var y = [Double](repeating: 0, count: planes * oh * ow)
        for p in 0..<planes {
            for r in 0..<oh {
                for c in 0..<ow {
                    var values: [Double] = []
                    for i in 0..<kernel.0 {
                        for j in 0..<kernel.1 { values.append(x[(p * height + r * stride.0 + i) * width + c * stride.1 + j]) }
                    }
                    y[(p * oh + r) * ow + c] = average ? values.reduce(0, +) / Double(values.count) : values.max()!
                }
            }
        }
        return (y, oh, ow)
    }

    /// Layer norm over trailing rows of `d` values, biased variance.
    static func layerNorm(_ x: [Double], d: Int, eps: Double, weight: [Double]?, bias: [Double]?) -> [Double] {
        var y = x
        for r in 0..<(x.count / d) {
            let row = Array(x[(r * d)..<((r + 1) * d)])
            let mean = row.reduce(0, +) / Double(d)
            let variance = row.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(d)
            for i in 0..<d {
                let xhat = (row[i] - mean) / (variance + eps).squareRoot()
                y[r * d + i] = xhat * (weight?[i] ?? 1) + (bias?[i] ?? 0)
            }
        }
        return y
    }

    /// Rows of the table picked by integer ids.
    static func embedding(ids: [Int], weight: [Double], dim: Int) -> [Double] {
        ids.flatMap { id in weight[(id * dim)..<((id + 1) * dim)] }
    }

    /// Per-row `-log softmax(z)[label]` via log-sum-exp, summed or averaged over rows.
    static func crossEntropy(_ z: [Double], labels: [Int], classes: Int, mean: Bool) -> Double {
        var total = 0.0
        for (r, label) in labels.enumerated() {
            let row = z[(r * classes)..<((r + 1) * classes)]
            let m = row.max()!
            let logSum = m + Foundation.log(row.map { Foundation.exp($0 - m) }.reduce(0, +))
            total += logSum - z[r * classes + label]
        }
        return mean ? total / Double(labels.count) : total
    }

    static func squaredError(_ p: [Double], _ t: [Double], mean: Bool) -> Double {
        let total = zip(p, t).map { ($0 - $1) * ($0 - $1) }.reduce(0, +)
        return mean ? total / Double(p.count) : total
    }
}
