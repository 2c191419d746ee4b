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

    /// The im2col matrices of the whole batch side by side: `[fanIn, N * L]`, sample `n` in columns `n*L ..< (n+1)*L`.
    private func batchColumns(_ input: Tensor, _ g: Im2Col) -> [Float] {
        let batch = input.shape[0], l = g.columns, ld = batch * l
        var columns = [Float](repeating: 0, count: g.rows * ld)
        input.withUnsafeBufferPointer { x in
            columns.withUnsafeMutableBufferPointer { c in
                for n in 0..<batch {
                    g.im2col(image: x.baseAddress! + n * g.imageCount, columnsOut: c.baseAddress! + n * l, leadingDimension: ld)
                }
            }
        }
        return columns
    }

    public func forward(_ input: Tensor, mode: LayerMode) throws(TensorError) -> Tensor {
        let g = try geometry(for: input, "forward")
        let batch = input.shape[0]
        cachedInput = input
        cachedGeometry = g
        let outputShape = [batch, outputChannels, g.outputHeight, g.outputWidth]
        guard batch > 0 else { return Tensor(zeros: outputShape) }
        let k = g.rows, l = g.columns, ld = batch * l, out = outputChannels
        let columns = batchColumns(input, g)
        // Y[out, N*L], started from the bias (beta = 1) or zero.
        var product = [Float](repeating: 0, count: out * ld)
        if let bias {
            bias.value.withUnsafeBufferPointer { b in
                product.withUnsafeMutableBufferPointer { y in
                    for o in 0..<out { (y.baseAddress! + o * ld).update(repeating: b[o], count: ld) }
                }
            }
        }
        weight.value.withUnsafeBufferPointer { w in
            columns.withUnsafeBufferPointer { c in
                product.withUnsafeMutableBufferPointer { y in
                    gemm(
                        transposeA: false, transposeB: false, m: out, n: ld, k: k,
                        a: w.baseAddress!, lda: k, b: c.baseAddress!, ldb: ld,
                        beta: 1, c: y.baseAddress!, ldc: ld)
                }
            }
        }
        // [out, N, L] -> [N, out, L].
        var output = Tensor(zeros: outputShape)
        product.withUnsafeBufferPointer { y in
            output.withUnsafeMutableBufferPointer { result in
                for n in 0..<batch {
                    for o in 0..<out {
                        (result.baseAddress! + (n * out + o) * l).update(from: y.baseAddress! + o * ld + n * l, count: l)
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
        let k = g.rows, l = g.columns, ld = batch * l, out = outputChannels
        // dY as [out, N*L].
        var gradientMatrix = [Float](repeating: 0, count: out * ld)
        outputGradient.withUnsafeBufferPointer { dy in
            gradientMatrix.withUnsafeMutableBufferPointer { m in
                for n in 0..<batch {
                    for o in 0..<out {
                        (m.baseAddress! + o * ld + n * l).update(from: dy.baseAddress! + (n * out + o) * l, count: l)
                    }
                }
            }
        }
        // dX_col[fanIn, N*L] = Wᵀ · dY, then col2im per sample.
        var columnGradient = [Float](repeating: 0, count: k * ld)
        weight.value.withUnsafeBufferPointer { w in
            gradientMatrix.withUnsafeBufferPointer { dy in
                columnGradient.withUnsafeMutableBufferPointer { dc in
                    gemm(
                        transposeA: true, transposeB: false, m: k, n: ld, k: out,
                        a: w.baseAddress!, lda: k, b: dy.baseAddress!, ldb: ld,
                        c: dc.baseAddress!, ldc: ld)
                }
            }
        }
        columnGradient.withUnsafeBufferPointer { dc in
            inputGradient.withUnsafeMutableBufferPointer { dx in
                for n in 0..<batch {
                    g.col2im(columnsIn: dc.baseAddress! + n * l, leadingDimension: ld, addingInto: dx.baseAddress! + n * g.imageCount)
                }
            }
        }
        guard accumulateParameterGradients else { return inputGradient }
        if weight.requiresGradient {
            // dW[out, fanIn] += dY[out, N*L] · X_colᵀ; X_col transposed explicitly to [N*L, fanIn]
            // so that the product runs on gemm's unit-stride path.
            let columns = batchColumns(input, g)
            var transposed = [Float](repeating: 0, count: ld * k)
            columns.withUnsafeBufferPointer { c in
                transposed.withUnsafeMutableBufferPointer { t in
                    for r in 0..<k {
                        for p in 0..<ld { t[p * k + r] = c[r * ld + p] }
                    }
                }
            }
            gradientMatrix.withUnsafeBufferPointer { dy in
                transposed.withUnsafeBufferPointer { t in
                    weight.gradient.withUnsafeMutableBufferPointer { dw in
                        gemm(
                            transposeA: false, transposeB: false, m: out, n: k, k: ld,
                            a: dy.baseAddress!, lda: ld, b: t.baseAddress!, ldb: k,
                            beta: 1, c: dw.baseAddress!, ldc: k)
                    }
                }
            }
        }
        if let bias, bias.requiresGradient {
            gradientMatrix.withUnsafeBufferPointer { dy in
                bias.gradient.withUnsafeMutableBufferPointer { db in
                    for o in 0..<out {
                        var total = 0.0
                        for p in 0..<ld { total += Double(dy[o * ld + p]) }
                        db[o] += Float(total)
                    }
                }
            }
        }
        return inputGradient
    }
}
