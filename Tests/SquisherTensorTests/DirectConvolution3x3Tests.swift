import SquisherTensor
import Testing

/// The direct 3x3 convolution kernels against plain Double loops, at every instruction-set level the
/// CPU has (portable C, AVX2+FMA, AVX-512), over widths that exercise the 16-lane tail, paddings 0-2,
/// 1-4 input channels and output-channel counts around the AVX-512 kernel's blocks of 4.
@Suite("Direct 3x3 convolution kernels")
struct DirectConvolution3x3Tests {
    struct Case: Sendable, CustomTestStringConvertible {
        var channels: Int, outputs: Int, height: Int, width: Int, padding: (Int, Int)
        var testDescription: String { "C\(channels)->\(outputs) \(height)x\(width) p\(padding)" }
    }

    static let cases: [Case] = [
        Case(channels: 1, outputs: 16, height: 28, width: 28, padding: (1, 1)),  // the benchmark CNN's first layer
        Case(channels: 3, outputs: 5, height: 7, width: 33, padding: (1, 1)),    // three chunks, 3-wide tail
        Case(channels: 2, outputs: 3, height: 5, width: 3, padding: (0, 0)),     // one output column
        Case(channels: 4, outputs: 7, height: 6, width: 18, padding: (2, 0)),    // 16 columns exactly, extra rows
        Case(channels: 1, outputs: 1, height: 3, width: 1, padding: (0, 2)),
    ]

    static var levels: [Int] { [0, 2, 3].filter { $0 <= GEMMKernelInfo.cpuISALevel } }

    @Test("forward and parameter gradients equal the Double reference", arguments: cases)
    func matchesReference(_ c: Case) throws {
        var rng = SplitMix64(seed: 41)
        func random(_ count: Int) -> [Float] { (0..<count).map { _ in Float(rng.nextUniformDouble() * 2 - 1) } }
        let g = try Im2Col(
            channels: c.channels, height: c.height, width: c.width, kernelHeight: 3, kernelWidth: 3,
            paddingHeight: c.padding.0, paddingWidth: c.padding.1)
        let direct = try #require(DirectConvolution3x3(geometry: g))
        let (oh, ow, o) = (g.outputHeight, g.outputWidth, c.outputs)
        let x = random(g.imageCount), w = random(o * c.channels * 9), bias = random(o), dy = random(o * oh * ow)
        // Reference in Double, with Σ|terms| per output for the error bound.
        func input(_ ch: Int, _ r: Int, _ q: Int) -> Double {
            let (ih, iw) = (r - c.padding.0, q - c.padding.1)
            return ih >= 0 && ih < c.height && iw >= 0 && iw < c.width ? Double(x[(ch * c.height + ih) * c.width + iw]) : 0
        }
        var y = [Double](repeating: 0, count: o * oh * ow), yMagnitude = y
        var dw = [Double](repeating: 0, count: o * c.channels * 9), dwMagnitude = dw
        var db = [Double](repeating: 0, count: o)
        for out in 0..<o {
            for r in 0..<oh {
                for q in 0..<ow {
                    let index = (out * oh + r) * ow + q
                    y[index] = Double(bias[out])
                    yMagnitude[index] = abs(Double(bias[out]))
                    db[out] += Double(dy[index])
                    for ch in 0..<c.channels {
                        for i in 0..<3 {
                            for j in 0..<3 {
                                let wIndex = ((out * c.channels + ch) * 3 + i) * 3 + j
                                let v = input(ch, r + i, q + j)
                                y[index] += Double(w[wIndex]) * v
                                yMagnitude[index] += abs(Double(w[wIndex]) * v)
                                dw[wIndex] += Double(dy[index]) * v
                                dwMagnitude[wIndex] += abs(Double(dy[index]) * v)
                            }
                        }
                    }
                }
            }
        }
        for level in Self.levels {
            var scratch = [Float](repeating: .nan, count: direct.scratchCount)  // NaN: the kernel must fill what it reads
            var output = [Float](repeating: .nan, count: o * oh * ow)
            var weightGradient = [Float](repeating: 0.5, count: dw.count)  // accumulated into
            var biasGradient = [Double](repeating: -0.25, count: o)
            x.withUnsafeBufferPointer { px in
                w.withUnsafeBufferPointer { pw in
                    bias.withUnsafeBufferPointer { pb in
                        dy.withUnsafeBufferPointer { pdy in
                            scratch.withUnsafeMutableBufferPointer { s in
                                output.withUnsafeMutableBufferPointer { py in
                                    direct.forward(
                                        x: px.baseAddress!, weight: pw.baseAddress!, bias: pb.baseAddress!, outputChannels: o,
                                        y: py.baseAddress!, scratch: s.baseAddress!, isaLevel: level)
                                }
                                weightGradient.withUnsafeMutableBufferPointer { pdw in
                                    biasGradient.withUnsafeMutableBufferPointer { pdb in
                                        direct.accumulateParameterGradients(
                                            x: px.baseAddress!, outputGradient: pdy.baseAddress!, outputChannels: o,
                                            weightGradient: pdw.baseAddress!, biasGradient: pdb.baseAddress!,
                                            scratch: s.baseAddress!, isaLevel: level)
                                    }
                                }
                            }
                        }
                    }
                }
            }
            // Float32 sums: at most 9·C terms per output and OH·OW/16 + 4 per gradient lane chain, each
            // adding at most one rounding of 6e-8 relative to Σ|terms|; 1e-5·Σ|terms| covers both with margin.
            for i in y.indices {
                #expect(abs(Double(output[i]) - y[i]) <= 1e-5 * yMagnitude[i] + 1e-7, "level \(level) y[\(i)]: \(output[i]) vs \(y[i])")
            }
            for i in dw.indices {
                let expected = 0.5 + dw[i]
                #expect(abs(Double(weightGradient[i]) - expected) <= 1e-5 * (dwMagnitude[i] + 0.5) + 1e-7, "level \(level) dW[\(i)]: \(weightGradient[i]) vs \(expected)")
            }
            for i in db.indices {
                #expect(abs(biasGradient[i] - (db[i] - 0.25)) <= 1e-5 * Double(oh * ow), "level \(level) db[\(i)]")
            }
        }
    }

