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
/// Computed as one matrix product per batch: the im2col matrices of all samples are placed side by
/// side (``Im2Col``), `Y[out, N*L] = W[out, fanIn] · X_col[fanIn, N*L]` with `L = outH * outW`.
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

    /// Scratch memory reused across calls (column matrices and gradient blocks), so that repeated
    /// forwards and backwards do not allocate and page-fault megabytes each time.
    private var workspace: [Float] = []

    /// Samples per block: the block's column matrix `[fanIn, block * L]` holds at most 2^18 floats
    /// (1 MiB, cache-sized) but at least one sample. Each block is one GEMM.
    private func samplesPerBlock(_ g: Im2Col, batch: Int) -> Int {
        Swift.max(1, Swift.min(batch, (1 << 18) / Swift.max(g.rows * g.columns, 1)))
    }

    /// Runs `body` with the workspace grown to at least `count` floats (taken out of the object so
    /// that writes through the pointer never trigger a uniqueness check or copy).
    private func withWorkspace<R>(count: Int, _ body: (UnsafeMutablePointer<Float>) -> R) -> R {
        var buffer: [Float] = []
        swap(&buffer, &workspace)
        if buffer.count < count { buffer = [Float](repeating: 0, count: count) }
        defer { swap(&buffer, &workspace) }
        return buffer.withUnsafeMutableBufferPointer { body($0.baseAddress!) }
    }

    /// im2col of samples `first ..< first + count` side by side: `[fanIn, count * L]`, sample
    /// `first + s` in columns `s*L ..< (s+1)*L`.
    private func blockColumns(_ x: UnsafePointer<Float>, _ g: Im2Col, first: Int, count: Int, into columns: UnsafeMutablePointer<Float>) {
        let l = g.columns
        for s in 0..<count {
            g.im2col(image: x + (first + s) * g.imageCount, columnsOut: columns + s * l, leadingDimension: count * l)
        }
    }

    public func forward(_ input: Tensor, mode: LayerMode) throws(TensorError) -> Tensor {
        let g = try geometry(for: input, "forward")
        let batch = input.shape[0]
        cachedInput = input
        cachedGeometry = g
        var output = Tensor(zeros: [batch, outputChannels, g.outputHeight, g.outputWidth])
        guard batch > 0 else { return output }
        let k = g.rows, l = g.columns, out = outputChannels
        let block = samplesPerBlock(g, batch: batch)
        let biasValues = bias?.value.scalars
        withWorkspace(count: (k + out) * block * l) { work in
            input.withUnsafeBufferPointer { x in
                weight.value.withUnsafeBufferPointer { w in
                    output.withUnsafeMutableBufferPointer { result in
                        var first = 0
                        while first < batch {
                            let count = Swift.min(block, batch - first), ld = count * l
                            let columns = work, product = work + k * ld
                            blockColumns(x.baseAddress!, g, first: first, count: count, into: columns)
                            // Y[out, count*L] = W[out, fanIn] · X_col, started from the bias (beta = 1).
                            for o in 0..<out { (product + o * ld).update(repeating: biasValues?[o] ?? 0, count: ld) }
                            gemm(
                                transposeA: false, transposeB: false, m: out, n: ld, k: k,
                                a: w.baseAddress!, lda: k, b: columns, ldb: ld, beta: 1, c: product, ldc: ld)
                            // [out, count, L] -> [count, out, L].
                            for s in 0..<count {
                                for o in 0..<out {
                                    (result.baseAddress! + ((first + s) * out + o) * l).update(from: product + o * ld + s * l, count: l)
                                }
                            }
                            first += count
                        }
                    }
                }
            }
        }
        return output
    }

    public func backward(_ outputGradient: Tensor, accumulateParameterGradients: Bool) throws(TensorError) -> Tensor {
        guard let input = cachedInput, let g = cachedGeometry else {
            throw .invalidArgument(argument: "\(description) backward", reason: "called before forward")
        }
        let batch = input.shape[0]
        try outputGradient.checkShape([batch, outputChannels, g.outputHeight, g.outputWidth], "\(description) backward (output gradient)")
        var inputGradient = Tensor(zeros: input.shape)
        guard batch > 0 else { return inputGradient }
        let k = g.rows, l = g.columns, out = outputChannels
        let block = samplesPerBlock(g, batch: batch)
        let weightGradient = accumulateParameterGradients && weight.requiresGradient
        let biasGradient = accumulateParameterGradients && (bias?.requiresGradient ?? false)
        var weightIncrement = [Float](repeating: 0, count: weightGradient ? out * k : 0)
        var biasIncrement = [Double](repeating: 0, count: biasGradient ? out : 0)
        withWorkspace(count: (out + 2 * k) * block * l) { work in
            input.withUnsafeBufferPointer { x in
                outputGradient.withUnsafeBufferPointer { dy in
                    weight.value.withUnsafeBufferPointer { w in
                        inputGradient.withUnsafeMutableBufferPointer { dx in
                            weightIncrement.withUnsafeMutableBufferPointer { dw in
                                biasIncrement.withUnsafeMutableBufferPointer { db in
                                    var first = 0
                                    while first < batch {
                                        let count = Swift.min(block, batch - first), ld = count * l
                                        let gradientBlock = work, columnGradient = work + out * ld, columns = columnGradient + k * ld
                                        // dY of the block as [out, count*L].
                                        for s in 0..<count {
                                            for o in 0..<out {
                                                (gradientBlock + o * ld + s * l).update(from: dy.baseAddress! + ((first + s) * out + o) * l, count: l)
                                            }
                                        }
                                        // dX_col[fanIn, count*L] = Wᵀ · dY, then col2im per sample.
                                        gemm(
                                            transposeA: true, transposeB: false, m: k, n: ld, k: out,
                                            a: w.baseAddress!, lda: k, b: gradientBlock, ldb: ld, c: columnGradient, ldc: ld)
                                        // Samples write disjoint images: split them between the GEMM's threads
                                        // (the rest of a backward pass runs on the calling thread only).
                                        let threads = Swift.min(count, GEMMConfiguration.current.maximumThreads)
                                        let parts = threads > 1 && count * g.rows * l >= 1 << 16 ? threads : 1
                                        let pointers = Col2imPointers(columns: UnsafePointer(columnGradient), images: dx.baseAddress! + first * g.imageCount)
                                        let fold: @Sendable (Int) -> Void = { part in
                                            for s in (count * part / parts)..<(count * (part + 1) / parts) {
                                                g.col2im(
                                                    columnsIn: pointers.columns + s * l, leadingDimension: ld,
                                                    addingInto: pointers.images + s * g.imageCount)
                                            }
                                        }
                                        if parts > 1 {
                                            DispatchQueue.concurrentPerform(iterations: parts, execute: fold)
                                        } else {
                                            fold(0)
                                        }
                                        if weightGradient {
                                            // dW[out, fanIn] += dY · X_colᵀ: both operands read along rows of length count*L.
                                            blockColumns(x.baseAddress!, g, first: first, count: count, into: columns)
                                            gemm(
                                                transposeA: false, transposeB: true, m: out, n: k, k: ld,
                                                a: gradientBlock, lda: ld, b: columns, ldb: ld, beta: 1, c: dw.baseAddress!, ldc: k)
                                        }
                                        if biasGradient {
                                            for o in 0..<out { db[o] += Double(vectorSum(gradientBlock + o * ld, count: ld)) }
                                        }
                                        first += count
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        if weightGradient { try weight.gradient.addScaled(Tensor(uncheckedShape: weight.value.shape, scalars: weightIncrement)) }
        if biasGradient, let bias {
            try bias.gradient.addScaled(Tensor(uncheckedShape: [out], scalars: biasIncrement.map { Float($0) }))
        }
        return inputGradient
    }
}

/// The operands of the threaded col2im in ``Conv2d/backward(_:accumulateParameterGradients:)``:
/// each thread reads its own samples' columns and writes its own samples' images.
private struct Col2imPointers: @unchecked Sendable {
    let columns: UnsafePointer<Float>
    let images: UnsafeMutablePointer<Float>
}
