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
    /// Output and input-gradient memory, reused across passes.
    private var outputBuffer = ReusableTensor()
    private var gradientBuffer = ReusableTensor()

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

    /// For the 2x2, stride-2 fast path: each output's window position of its maximum (0...3, row-major).
    private var cachedPositions: [UInt8] = []

    /// Whether the window is 2x2 with stride 2 (the common case, with a SIMD path).
    private var isTwoByTwo: Bool {
        kernelSize.height == 2 && kernelSize.width == 2 && stride.height == 2 && stride.width == 2
    }

    public func forward(_ input: Tensor, mode: LayerMode) throws(TensorError) -> Tensor {
        let g = try poolingGeometry(input, kernelSize: kernelSize, stride: stride, layer: description)
        let planes = input.shape[0] * input.shape[1]
        let (h, w, oh, ow) = (g.height, g.width, g.outputHeight, g.outputWidth)
        if isTwoByTwo {
            // The positions buffer is reused across passes of the same shape (the layer holds its only reference).
            if cachedPositions.count != planes * oh * ow { cachedPositions = [UInt8](repeating: 0, count: planes * oh * ow) }
            // Every output is written by the kernel: no zero fill. Planes are split over the threads.
            let output = outputBuffer.make(shape: [input.shape[0], input.shape[1], oh, ow]) { y in
                input.withUnsafeBufferPointer { x in
                    cachedPositions.withUnsafeMutableBufferPointer { p in
                        guard let xBase = x.baseAddress, let yBase = y.baseAddress, let pBase = p.baseAddress else { return }
                        let (source, target, place) = (SendablePointer(xBase), SendablePointer(yBase), SendablePointer(pBase))
                        parallelChunks(count: planes, alignment: 1, minimumPerThread: max(1, (1 << 15) / (h * w))) { first, last in
                            maxPool2x2(
                                source.pointer + first * h * w, planes: last - first, height: h, width: w,
                                into: target.pointer + first * oh * ow, positions: place.pointer + first * oh * ow)
                        }
                    }
                }
            }
            cachedInputShape = input.shape
            cachedGeometry = g
            cachedArgmax = []
            return output
        }
        cachedPositions = []
        var argmax = [Int](repeating: 0, count: planes * oh * ow)
        let output = outputBuffer.make(shape: [input.shape[0], input.shape[1], oh, ow]) { y in
            input.withUnsafeBufferPointer { x in
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
        if isTwoByTwo && !cachedPositions.isEmpty || outputGradient.count == 0 {
            let (h, w, oh, ow) = (g.height, g.width, g.outputHeight, g.outputWidth)
            let planes = shape[0] * shape[1]
            // Each thread writes whole 2x2 windows of its planes (the gradient at the maximum's place, zeros
            // elsewhere; a last odd row or column, outside every window, is zeroed): one pass, no zero fill.
            return gradientBuffer.make(shape: shape) { dx in
                outputGradient.withUnsafeBufferPointer { dy in
                    cachedPositions.withUnsafeBufferPointer { p in
                        guard let dxBase = dx.baseAddress, let dyBase = dy.baseAddress, let pBase = p.baseAddress else {
                            dx.update(repeating: 0)
                            return
                        }
                        let (target, gradient, place) = (SendablePointer(dxBase), SendablePointer(dyBase), SendablePointer(pBase))
                        parallelChunks(count: planes, alignment: 1, minimumPerThread: max(1, (1 << 15) / (h * w))) { first, last in
                            for plane in first..<last {
                                unpool2x2(
                                    gradient.pointer + plane * oh * ow, positions: place.pointer + plane * oh * ow,
                                    height: h, width: w, into: target.pointer + plane * h * w)
                            }
                        }
                    }
                }
            }
        }
        return gradientBuffer.make(shape: shape) { dx in
            dx.update(repeating: 0)
            outputGradient.withUnsafeBufferPointer { dy in
                cachedArgmax.withUnsafeBufferPointer { indices in
                    for o in 0..<indices.count { dx[indices[o]] += dy[o] }
                }
            }
        }
    }
}

/// 2x2, stride-2 max pooling of `planes` images `[height, width]` (floor), 8 outputs at a time:
/// `y` gets each window's maximum and `positions` its place in the window (0 = top left, 1 = top right,
/// 2 = bottom left, 3 = bottom right). Ties go to the first maximum in window order and a NaN counts as
/// the maximum (the first NaN wins), as the generic path and PyTorch's CPU kernel.
func maxPool2x2(
    _ x: UnsafePointer<Float>, planes: Int, height h: Int, width w: Int,
    into y: UnsafeMutablePointer<Float>, positions: UnsafeMutablePointer<UInt8>
) {
    let oh = h / 2, ow = w / 2
    @inline(__always) func takes(_ v: SIMD8<Float>, over best: SIMD8<Float>) -> SIMDMask<SIMD8<Int32>> {
        (v .> best) .| ((v .!= v) .& (best .== best))
    }
    // A vector step may read past the end of its row pair (into the next rows) and write past the end
    // of its output row (outputs that the next row overwrites in order); it only must stay inside the
    // buffers, which the tail of the last rows does with scalar code.
    let inputEnd = x + planes * h * w, outputEnd = y + planes * oh * ow
    for plane in 0..<planes {
        for r in 0..<oh {
            let top = x + plane * h * w + 2 * r * w, bottom = top + w
            let out = y + (plane * oh + r) * ow, place = positions + (plane * oh + r) * ow
            var c = 0
            while c < ow, bottom + 2 * c + 16 <= inputEnd, out + c + 8 <= outputEnd {
                let upper = UnsafeRawPointer(top + 2 * c).loadUnaligned(as: SIMD16<Float>.self)
                let lower = UnsafeRawPointer(bottom + 2 * c).loadUnaligned(as: SIMD16<Float>.self)
                var best = upper.evenHalf, index = SIMD8<Int32>(repeating: 0)
                var candidate = upper.oddHalf
                var mask = takes(candidate, over: best)
                best.replace(with: candidate, where: mask); index.replace(with: 1, where: mask)
                candidate = lower.evenHalf
                mask = takes(candidate, over: best)
                best.replace(with: candidate, where: mask); index.replace(with: 2, where: mask)
                candidate = lower.oddHalf
                mask = takes(candidate, over: best)
                best.replace(with: candidate, where: mask); index.replace(with: 3, where: mask)
                UnsafeMutableRawPointer(out + c).storeBytes(of: best, as: SIMD8<Float>.self)
                UnsafeMutableRawPointer(place + c).storeBytes(of: SIMD8<UInt8>(truncatingIfNeeded: index), as: SIMD8<UInt8>.self)
                c += 8
            }
            while c < ow {
                var best = top[2 * c], index: UInt8 = 0
                @inline(__always) func consider(_ value: Float, _ k: UInt8) {
                    if value > best || (value.isNaN && !best.isNaN) { best = value; index = k }
                }
                consider(top[2 * c + 1], 1)
                consider(bottom[2 * c], 2)
                consider(bottom[2 * c + 1], 3)
                out[c] = best
                place[c] = index
                c += 1
            }
        }
    }
}

/// The input gradient of 2x2, stride-2 max pooling for one plane `[height, width]`: each output's
/// gradient `dy[r, c]` goes to its window's place `positions[r, c]` (0...3, row-major), every other
/// element of the plane is set to zero.
func unpool2x2(
    _ dy: UnsafeMutablePointer<Float>, positions: UnsafeMutablePointer<UInt8>, height h: Int, width w: Int,
    into dx: UnsafeMutablePointer<Float>
) {
    let oh = h / 2, ow = w / 2
    for r in 0..<oh {
        let top = dx + 2 * r * w, bottom = top + w
        let g = dy + r * ow, place = positions + r * ow
        for c in 0..<ow {
            let value = g[c], position = place[c]
            top[2 * c] = position == 0 ? value : 0
            top[2 * c + 1] = position == 1 ? value : 0
            bottom[2 * c] = position == 2 ? value : 0
            bottom[2 * c + 1] = position == 3 ? value : 0
        }
        if w % 2 == 1 {
            top[w - 1] = 0
            bottom[w - 1] = 0
        }
    }
    if h % 2 == 1 { (dx + (h - 1) * w).update(repeating: 0, count: w) }
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