    @Test("input gradient (transposed convolution with flipped weights) equals the Double reference", arguments: cases)
    func inputGradient(_ c: Case) throws {
        var rng = SplitMix64(seed: 43)
        func random(_ count: Int) -> [Float] { (0..<count).map { _ in Float(rng.nextUniformDouble() * 2 - 1) } }
        let g = try Im2Col(
            channels: c.channels, height: c.height, width: c.width, kernelHeight: 3, kernelWidth: 3,
            paddingHeight: c.padding.0, paddingWidth: c.padding.1)
        let direct = try #require(DirectConvolution3x3(geometry: g))
        let kernel = try #require(direct.inputGradientKernel(outputChannels: c.outputs))
        #expect(kernel.geometry.outputHeight == c.height && kernel.geometry.outputWidth == c.width)
        let (oh, ow, o) = (g.outputHeight, g.outputWidth, c.outputs)
        let w = random(o * c.channels * 9), dy = random(o * oh * ow)
        // dx[c, h, w] = Σ_{o,i,j} w[o, c, i, j] · dy[o, h + pad - i, w + pad - j] (the adjoint of the forward).
        var dx = [Double](repeating: 0, count: g.imageCount), magnitude = dx
        for out in 0..<o {
            for ch in 0..<c.channels {
                for i in 0..<3 {
                    for j in 0..<3 {
                        for h in 0..<c.height {
                            for q in 0..<c.width {
                                let (r, t) = (h + c.padding.0 - i, q + c.padding.1 - j)
                                guard r >= 0, r < oh, t >= 0, t < ow else { continue }
                                let term = Double(w[((out * c.channels + ch) * 3 + i) * 3 + j]) * Double(dy[(out * oh + r) * ow + t])
                                dx[(ch * c.height + h) * c.width + q] += term
                                magnitude[(ch * c.height + h) * c.width + q] += abs(term)
                            }
                        }
                    }
                }
            }
        }
        let flipped = w.withUnsafeBufferPointer {
            DirectConvolution3x3.transposedFlippedWeights($0.baseAddress!, outputChannels: o, inputChannels: c.channels)
        }
        for level in Self.levels {
            var scratch = [Float](repeating: .nan, count: kernel.scratchCount)
            var output = [Float](repeating: .nan, count: g.imageCount)
            dy.withUnsafeBufferPointer { pdy in
                flipped.withUnsafeBufferPointer { pw in
                    scratch.withUnsafeMutableBufferPointer { s in
                        output.withUnsafeMutableBufferPointer { px in
                            kernel.forward(
                                x: pdy.baseAddress!, weight: pw.baseAddress!, bias: nil, outputChannels: c.channels,
                                y: px.baseAddress!, scratch: s.baseAddress!, isaLevel: level)
                        }
                    }
                }
            }
            // At most 9·O terms per entry in float32: 1e-5·Σ|terms| bounds the rounding with margin.
            for i in dx.indices {
                #expect(abs(Double(output[i]) - dx[i]) <= 1e-5 * magnitude[i] + 1e-7, "level \(level) dx[\(i)]: \(output[i]) vs \(dx[i])")
            }
        }
    }

    @Test("only 3x3 windows with stride 1 get a direct kernel")
    func applicability() throws {
        #expect(DirectConvolution3x3(geometry: try Im2Col(channels: 1, height: 5, width: 5, kernelHeight: 3, kernelWidth: 3, strideHeight: 2, strideWidth: 2)) == nil)
        #expect(DirectConvolution3x3(geometry: try Im2Col(channels: 1, height: 5, width: 5, kernelHeight: 2, kernelWidth: 3)) == nil)
        #expect(DirectConvolution3x3(geometry: try Im2Col(channels: 1, height: 5, width: 5, kernelHeight: 3, kernelWidth: 3)) != nil)
        // Padding 3 would need a negative padding for the input gradient: no direct input-gradient kernel.
        let padded = try #require(DirectConvolution3x3(geometry: try Im2Col(
            channels: 1, height: 5, width: 5, kernelHeight: 3, kernelWidth: 3, paddingHeight: 3, paddingWidth: 3)))
        #expect(padded.inputGradientKernel(outputChannels: 2) == nil)
    }
}
