import Dispatch
import SquisherTensor

/// A 2-D convolution (cross-correlation) over NCHW images, as PyTorch's `nn.Conv2d` with
/// dilation 1, one group and zero padding:
///
///     y[n, o, oh, ow] = bias[o] + sum_{c, i, j} weight[o, c, i, j]
///                       * x[n, c, oh * strideH - padH + i, ow * strideW - padW + j]
///
/// - Input `[N, inputChannels, H, W]`; output `[N, outputChannels, outH, outW]` with
///   `outH = (H + 2 * padH - kernelH) / strideH + 1` (floor), likewise the width.
/// - `weight`: `[outputChannels, inputChannels, kernelH, kernelW]`; `bias`: `[outputChannels]`.
/// - Initialization as PyTorch (`kaiming_uniform_(a: sqrt(5))`): weight and bias uniform in
///   `±1/sqrt(fanIn)` with `fanIn = inputChannels * kernelH * kernelW`, weight drawn first.
///
/// Computed per sample, the samples split over the threads: `Y_n[out, L] = W[out, fanIn] · X_col[fanIn, L]`
/// with the sample's im2col matrix (``Im2Col``) and `L = outH * outW`, or, for 3x3 stride-1 layers with few
/// input channels, by direct kernels (``DirectConvolution3x3``).
/// For per-sample estimators, ``unfold(_:)`` returns the per-sample column matrices, with which the
/// per-sample weight gradient is `g_n[out, L] · unfold(x)_nᵀ`.
public final class Conv2d: Layer, CustomStringConvertible {
    public let typeName = "Conv2d"
    /// Channels of the input (`C` of NCHW).
    public let inputChannels: Int
    /// Channels of the output (number of filters).
    public let outputChannels: Int
    /// Window size (height, width).
    public let kernelSize: (height: Int, width: Int)
    /// Step between window positions (height, width).
    public let stride: (height: Int, width: Int)
    /// Implicit zero padding on each side (height, width).
    public let padding: (height: Int, width: Int)
    /// The filters, `[outputChannels, inputChannels, kernelH, kernelW]`.
    public let weight: Parameter
    /// The per-filter offset, `[outputChannels]`, or nil when created with `bias: false`.
    public let bias: Parameter?

    private var cachedInput: Tensor?
    private var cachedGeometry: Im2Col?
    /// Output and input-gradient memory, reused across passes.
    private var outputBuffer = ReusableTensor()
    private var gradientBuffer = ReusableTensor()

    /// Creates a convolution with PyTorch's default initialization drawn from `generator`.
    /// - Throws: ``TensorError/invalidArgument(argument:reason:)`` when a channel count, kernel size
    ///   or stride is not positive, or a padding is negative.
    public init(
        inputChannels: Int, outputChannels: Int, kernelSize: (Int, Int), stride: (Int, Int) = (1, 1),
        padding: (Int, Int) = (0, 0), bias: Bool = true, generator: inout SplitMix64
    ) throws(TensorError) {
        let configuration = "Conv2d(\(inputChannels), \(outputChannels), kernel_size=\(kernelSize), stride=\(stride), padding=\(padding))"
        guard inputChannels > 0, outputChannels > 0 else {
            throw .invalidArgument(argument: configuration, reason: "channel counts must be positive")
        }
        guard kernelSize.0 > 0, kernelSize.1 > 0, stride.0 > 0, stride.1 > 0 else {
            throw .invalidArgument(argument: configuration, reason: "kernel size and stride must be positive")
        }
        guard padding.0 >= 0, padding.1 >= 0 else {
            throw .invalidArgument(argument: configuration, reason: "padding must be non-negative")
        }
        self.inputChannels = inputChannels
        self.outputChannels = outputChannels
        self.kernelSize = kernelSize
        self.stride = stride
        self.padding = padding
        let fanIn = inputChannels * kernelSize.0 * kernelSize.1
        let bound = 1 / Float(fanIn).squareRoot()
        weight = Parameter(.uniform(
            shape: [outputChannels, inputChannels, kernelSize.0, kernelSize.1], low: -bound, high: bound, using: &generator))
        self.bias = bias ? Parameter(.uniform(shape: [outputChannels], low: -bound, high: bound, using: &generator)) : nil
    }

    /// Convenience for square kernels, strides and paddings.
    /// - Throws: as the initializer taking `(height, width)` pairs.
    public convenience init(
        inputChannels: Int, outputChannels: Int, kernelSize: Int, stride: Int = 1, padding: Int = 0,
        bias: Bool = true, generator: inout SplitMix64
    ) throws(TensorError) {
        try self.init(
            inputChannels: inputChannels, outputChannels: outputChannels, kernelSize: (kernelSize, kernelSize),
            stride: (stride, stride), padding: (padding, padding), bias: bias, generator: &generator)
    }

