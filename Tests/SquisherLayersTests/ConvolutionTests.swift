import SquisherLayers
import SquisherTensor
import Testing

@Suite("Conv2d, im2col and pooling")
struct ConvolutionTests {
    struct ConvCase: Sendable, CustomTestStringConvertible {
        var batch = 2, inputChannels = 3, outputChannels = 4, height = 5, width = 7
        var kernel = (3, 3), stride = (2, 2), padding = (1, 1)
        var bias = true
        var testDescription: String {
            "N\(batch) C\(inputChannels)->\(outputChannels) \(height)x\(width) k\(kernel) s\(stride) p\(padding) bias \(bias)"
        }
    }

    static let convCases: [ConvCase] = [
        ConvCase(),  // stride 2, padding 1, non-square input, several channels
        ConvCase(batch: 3, inputChannels: 2, outputChannels: 3, height: 4, width: 6, kernel: (2, 3), stride: (1, 2), padding: (0, 1)),
        ConvCase(batch: 1, inputChannels: 1, outputChannels: 2, height: 6, width: 5, kernel: (3, 3), stride: (1, 1), padding: (0, 0), bias: false),
        ConvCase(batch: 2, inputChannels: 2, outputChannels: 2, height: 3, width: 3, kernel: (3, 3), stride: (3, 3), padding: (2, 2)),
    ]

    @Test("Conv2d matches a direct Double convolution and finite differences", arguments: convCases)
    func conv2d(_ c: ConvCase) throws {
        var generator = SplitMix64(seed: 31)
        let layer = try Conv2d(
            inputChannels: c.inputChannels, outputChannels: c.outputChannels, kernelSize: c.kernel,
            stride: c.stride, padding: c.padding, bias: c.bias, generator: &generator)
        let input = Tensor.uniform(shape: [c.batch, c.inputChannels, c.height, c.width], low: -1, high: 1, using: &generator)
        let size = try layer.outputSize(for: input)
        #expect(size.height == (c.height + 2 * c.padding.0 - c.kernel.0) / c.stride.0 + 1)
        #expect(size.width == (c.width + 2 * c.padding.1 - c.kernel.1) / c.stride.1 + 1)
        try checkLayer(layer, input: input, generator: &generator, "Conv2d \(c.testDescription)") { x, p in
            Reference.conv2d(
                x, batch: c.batch, inputChannels: c.inputChannels, height: c.height, width: c.width,
                weight: p[0], bias: c.bias ? p[1] : nil, outputChannels: c.outputChannels,
                kernel: c.kernel, stride: c.stride, padding: c.padding).output
        }
    }

    @Test("Conv2d on a batch split over the threads equals the Double reference, per-sample runs and the parameter-only backward")
    func blockedBatch() throws {
        // 3 channels, 32x32, k3 p1, 20 samples: the layer splits them over the GEMM threads (each
        // with its own parameter-gradient sums, added at the end).
        var generator = SplitMix64(seed: 37)
        let layer = try Conv2d(inputChannels: 3, outputChannels: 4, kernelSize: 3, padding: 1, generator: &generator)
        let input = Tensor.uniform(shape: [20, 3, 32, 32], low: -1, high: 1, using: &generator)
        let output = try layer.forward(input, mode: .training)
        let p = layer.namedParameters.map { doubles($0.parameter.value) }
        let reference = Reference.conv2d(
            doubles(input), batch: 20, inputChannels: 3, height: 32, width: 32, weight: p[0], bias: p[1], outputChannels: 4,
            kernel: (3, 3), stride: (1, 1), padding: (1, 1)).output
        expectClose(doubles(output), reference, relative: Tolerance.forwardRelative, absolute: Tolerance.forwardAbsolute, "blocked forward")
        let r = Tensor.uniform(shape: output.shape, low: -1, high: 1, using: &generator)
        layer.zeroGradients()
        let inputGradient = try layer.backward(r, accumulateParameterGradients: true)
        let batchGradients = layer.namedParameters.map { doubles($0.parameter.gradient) }
        // Per sample (one block of one sample each): gradients must add up to the batch's.
        layer.zeroGradients()
        var perSampleInputGradient: [Double] = []
        let sampleSize = 3 * 32 * 32, outputSize = 4 * 32 * 32
        for n in 0..<20 {
            let x = try Tensor(shape: [1, 3, 32, 32], scalars: Array(input.scalars[(n * sampleSize)..<((n + 1) * sampleSize)]))
            _ = try layer.forward(x, mode: .training)
            let g = try Tensor(shape: [1, 4, 32, 32], scalars: Array(r.scalars[(n * outputSize)..<((n + 1) * outputSize)]))
            perSampleInputGradient += doubles(try layer.backward(g, accumulateParameterGradients: true))
        }
        // Input gradients: identical arithmetic per sample, so float32 rounding only.
        expectClose(doubles(inputGradient), perSampleInputGradient, relative: 1e-6, absolute: 1e-6, "blocked input gradient")
        // Parameter gradients sum 20 * 1024 products: summation order differs, ~1e-6 relative.
        for (index, (name, parameter)) in layer.namedParameters.enumerated() {
            expectClose(batchGradients[index], doubles(parameter.gradient), relative: 1e-5, absolute: 1e-4, "blocked gradient of \(name)")
        }
        // The parameter-only backward (first layer of a model) of this 3x3, stride-1, 3-channel layer runs the
        // direct kernel (``DirectConvolution3x3``), not im2col + GEMM: the same 20 * 1024 products per
        // entry summed in another order, so the same tolerance as above.
        #expect(layer.inputChannels <= Conv2d.directWeightGradientMaximumInputChannels)
        _ = try layer.forward(input, mode: .training)
        layer.zeroGradients()
        try layer.accumulateParameterGradients(r)
        for (index, (name, parameter)) in layer.namedParameters.enumerated() {
            expectClose(doubles(parameter.gradient), batchGradients[index], relative: 1e-5, absolute: 1e-4, "parameter-only backward of \(name)")
        }
    }

