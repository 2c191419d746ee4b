import SquisherTensor

/// 2-D average pooling over NCHW images, as PyTorch's `nn.AvgPool2d(kernel_size, stride)` with
/// padding 0 and floor rounding:
///
///     y[n, c, oh, ow] = (1 / (kernelH * kernelW)) * sum_{i, j} x[n, c, oh * strideH + i, ow * strideW + j]
///
/// - Input `[N, C, H, W]`; output `[N, C, outH, outW]`, `outH = (H - kernelH) / strideH + 1` (floor).
/// - Gradient: each output's gradient divided by `kernelH * kernelW`, spread over its window.
/// - Planes (`N·C` of them) are split over the threads (``parallelChunks(count:alignment:minimumPerThread:_:)``);
///   the output and input-gradient memory is reused across passes (``ReusableTensor``).
public final class AvgPool2d: Layer, CustomStringConvertible {
    public let typeName = "AvgPool2d"
    /// Window size (height, width).
    public let kernelSize: (height: Int, width: Int)
    /// Step between windows (height, width); defaults to the kernel size.
    public let stride: (height: Int, width: Int)
    public var localParameters: [(name: String, parameter: Parameter)] { [] }

    private var cachedInputShape: [Int]?
    private var cachedGeometry: Im2Col?
    /// Output and input-gradient memory, reused across passes.
    private var outputBuffer = ReusableTensor()
    private var gradientBuffer = ReusableTensor()

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
        let window = PoolingWindow(geometry: g, kernelSize: kernelSize, stride: stride)
        // Every output is written: no zero fill. Planes are split over the threads.
        let output = outputBuffer.make(shape: [input.shape[0], input.shape[1], g.outputHeight, g.outputWidth]) { y in
            input.withUnsafeBufferPointer { x in
                guard let xBase = x.baseAddress, let yBase = y.baseAddress else { return }
                let (source, target) = (SendablePointer(xBase), SendablePointer(yBase))
                parallelChunks(count: planes, alignment: 1, minimumPerThread: window.minimumPlanesPerThread) { first, last in
                    for plane in first..<last {
                        window.average(source.pointer + plane * window.inputCount, into: target.pointer + plane * window.outputCount)
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
        try outputGradient.checkShape([shape[0], shape[1], g.outputHeight, g.outputWidth], "\(description) backward (output gradient)")
        let planes = shape[0] * shape[1]
        let window = PoolingWindow(geometry: g, kernelSize: kernelSize, stride: stride)
        // Each thread zeroes and then accumulates into its own planes (windows may overlap within a plane).
        return gradientBuffer.make(shape: shape) { dx in
            outputGradient.withUnsafeBufferPointer { dy in
                guard let dxBase = dx.baseAddress, let dyBase = dy.baseAddress else {
                    dx.update(repeating: 0)
                    return
                }
                let (target, gradient) = (SendablePointer(dxBase), SendablePointer(dyBase))
                parallelChunks(count: planes, alignment: 1, minimumPerThread: window.minimumPlanesPerThread) { first, last in
                    for plane in first..<last {
                        window.spread(gradient.pointer + plane * window.outputCount, into: target.pointer + plane * window.inputCount)
                    }
                }
            }
        }
    }
}

/// The windows of average pooling over one plane `[height, width]`, with the per-plane kernels.
struct PoolingWindow: Sendable {
    let height: Int, width: Int, outputHeight: Int, outputWidth: Int
    let kernelHeight: Int, kernelWidth: Int, strideHeight: Int, strideWidth: Int
    /// `1 / (kernelHeight · kernelWidth)`.
    let scale: Float

    init(geometry g: Im2Col, kernelSize: (height: Int, width: Int), stride: (height: Int, width: Int)) {
        (height, width, outputHeight, outputWidth) = (g.height, g.width, g.outputHeight, g.outputWidth)
        (kernelHeight, kernelWidth, strideHeight, strideWidth) = (kernelSize.height, kernelSize.width, stride.height, stride.width)
        scale = 1 / Float(kernelSize.height * kernelSize.width)
    }

    var inputCount: Int { height * width }
    var outputCount: Int { outputHeight * outputWidth }
    /// Planes per thread below which one thread does all (about 32 K input scalars per thread).
    var minimumPlanesPerThread: Int { max(1, (1 << 15) / max(1, inputCount)) }

    /// `y[r, c] = scale · Σ_{i, j} x[r·strideH + i, c·strideW + j]` for one plane.
    func average(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>) {
        for r in 0..<outputHeight {
            for c in 0..<outputWidth {
                var total: Float = 0
                for i in 0..<kernelHeight {
                    let row = x + (r * strideHeight + i) * width + c * strideWidth
                    for j in 0..<kernelWidth { total += row[j] }
                }
                y[r * outputWidth + c] = total * scale
            }
        }
    }

    /// The input gradient of one plane: zeroed, then each `scale · dy[r, c]` added over its window.
    func spread(_ dy: UnsafePointer<Float>, into dx: UnsafeMutablePointer<Float>) {
        dx.update(repeating: 0, count: inputCount)
        for r in 0..<outputHeight {
            for c in 0..<outputWidth {
                let share = dy[r * outputWidth + c] * scale
                for i in 0..<kernelHeight {
                    let row = dx + (r * strideHeight + i) * width + c * strideWidth
                    for j in 0..<kernelWidth { row[j] += share }
                }
            }
        }
    }
}