    /// PyTorch's repr, e.g. `Conv2d(3, 8, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1))`; names the layer in errors.
    public var description: String {
        "Conv2d(\(inputChannels), \(outputChannels), kernel_size=(\(kernelSize.height), \(kernelSize.width)), "
            + "stride=(\(stride.height), \(stride.width)), padding=(\(padding.height), \(padding.width))"
            + (bias == nil ? ", bias=False)" : ")")
    }

    /// Fan-in of one output: `inputChannels * kernelH * kernelW` (the rows of the im2col matrix).
    public var fanIn: Int { inputChannels * kernelSize.height * kernelSize.width }

    public var localParameters: [(name: String, parameter: Parameter)] {
        [("weight", weight)] + (bias.map { [("bias", $0)] } ?? [])
    }

    /// The im2col geometry for an input, after checking its shape.
    private func geometry(for input: Tensor, _ operation: String) throws(TensorError) -> Im2Col {
        guard input.rank == 4, input.shape[1] == inputChannels else {
            throw .shapeMismatch(operation: "\(description) \(operation)", expected: "input [N, \(inputChannels), H, W]", actual: input.shape)
        }
        do {
            return try Im2Col(
                channels: inputChannels, height: input.shape[2], width: input.shape[3],
                kernelHeight: kernelSize.height, kernelWidth: kernelSize.width,
                strideHeight: stride.height, strideWidth: stride.width,
                paddingHeight: padding.height, paddingWidth: padding.width)
        } catch {
            throw .shapeMismatch(
                operation: "\(description) \(operation)",
                expected: "input [N, \(inputChannels), H, W] with H + 2*\(padding.height) >= \(kernelSize.height) and W + 2*\(padding.width) >= \(kernelSize.width)",
                actual: input.shape)
        }
    }

    /// The output spatial size `(outH, outW)` for an input `[N, inputChannels, H, W]`.
    /// - Throws: ``TensorError/shapeMismatch(operation:expected:actual:)`` naming the layer when the
    ///   input is not `[N, inputChannels, H, W]` or smaller than the kernel after padding.
    public func outputSize(for input: Tensor) throws(TensorError) -> (height: Int, width: Int) {
        let g = try geometry(for: input, "outputSize")
        return (g.outputHeight, g.outputWidth)
    }

    /// The im2col matrices of every sample, `[N, fanIn, outH * outW]` with
    /// `fanIn = inputChannels * kernelH * kernelW` in the weight's `(c, i, j)` order (PyTorch's
    /// `F.unfold(x, kernel_size, padding=padding, stride=stride)`). Then
    /// `output[n] = weight.reshaped([out, fanIn]) · unfold(x)[n] + bias`, and the per-sample weight
    /// gradient is `outputGradient[n].reshaped([out, L]) · unfold(x)[n]ᵀ`.
    /// - Throws: as ``outputSize(for:)``.
    public func unfold(_ input: Tensor) throws(TensorError) -> Tensor {
        let g = try geometry(for: input, "unfold")
        let batch = input.shape[0]
        let k = g.rows, l = g.columns
        var result = Tensor(zeros: [batch, k, l])
        guard batch > 0 else { return result }
        input.withUnsafeBufferPointer { x in
            result.withUnsafeMutableBufferPointer { out in
                for n in 0..<batch {
                    g.im2col(image: x.baseAddress! + n * g.imageCount, columnsOut: out.baseAddress! + n * k * l, leadingDimension: l)
                }
            }
        }
        return result
    }

    /// Channels up to which a 3x3, stride-1 convolution runs the direct kernels (``DirectConvolution3x3``)
    /// instead of im2col and a GEMM: the forward when `inputChannels` is at most this, the input
    /// gradient (a transposed convolution over the output channels) when `outputChannels` is.
    public static let directKernelMaximumChannels = 32

    /// Input channels up to which a 3x3, stride-1 convolution computes its parameter gradients with the
    /// direct kernel: with `9·C` rows the column matrix is too thin for the packed GEMM to run near peak.
    public static let directWeightGradientMaximumInputChannels = 4

    /// The direct 3x3 forward kernel for this layer and geometry, or nil when the layer takes the im2col path.
    private func directKernel(_ g: Im2Col) -> DirectConvolution3x3? {
        inputChannels <= Conv2d.directKernelMaximumChannels ? DirectConvolution3x3(geometry: g) : nil
    }

