import SquisherTensor

/// The rectifier `max(0, x)`, element-wise (PyTorch's `nn.ReLU`); the derivative at 0 is taken as 0.
/// A NaN input stays NaN (as PyTorch), so a diverged model is not silently masked; its gradient is 0.
/// Large tensors are split over the threads (``parallelChunks(count:alignment:minimumPerThread:_:)``),
/// 16 lanes at a time. The backward reads the output (`y > 0` exactly where `x > 0`, NaN included), so
/// the layer does not keep its input alive; the output and input-gradient memory is reused across
/// passes (``ReusableTensor``).
public final class ReLU: Layer {
    public let typeName = "ReLU"
    public var localParameters: [(name: String, parameter: Parameter)] { [] }
    private var cachedOutput: Tensor?
    private var outputBuffer = ReusableTensor()
    private var gradientBuffer = ReusableTensor()

    /// Creates the layer.
    public init() {}

    public func forward(_ input: Tensor, mode: LayerMode) throws(TensorError) -> Tensor {
        cachedOutput = nil
        let output = outputBuffer.make(shape: input.shape) { y in
            input.withUnsafeBufferPointer { x in
                guard let xBase = x.baseAddress, let yBase = y.baseAddress else { return }
                let (source, target) = (SendablePointer(xBase), SendablePointer(yBase))
                parallelChunks(count: x.count) { start, end in rectify(source.pointer + start, into: target.pointer + start, count: end - start) }
            }
        }
        cachedOutput = output
        return output
    }

    public func backward(_ outputGradient: Tensor, accumulateParameterGradients: Bool) throws(TensorError) -> Tensor {
        guard let output = cachedOutput else { throw .invalidArgument(argument: "ReLU backward", reason: "called before forward") }
        try outputGradient.checkShape(output.shape, "ReLU backward (output gradient)")
        return gradientBuffer.make(shape: output.shape) { dx in
            output.withUnsafeBufferPointer { y in
                outputGradient.withUnsafeBufferPointer { dy in
                    guard let yBase = y.baseAddress, let dyBase = dy.baseAddress, let dxBase = dx.baseAddress else { return }
                    let (source, gradient, target) = (SendablePointer(yBase), SendablePointer(dyBase), SendablePointer(dxBase))
                    parallelChunks(count: y.count) { start, end in
                        maskGradient(gradient.pointer + start, where: source.pointer + start, into: target.pointer + start, count: end - start)
                    }
                }
            }
        }
    }
}

/// `y[i] = x[i] > 0 || x[i].isNaN ? x[i] : 0` (equivalently: 0 where `x[i] <= 0`).
func rectify(_ x: UnsafeMutablePointer<Float>, into y: UnsafeMutablePointer<Float>, count: Int) {
    var i = 0
    while i + 16 <= count {
        let v = UnsafeRawPointer(x + i).loadUnaligned(as: SIMD16<Float>.self)
        UnsafeMutableRawPointer(y + i).storeBytes(of: v.replacing(with: 0, where: v .<= 0), as: SIMD16<Float>.self)
        i += 16
    }
    while i < count {
        y[i] = x[i] <= 0 ? 0 : x[i]
        i += 1
    }
}

/// `dx[i] = x[i] > 0 ? dy[i] : 0` (a NaN passes no gradient); `x` may be the ReLU's input or its output.
func maskGradient(_ dy: UnsafeMutablePointer<Float>, where x: UnsafeMutablePointer<Float>, into dx: UnsafeMutablePointer<Float>, count: Int) {
    var i = 0
    while i + 16 <= count {
        let v = UnsafeRawPointer(x + i).loadUnaligned(as: SIMD16<Float>.self)
        let g = UnsafeRawPointer(dy + i).loadUnaligned(as: SIMD16<Float>.self)
        UnsafeMutableRawPointer(dx + i).storeBytes(of: SIMD16<Float>(repeating: 0).replacing(with: g, where: v .> 0), as: SIMD16<Float>.self)
        i += 16
    }
    while i < count {
        dx[i] = x[i] > 0 ? dy[i] : 0
        i += 1
    }
}