    @Test("Conv2d.unfold: per-sample im2col with output[n] = W · unfold[n] + b")
    func unfold() throws {
        var generator = SplitMix64(seed: 32)
        let layer = try Conv2d(inputChannels: 2, outputChannels: 3, kernelSize: 3, stride: 2, padding: 1, generator: &generator)
        let input = Tensor.uniform(shape: [2, 2, 5, 4], low: -1, high: 1, using: &generator)
        let columns = try layer.unfold(input)
        let (oh, ow) = try layer.outputSize(for: input)
        #expect(columns.shape == [2, 18, oh * ow])
        // Each entry is a copied input pixel or a padding zero: exact.
        for n in 0..<2 {
            for c in 0..<2 {
                for i in 0..<3 {
                    for j in 0..<3 {
                        for r in 0..<oh {
                            for q in 0..<ow {
                                let ih = r * 2 - 1 + i, iw = q * 2 - 1 + j
                                let expected: Float = (0..<5).contains(ih) && (0..<4).contains(iw) ? input[n, c, ih, iw] : 0
                                #expect(columns[n, (c * 3 + i) * 3 + j, r * ow + q] == expected)
                            }
                        }
                    }
                }
            }
        }
        let output = try layer.forward(input, mode: .evaluation)
        let weight = try layer.weight.value.reshaped([3, 18])
        for n in 0..<2 {
            let sample = try Tensor(shape: [18, oh * ow], scalars: Array(columns.scalars[(n * 18 * oh * ow)..<((n + 1) * 18 * oh * ow)]))
            var product = try Tensor.matmul(weight, sample)
            for o in 0..<3 { for l in 0..<(oh * ow) { product[o, l] += layer.bias!.value[o] } }
            expectClose(
                doubles(product), Array(doubles(output)[(n * 3 * oh * ow)..<((n + 1) * 3 * oh * ow)]),
                relative: Tolerance.forwardRelative, absolute: Tolerance.forwardAbsolute, "W · unfold + b, sample \(n)")
        }
    }

    @Test("col2im is the adjoint of im2col: <im2col(x), c> = <x, col2im(c)>")
    func adjoint() throws {
        var generator = SplitMix64(seed: 33)
        let g = try Im2Col(channels: 2, height: 5, width: 6, kernelHeight: 3, kernelWidth: 2, strideHeight: 2, strideWidth: 3, paddingHeight: 1, paddingWidth: 2)
        let x = Tensor.uniform(shape: [g.imageCount], low: -1, high: 1, using: &generator)
        let c = Tensor.uniform(shape: [g.rows * g.columns], low: -1, high: 1, using: &generator)
        var columns = Tensor(zeros: [g.rows * g.columns]), image = Tensor(zeros: [g.imageCount])
        x.withUnsafeBufferPointer { px in
            columns.withUnsafeMutableBufferPointer { g.im2col(image: px.baseAddress!, columnsOut: $0.baseAddress!, leadingDimension: g.columns) }
        }
        c.withUnsafeBufferPointer { pc in
            image.withUnsafeMutableBufferPointer { g.col2im(columnsIn: pc.baseAddress!, leadingDimension: g.columns, addingInto: $0.baseAddress!) }
        }
        let left = zip(doubles(columns), doubles(c)).reduce(0) { $0 + $1.0 * $1.1 }
        let right = zip(doubles(x), doubles(image)).reduce(0) { $0 + $1.0 * $1.1 }
        // Both sides sum the same ~100 float32 products (im2col copies exactly; col2im sums in float32).
        #expect(abs(left - right) <= 1e-5 * (1 + abs(left)), "\(left) vs \(right)")
        #expect(g.outputHeight == 3 && g.outputWidth == 3)
    }

