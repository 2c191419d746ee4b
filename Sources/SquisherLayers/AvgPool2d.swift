import SquisherTensor

/// 2-D average pooling over NCHW images, as PyTorch's `nn.AvgPool2d(kernel_size, stride)` with
/// padding 0 and floor rounding:
///
///     y[n, c, oh, ow] = (1 / (kernelH * kernelW)) * sum_{i, j} x[n, c, oh * strideH + i, ow * strideW + j]
///
/// - Input `[N, C, H, W]`; output `[N, C, outH, outW]`, `outH = (H - kernelH) / strideH + 1` (floor).
/// - Gradient: each output's gradient divided by `kernelH * kernelW`, spread over its window.
public final class AvgPool2d: Layer, CustomStringConvertible {
    public let typeName = "AvgPool2d"
    /// Window size (height, width).
    public let kernelSize: (height: Int, width: Int)
    /// Step between windows (height, width); defaults to the kernel size.
    public let stride: (height: Int, width: Int)
    public var localParameters: [(name: String, parameter: Parameter)] { [] }

    private var cachedInputShape: [Int]?
    private var cachedGeometry: Im2Col?

    /// Creates the layer; `stride` defaults to `kernelSize` (PyTorch's `stride=None`).
    /// - Throws: ``TensorError/invalidArgument(argument:reason:)`` when a size is not positive.
    public init(kernelSize: (Int, Int), stride: (Int, Int)? = nil) throws(TensorError) {
        let stride = stride ?? kernelSize
        guard kernelSize.0 > 0, kernelSize.1 > 0, stride.0 > 0, stride.1 > 0 else {
            throw .invalidArgument(argument: "AvgPool2d(kernel_size=\(kernelSize), stride=\(stride))", reason: "kernel size and stride must be positive")
        }
        self.kernelSize = kernelSize
        self.stride = stride
    }

    /// Convenience for square windows and strides.
    /// - Throws: as the initializer taking `(height, width)` pairs.
    public convenience init(kernelSize: Int, stride: Int? = nil) throws(TensorError) {
        try self.init(kernelSize: (kernelSize, kernelSize), stride: stride.map { ($0, $0) })
    }

    /// PyTorch-like repr, e.g. `AvgPool2d(kernel_size=(2, 2), stride=(2, 2))`; names the layer in errors.
    public var description: String {
        "AvgPool2d(kernel_size=(\(kernelSize.height), \(kernelSize.width)), stride=(\(stride.height), \(stride.width)))"
    }

    public func forward(_ input: Tensor, mode: LayerMode) throws(TensorError) -> Tensor {
        let g = try poolingGeometry(input, kernelSize: kernelSize, stride: stride, layer: description)
        let planes = input.shape[0] * input.shape[1]
        let (h, w, oh, ow) = (g.height, g.width, g.outputHeight, g.outputWidth)
        let scale = 1 / Float(kernelSize.height * kernelSize.width)
        var output = Tensor(zeros: [input.shape[0], input.shape[1], oh, ow])
        input.withUnsafeBufferPointer { x in
            output.withUnsafeMutableBufferPointer { y in
                for plane in 0..<planes {
                    for r in 0..<oh {
                        for c in 0..<ow {
                            var total: Float = 0
                            for i in 0..<kernelSize.height {
                                let rowStart = plane * h * w + (r * stride.height + i) * w + c * stride.width
                                for j in 0..<kernelSize.width { total += x[rowStart + j] }
                            }
                            y[(plane * oh + r) * ow + c] = total * scale
                        }
                    }
                }
            }
        }
        cachedInputShape = input.shape
        cachedGeometry = g
        return output
    }

    public func backward(_ outputGradient: Tensor, accumulateParameterGradients: Bool) throws(TensorError) -> Tensor {
        guard let shape = cachedInputShape, let g = cachedGeometry else {
            throw .invalidArgument(argument: "\(description) backward", reason: "called before forward")
        }
        let (h, w, oh, ow) = (g.height, g.width, g.outputHeight, g.outputWidth)
        try outputGradient.checkShape([shape[0], shape[1], oh, ow], "\(description) backward (output gradient)")
        let planes = shape[0] * shape[1]
        let scale = 1 / Float(kernelSize.height * kernelSize.width)
        var inputGradient = Tensor(zeros: shape)
        outputGradient.withUnsafeBufferPointer { dy in
            inputGradient.withUnsafeMutableBufferPointer { dx in
                for plane in 0..<planes {
                    for r in 0..<oh {
                        for c in 0..<ow {
                            let share = dy[(plane * oh + r) * ow + c] * scale
                            for i in 0..<kernelSize.height {
                                let rowStart = plane * h * w + (r * stride.height + i) * w + c * stride.width
                                for j in 0..<kernelSize.width { dx[rowStart + j] += share }
                            }
                        }
                    }
                }
            }
        }
        return inputGradient
    }
}
