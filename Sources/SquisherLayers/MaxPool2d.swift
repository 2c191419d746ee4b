import SquisherTensor

/// 2-D max pooling over NCHW images, as PyTorch's `nn.MaxPool2d(kernel_size, stride)` with
/// padding 0, dilation 1 and floor rounding:
///
///     y[n, c, oh, ow] = max_{i, j} x[n, c, oh * strideH + i, ow * strideW + j]
///
/// - Input `[N, C, H, W]`; output `[N, C, outH, outW]`, `outH = (H - kernelH) / strideH + 1` (floor).
/// - Gradient: each output's gradient goes to the position of its maximum. Ties go to the first
///   maximum in row-major window order, and a NaN counts as the maximum, as PyTorch's CPU kernel.
public final class MaxPool2d: Layer, CustomStringConvertible {
    public let typeName = "MaxPool2d"
    /// Window size (height, width).
    public let kernelSize: (height: Int, width: Int)
    /// Step between windows (height, width); defaults to the kernel size.
    public let stride: (height: Int, width: Int)
    public var localParameters: [(name: String, parameter: Parameter)] { [] }

    private var cachedInputShape: [Int]?
    private var cachedGeometry: Im2Col?
    /// For each output element, the flat index of its maximum in the input.
    private var cachedArgmax: [Int] = []

    /// Creates the layer; `stride` defaults to `kernelSize` (PyTorch's `stride=None`).
    /// - Throws: ``TensorError/invalidArgument(argument:reason:)`` when a size is not positive.
    public init(kernelSize: (Int, Int), stride: (Int, Int)? = nil) throws(TensorError) {
        let stride = stride ?? kernelSize
        guard kernelSize.0 > 0, kernelSize.1 > 0, stride.0 > 0, stride.1 > 0 else {
            throw .invalidArgument(argument: "MaxPool2d(kernel_size=\(kernelSize), stride=\(stride))", reason: "kernel size and stride must be positive")
        }
        self.kernelSize = kernelSize
        self.stride = stride
    }

    /// Convenience for square windows and strides.
    /// - Throws: as the initializer taking `(height, width)` pairs.
    public convenience init(kernelSize: Int, stride: Int? = nil) throws(TensorError) {
        try self.init(kernelSize: (kernelSize, kernelSize), stride: stride.map { ($0, $0) })
    }

    /// PyTorch-like repr, e.g. `MaxPool2d(kernel_size=(2, 2), stride=(2, 2))`; names the layer in errors.
    public var description: String {
        "MaxPool2d(kernel_size=(\(kernelSize.height), \(kernelSize.width)), stride=(\(stride.height), \(stride.width)))"
    }

    public func forward(_ input: Tensor, mode: LayerMode) throws(TensorError) -> Tensor {
        let g = try poolingGeometry(input, kernelSize: kernelSize, stride: stride, layer: description)
        let planes = input.shape[0] * input.shape[1]
        let (h, w, oh, ow) = (g.height, g.width, g.outputHeight, g.outputWidth)
        var output = Tensor(zeros: [input.shape[0], input.shape[1], oh, ow])
        var argmax = [Int](repeating: 0, count: planes * oh * ow)
        input.withUnsafeBufferPointer { x in
            output.withUnsafeMutableBufferPointer { y in
                argmax.withUnsafeMutableBufferPointer { indices in
                    for plane in 0..<planes {
                        for r in 0..<oh {
                            for c in 0..<ow {
                                var best = plane * h * w + (r * stride.height) * w + c * stride.width
                                var maximum = x[best]
                                for i in 0..<kernelSize.height {
                                    let rowStart = plane * h * w + (r * stride.height + i) * w + c * stride.width
                                    for j in 0..<kernelSize.width {
                                        let value = x[rowStart + j]
                                        if value > maximum || (value.isNaN && !maximum.isNaN) {
                                            maximum = value
                                            best = rowStart + j
                                        }
                                    }
                                }
                                let o = (plane * oh + r) * ow + c
                                y[o] = maximum
                                indices[o] = best
                            }
                        }
                    }
                }
            }
        }
        cachedInputShape = input.shape
        cachedGeometry = g
        cachedArgmax = argmax
        return output
    }

    public func backward(_ outputGradient: Tensor, accumulateParameterGradients: Bool) throws(TensorError) -> Tensor {
        guard let shape = cachedInputShape, let g = cachedGeometry else {
            throw .invalidArgument(argument: "\(description) backward", reason: "called before forward")
        }
        try outputGradient.checkShape([shape[0], shape[1], g.outputHeight, g.outputWidth], "\(description) backward (output gradient)")
        var inputGradient = Tensor(zeros: shape)
        outputGradient.withUnsafeBufferPointer { dy in
            inputGradient.withUnsafeMutableBufferPointer { dx in
                cachedArgmax.withUnsafeBufferPointer { indices in
                    for o in 0..<indices.count { dx[indices[o]] += dy[o] }
                }
            }
        }
        return inputGradient
    }
}

/// Checks a pooling input `[N, C, H, W]` and returns the window geometry (one channel per plane, no padding).
func poolingGeometry(
    _ input: Tensor, kernelSize: (height: Int, width: Int), stride: (height: Int, width: Int), layer: String
) throws(TensorError) -> Im2Col {
    guard input.rank == 4, input.shape[2] >= kernelSize.height, input.shape[3] >= kernelSize.width,
        input.shape[1] > 0
    else {
        throw .shapeMismatch(
            operation: "\(layer) forward",
            expected: "input [N, C, H, W] with H >= \(kernelSize.height) and W >= \(kernelSize.width)", actual: input.shape)
    }
    return try Im2Col(
        channels: 1, height: input.shape[2], width: input.shape[3], kernelHeight: kernelSize.height,
        kernelWidth: kernelSize.width, strideHeight: stride.height, strideWidth: stride.width)
}