    /// The threads one call splits its samples over, and the single-threaded GEMM settings each of
    /// them uses (the per-sample products are small; the parallelism is over samples).
    private func sampleParallelism(batch: Int) -> (parts: Int, configuration: GEMMConfiguration) {
        var configuration = GEMMConfiguration.current
        let parts = configuration.threadParts(for: batch)
        configuration.maximumThreads = 1
        return (parts, configuration)
    }

    /// Computed one sample at a time, the samples split over the threads: per sample the im2col
    /// matrix `X_col[fanIn, L]` (thread-local, cache-sized) and `Y_n[out, L] = W · X_col + bias`
    /// written straight into the NCHW output (no transposes); 3x3 stride-1 layers with at most
    /// ``directKernelMaximumChannels`` input channels use the direct kernel instead.
    public func forward(_ input: Tensor, mode: LayerMode) throws(TensorError) -> Tensor {
        let g = try geometry(for: input, "forward")
        let batch = input.shape[0]
        cachedInput = input
        cachedGeometry = g
        let shape = [batch, outputChannels, g.outputHeight, g.outputWidth]
        guard batch > 0 else { return Tensor(zeros: shape) }
        let k = g.rows, l = g.columns, out = outputChannels
        let (parts, configuration) = sampleParallelism(batch: batch)
        let direct = directKernel(g)
        let biasValues = bias?.value.scalars ?? [Float](repeating: 0, count: out)
        // Every output scalar is written below (bias, then the product with beta = 1): no zero fill.
        return outputBuffer.make(shape: shape) { y in
            input.withUnsafeBufferPointer { x in
                weight.value.withUnsafeBufferPointer { w in
                    biasValues.withUnsafeBufferPointer { b in
                        let p = ConvPointers(x: x.baseAddress!, w: w.baseAddress!, dy: b.baseAddress!, out: y.baseAddress!)
                        DispatchQueue.concurrentPerform(iterations: parts) { part in
                            let samples = (batch * part / parts)..<(batch * (part + 1) / parts)
                            if let direct {
                                let scratch = UnsafeMutablePointer<Float>.allocate(capacity: direct.scratchCount)
                                defer { scratch.deallocate() }
                                for n in samples {
                                    direct.forward(
                                        x: p.x + n * g.imageCount, weight: p.w, bias: p.dy, outputChannels: out,
                                        y: p.out + n * out * l, scratch: scratch)
                                }
                                return
                            }
                            let columns = UnsafeMutablePointer<Float>.allocate(capacity: k * l)
                            defer { columns.deallocate() }
                            for n in samples {
                                g.im2col(image: p.x + n * g.imageCount, columnsOut: columns, leadingDimension: l)
                                let yn = p.out + n * out * l
                                for o in 0..<out { (yn + o * l).update(repeating: p.dy[o], count: l) }
                                gemm(
                                    transposeA: false, transposeB: false, m: out, n: l, k: k,
                                    a: p.w, lda: k, b: columns, ldb: l, beta: 1, c: yn, ldc: l,
                                    configuration: configuration)
                            }
                        }
                    }
                }
            }
        }
    }

    /// One sample at a time, the samples split over the threads: `dX_n` (the direct kernel's
    /// transposed convolution for 3x3 stride-1 layers with at most ``directKernelMaximumChannels``
    /// output channels, else `dX_col = Wᵀ · dY_n` and col2im); `dW += dY_n · X_colᵀ` (the direct kernel
    /// when at most ``directWeightGradientMaximumInputChannels`` input channels) and `db += Σ_l dY_n`
    /// into per-thread sums (Double for the bias) added at the end.
    public func backward(_ outputGradient: Tensor, accumulateParameterGradients: Bool) throws(TensorError) -> Tensor {
        try backward(outputGradient, accumulateParameterGradients: accumulateParameterGradients, computeInputGradient: true)!
    }

    /// Skips the input gradient.
    public func accumulateParameterGradients(_ outputGradient: Tensor) throws(TensorError) {
        _ = try backward(outputGradient, accumulateParameterGradients: true, computeInputGradient: false)
    }