    @Test("Conv2d initialization: U(±1/sqrt(fan_in)) for weight and bias, seeded")
    func convInit() throws {
        var a = SplitMix64(seed: 34), b = SplitMix64(seed: 34)
        let first = try Conv2d(inputChannels: 4, outputChannels: 8, kernelSize: (3, 2), generator: &a)
        let second = try Conv2d(inputChannels: 4, outputChannels: 8, kernelSize: (3, 2), generator: &b)
        #expect(first.weight.value == second.weight.value && first.bias!.value == second.bias!.value)
        let bound: Float = 1 / Float(24).squareRoot()
        #expect(first.weight.value.shape == [8, 4, 3, 2] && first.bias!.value.shape == [8])
        #expect(first.weight.value.scalars.allSatisfy { abs($0) <= bound })
        #expect(first.bias!.value.scalars.allSatisfy { abs($0) <= bound })
        // 192 uniform draws fill the interval: the extremes are within 10% of the bound
        // (probability of failing with a correct bound ~ 2 * 0.95^192 ≈ 1e-4, and the seed is fixed).
        #expect(first.weight.value.scalars.max()! > 0.9 * bound && first.weight.value.scalars.min()! < -0.9 * bound)
    }

    struct PoolCase: Sendable, CustomTestStringConvertible {
        var kernel: (Int, Int), stride: (Int, Int)?, height: Int, width: Int
        var testDescription: String { "k\(kernel) s\(String(describing: stride)) \(height)x\(width)" }
    }

    static let poolCases: [PoolCase] = [
        PoolCase(kernel: (2, 2), stride: nil, height: 4, width: 6),
        PoolCase(kernel: (2, 2), stride: nil, height: 5, width: 7),  // odd: a last row and column outside every window
        PoolCase(kernel: (3, 3), stride: (2, 2), height: 7, width: 5),  // overlapping windows
        PoolCase(kernel: (2, 3), stride: (1, 2), height: 5, width: 8),
    ]

    @Test("MaxPool2d matches the Double reference and finite differences", arguments: poolCases)
    func maxPool(_ c: PoolCase) throws {
        var generator = SplitMix64(seed: 35)
        let layer = try MaxPool2d(kernelSize: c.kernel, stride: c.stride)
        // Distinct values (a shuffled grid with spacing 0.01) so that no window has a near-tie within h.
        let count = 2 * 3 * c.height * c.width
        var values = (0..<count).map { Float($0) * 0.01 - 1 }
        values.shuffle(using: &generator)
        let input = try Tensor(shape: [2, 3, c.height, c.width], scalars: values)
        try checkLayer(layer, input: input, generator: &generator, "MaxPool2d \(c.testDescription)") { x, _ in
            Reference.pool2d(x, planes: 6, height: c.height, width: c.width, kernel: c.kernel, stride: c.stride ?? c.kernel, average: false).output
        }
    }

    @Test("AvgPool2d matches the Double reference and finite differences", arguments: poolCases)
    func avgPool(_ c: PoolCase) throws {
        var generator = SplitMix64(seed: 36)
        let layer = try AvgPool2d(kernelSize: c.kernel, stride: c.stride)
        let input = Tensor.uniform(shape: [2, 3, c.height, c.width], low: -1, high: 1, using: &generator)
        try checkLayer(layer, input: input, generator: &generator, "AvgPool2d \(c.testDescription)") { x, _ in
            Reference.pool2d(x, planes: 6, height: c.height, width: c.width, kernel: c.kernel, stride: c.stride ?? c.kernel, average: true).output
        }
    }

    @Test("MaxPool2d ties send the gradient to the first maximum (PyTorch)")
    func maxPoolTies() throws {
        let layer = try MaxPool2d(kernelSize: 2)
        let input = try Tensor(shape: [1, 1, 2, 4], scalars: [1, 1, 0, 2, 1, 1, 2, 2])
        #expect(try layer.forward(input, mode: .training).scalars == [1, 2])
        let gradient = try layer.backward(Tensor(repeating: 1, shape: [1, 1, 1, 2]), accumulateParameterGradients: false)
        #expect(gradient.scalars == [1, 0, 0, 1, 0, 0, 0, 0])
    }
}
