import CSquisherKernels

/// Direct 3x3, stride-1 convolution kernels for one `[channels, height, width]` sample: no im2col
/// matrix and no generic GEMM, for layers with few input channels, where the column matrix has only
/// `9·channels` rows and a packed GEMM runs far below peak (C micro-kernels in `CSquisherKernels`,
/// AVX-512 / AVX2+FMA / portable, chosen at run time).
///
///     y[o, oh, ow]  = bias[o] + Σ_{c,i,j} w[o, c, i, j] · x[c, oh - padH + i, ow - padW + j]
///     dW[o, c, i, j] += Σ_{oh,ow} dy[o, oh, ow] · x[c, oh - padH + i, ow - padW + j]
///     db[o]          += Σ_{oh,ow} dy[o, oh, ow]
///
/// with `x` zero outside the image, `outputHeight = height + 2·padH - 2`, `outputWidth = width + 2·padW - 2`.
/// Sums over one sample are float32 (fused multiply-add where the CPU has it); the bias sum of a
/// sample is added to a `Double` accumulator.
public struct DirectConvolution3x3: Sendable, Hashable {
    /// The window geometry (3x3, stride 1).
    public let geometry: Im2Col

    /// The direct kernel for `geometry`, or nil when the window is not 3x3 with stride 1.
    public init?(geometry: Im2Col) {
        guard geometry.kernelHeight == 3, geometry.kernelWidth == 3, geometry.strideHeight == 1,
            geometry.strideWidth == 1
        else { return nil }
        self.geometry = geometry
    }

    /// Floats of scratch space one call needs (the zero-padded copy of a sample); one buffer per thread.
    public var scratchCount: Int {
        csq_conv3x3_scratch_count(geometry.channels, geometry.height, geometry.width, geometry.paddingHeight, geometry.paddingWidth)
    }

    /// Writes `y [outputChannels, outH, outW]` for one sample `x [channels, height, width]`, weights
    /// `w [outputChannels, channels, 3, 3]` and `bias [outputChannels]` (nil: no bias).
    /// `isaLevel` caps the instruction set (tests compare every level).
    public func forward(
        x: UnsafePointer<Float>, weight w: UnsafePointer<Float>, bias: UnsafePointer<Float>?, outputChannels: Int,
        y: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>, isaLevel: Int = GEMMKernelInfo.cpuISALevel
    ) {
        let g = geometry
        csq_conv3x3_forward(
            Int32(isaLevel), g.channels, g.height, g.width, g.paddingHeight, g.paddingWidth, outputChannels,
            x, w, bias, y, scratch)
    }

    /// Adds one sample's weight gradient into `weightGradient [outputChannels, channels, 3, 3]` and, when
    /// given, its bias gradient into `biasGradient [outputChannels]` (Double), from the sample `x` and its
    /// output gradient `dy [outputChannels, outH, outW]`.
    public func accumulateParameterGradients(
        x: UnsafePointer<Float>, outputGradient dy: UnsafePointer<Float>, outputChannels: Int,
        weightGradient: UnsafeMutablePointer<Float>, biasGradient: UnsafeMutablePointer<Double>?,
        scratch: UnsafeMutablePointer<Float>, isaLevel: Int = GEMMKernelInfo.cpuISALevel
    ) {
        let g = geometry
        csq_conv3x3_weight_gradient(
            Int32(isaLevel), g.channels, g.height, g.width, g.paddingHeight, g.paddingWidth, outputChannels,
            x, dy, weightGradient, biasGradient, scratch)
    }

    /// The direct kernel that computes this convolution's input gradient, or nil when a padding exceeds 2:
    ///
    ///     dx[c, h, w] = Σ_{o,i,j} w[o, c, i, j] · dy[o, h + padH - i, w + padW - j]
    ///
    /// is a 3x3 convolution of the output gradient `[outputChannels, outH, outW]` (as its channels) with
    /// padding `2 - pad` and the weights of ``transposedFlippedWeights(_:outputChannels:inputChannels:)``,
    /// whose output is `[channels, height, width]`.
    public func inputGradientKernel(outputChannels: Int) -> DirectConvolution3x3? {
        let g = geometry
        guard g.paddingHeight <= 2, g.paddingWidth <= 2,
            let transposed = try? Im2Col(
                channels: outputChannels, height: g.outputHeight, width: g.outputWidth, kernelHeight: 3, kernelWidth: 3,
                paddingHeight: 2 - g.paddingHeight, paddingWidth: 2 - g.paddingWidth),
            transposed.outputHeight == g.height, transposed.outputWidth == g.width
        else { return nil }
        return DirectConvolution3x3(geometry: transposed)
    }

    /// `w'[c, o, i, j] = w[o, c, 2 - i, 2 - j]` for weights `[outputChannels, inputChannels, 3, 3]`: the
    /// weights of the input-gradient convolution (``inputGradientKernel(outputChannels:)``).
    public static func transposedFlippedWeights(_ w: UnsafePointer<Float>, outputChannels: Int, inputChannels: Int) -> [Float] {
        [Float](unsafeUninitializedCapacity: outputChannels * inputChannels * 9) { buffer, initialized in
            for o in 0..<outputChannels {
                for c in 0..<inputChannels {
                    for t in 0..<9 { buffer[(c * outputChannels + o) * 9 + 8 - t] = w[(o * inputChannels + c) * 9 + t] }
                }
            }
            initialized = outputChannels * inputChannels * 9
        }
    }
}