    /// The input gradient when `computeInputGradient`, else nil.
    private func backward(
        _ outputGradient: Tensor, accumulateParameterGradients: Bool, computeInputGradient: Bool
    ) throws(TensorError) -> Tensor? {
        guard let input = cachedInput, let g = cachedGeometry else {
            throw .invalidArgument(argument: "\(description) backward", reason: "called before forward")
        }
        let batch = input.shape[0]
        try outputGradient.checkShape([batch, outputChannels, g.outputHeight, g.outputWidth], "\(description) backward (output gradient)")
        guard batch > 0 else { return computeInputGradient ? Tensor(zeros: input.shape) : nil }
        let plan = BackwardPlan(
            layer: self, geometry: g, batch: batch, computeInputGradient: computeInputGradient,
            weightGradient: accumulateParameterGradients && weight.requiresGradient,
            biasGradient: accumulateParameterGradients && (bias?.requiresGradient ?? false))
        var weightSums = [Float](repeating: 0, count: plan.parts * plan.weightStride)
        var biasSums = [Double](repeating: 0, count: plan.parts * plan.biasStride)
        var inputGradient: Tensor? = nil
        if computeInputGradient {
            // Every sample's slice is overwritten (direct kernel, or zeroed then col2im): no zero fill.
            inputGradient = gradientBuffer.make(shape: input.shape) { dx in
                runBackward(plan, input: input, outputGradient: outputGradient, inputGradient: dx.baseAddress!, &weightSums, &biasSums)
            }
        } else {
            // A one-element placeholder keeps the pointer plumbing simple; it is never written.
            var placeholder: [Float] = [0]
            placeholder.withUnsafeMutableBufferPointer { dx in
                runBackward(plan, input: input, outputGradient: outputGradient, inputGradient: dx.baseAddress!, &weightSums, &biasSums)
            }
        }
        try addThreadSums(weightSums, biasSums, parts: plan.parts)
        return inputGradient
    }

