import SquisherTensor

/// The rectifier `max(0, x)`, element-wise (PyTorch's `nn.ReLU`); the derivative at 0 is taken as 0.
/// A NaN input stays NaN (as PyTorch), so a diverged model is not silently masked; its gradient is 0.
/// Large tensors are split over the threads (``parallelChunks(count:alignment:minimumPerThread:_:)``),
/// 16 lanes at a time.
public final class ReLU: Layer {
    public let typeName = "ReLU"
    public var localParameters: [(name: String, parameter: Parameter)] { [] }
    private var cachedInput: Tensor?

    /// Creates the layer.
    public init() {}

    public func forward(_ input: Tensor, mode: LayerMode) throws(TensorError) -> Tensor {
        cachedInput = input
        return Tensor(uninitializedShape: input.shape) { y in
            input.withUnsafeBufferPointer { x in
                guard let xBase = x.baseAddress, let yBase = y.baseAddress else { return }
                let (source, target) = (SendablePointer(xBase), SendablePointer(yBase))
                parallelChunks(count: x.count) { start, end in rectify(source.pointer + start, into: target.pointer + start, count: end - start) }
            }
        }
    }

    public func backward(_ outputGradient: Tensor, accumulateParameterGradients: Bool) throws(TensorError) -> Tensor {
        guard let input = cachedInput else { throw .invalidArgument(argument: "ReLU backward", reason: "called before forward") }
        try outputGradient.checkShape(input.shape, "ReLU backward (output gradient)")
        return Tensor(uninitializedShape: input.shape) { dx in
            input.withUnsafeBufferPointer { x in
                outputGradient.withUnsafeBufferPointer { dy in
                    guard let xBase = x.baseAddress, let dyBase = dy.baseAddress, let dxBase = dx.baseAddress else { return }
                    let (source, gradient, target) = (SendablePointer(xBase), SendablePointer(dyBase), SendablePointer(dxBase))
                    parallelChunks(count: x.count) { start, end in
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

/// `dx[i] = x[i] > 0 ? dy[i] : 0` (a NaN input passes no gradient).
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