    /// Runs `plan` over the samples split between the threads: the input gradient into `inputGradient`
    /// (when the plan computes it) and the per-thread parameter-gradient sums into `weightSums`, `biasSums`.
    private func runBackward(
        _ plan: BackwardPlan, input: Tensor, outputGradient: Tensor, inputGradient: UnsafeMutablePointer<Float>,
        _ weightSums: inout [Float], _ biasSums: inout [Double]
    ) {
        let batch = input.shape[0], parts = plan.parts
        let flipped = plan.inputKernel == nil ? [] : weight.value.withUnsafeBufferPointer {
            DirectConvolution3x3.transposedFlippedWeights($0.baseAddress!, outputChannels: outputChannels, inputChannels: inputChannels)
        }
        input.withUnsafeBufferPointer { x in
            outputGradient.withUnsafeBufferPointer { dy in
                weight.value.withUnsafeBufferPointer { w in
                    flipped.withUnsafeBufferPointer { wf in
                        weightSums.withUnsafeMutableBufferPointer { dw in
                            biasSums.withUnsafeMutableBufferPointer { db in
                                let p = ConvPointers(x: x.baseAddress!, w: w.baseAddress!, dy: dy.baseAddress!, out: inputGradient)
                                let sums = ConvSums(
                                    weight: plan.weightStride > 0 ? dw.baseAddress : nil, bias: plan.biasStride > 0 ? db.baseAddress : nil,
                                    flippedWeight: wf.baseAddress)
                                DispatchQueue.concurrentPerform(iterations: parts) { part in
                                    plan.run(samples: (batch * part / parts)..<(batch * (part + 1) / parts), part: part, p, sums)
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Adds the per-thread parameter-gradient sums (`parts` consecutive blocks each) to the gradients.
    private func addThreadSums(_ weightSums: [Float], _ biasSums: [Double], parts: Int) throws(TensorError) {
        let weightStride = weightSums.count / parts, biasStride = biasSums.count / parts
        var weightIncrement = Array(weightSums.prefix(weightStride))
        var biasIncrement = Array(biasSums.prefix(biasStride))
        for part in 1..<parts {
            for i in 0..<weightStride { weightIncrement[i] += weightSums[part * weightStride + i] }
            for i in 0..<biasStride { biasIncrement[i] += biasSums[part * biasStride + i] }
        }
        if weightStride > 0 { try weight.gradient.addScaled(Tensor(uncheckedShape: weight.value.shape, scalars: weightIncrement)) }
        if biasStride > 0, let bias {
            try bias.gradient.addScaled(Tensor(uncheckedShape: [outputChannels], scalars: biasIncrement.map { Float($0) }))
        }
    }
}

/// What one backward call computes and with which kernels; ``run(samples:part:_:_:)`` does one thread's samples.
private struct BackwardPlan: Sendable {
    let geometry: Im2Col
    let outputChannels: Int
    let parts: Int
    let configuration: GEMMConfiguration
    let computeInputGradient: Bool
    /// The direct transposed convolution for the input gradient, or nil (GEMM and col2im).
    let inputKernel: DirectConvolution3x3?
    /// The direct kernel for the parameter gradients, or nil (im2col and GEMM, vector bias sums).
    let weightKernel: DirectConvolution3x3?
    /// Per-thread scalars of the weight (`out·fanIn`) and bias (`out`) sums; 0 when not accumulated.
    let weightStride: Int
    let biasStride: Int

    init(layer: Conv2d, geometry g: Im2Col, batch: Int, computeInputGradient: Bool, weightGradient: Bool, biasGradient: Bool) {
        geometry = g
        outputChannels = layer.outputChannels
        var configuration = GEMMConfiguration.current
        parts = configuration.threadParts(for: batch)
        configuration.maximumThreads = 1
        self.configuration = configuration
        self.computeInputGradient = computeInputGradient
        let direct = DirectConvolution3x3(geometry: g)
        inputKernel = computeInputGradient && layer.outputChannels <= Conv2d.directKernelMaximumChannels
            ? direct?.inputGradientKernel(outputChannels: layer.outputChannels) : nil
        weightKernel = weightGradient && layer.inputChannels <= Conv2d.directWeightGradientMaximumInputChannels ? direct : nil
        weightStride = weightGradient ? layer.outputChannels * g.rows : 0
        biasStride = biasGradient ? layer.outputChannels : 0
    }

    /// The input gradient, weight and bias sums of samples `samples`, into thread `part`'s sums.
    func run(samples: Range<Int>, part: Int, _ p: ConvPointers, _ sums: ConvSums) {
        let g = geometry, k = g.rows, l = g.columns, out = outputChannels
        let needsColumns = computeInputGradient && inputKernel == nil || weightStride > 0 && weightKernel == nil
        let scratchCount = max(inputKernel?.scratchCount ?? 0, weightKernel?.scratchCount ?? 0, needsColumns ? k * l : 0)
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: max(1, scratchCount))
        defer { scratch.deallocate() }
        let weightSum = sums.weight.map { $0 + part * weightStride }
        let biasSum = sums.bias.map { $0 + part * biasStride }
        for n in samples {
            let dyn = p.dy + n * out * l, dxn = p.out + n * g.imageCount, xn = p.x + n * g.imageCount
            if computeInputGradient {
                if let inputKernel, let wf = sums.flippedWeight {
                    inputKernel.forward(x: dyn, weight: wf, bias: nil, outputChannels: g.channels, y: dxn, scratch: scratch)
                } else {
                    // dX_col[fanIn, L] = Wᵀ · dY_n, scattered back into dX_n.
                    gemm(
                        transposeA: true, transposeB: false, m: k, n: l, k: out,
                        a: p.w, lda: k, b: dyn, ldb: l, c: scratch, ldc: l, configuration: configuration)
                    dxn.update(repeating: 0, count: g.imageCount)
                    g.col2im(columnsIn: scratch, leadingDimension: l, addingInto: dxn)
                }
            }
            if let weightSum, let weightKernel {
                weightKernel.accumulateParameterGradients(
                    x: xn, outputGradient: dyn, outputChannels: out, weightGradient: weightSum, biasGradient: biasSum, scratch: scratch)
                continue
            }
            if let weightSum {
                g.im2col(image: xn, columnsOut: scratch, leadingDimension: l)
                gemm(
                    transposeA: false, transposeB: true, m: out, n: k, k: l,
                    a: dyn, lda: l, b: scratch, ldb: l, beta: 1, c: weightSum, ldc: k, configuration: configuration)
            }
            if let biasSum {
                for o in 0..<out { biasSum[o] += Double(vectorSum(dyn + o * l, count: l)) }
            }
        }
    }
}

/// Operand pointers shared by the threads of one convolution call (each thread touches disjoint
/// samples of `out`).
private struct ConvPointers: @unchecked Sendable {
    let x: UnsafePointer<Float>
    let w: UnsafePointer<Float>
    let dy: UnsafePointer<Float>
    let out: UnsafeMutablePointer<Float>
}

/// Per-thread parameter-gradient sums (nil when that gradient is not accumulated), and the transposed,
/// flipped weights of the direct input-gradient kernel (nil when not used).
private struct ConvSums: @unchecked Sendable {
    let weight: UnsafeMutablePointer<Float>?
    let bias: UnsafeMutablePointer<Double>?
    let flippedWeight: UnsafePointer<Float>?
}
