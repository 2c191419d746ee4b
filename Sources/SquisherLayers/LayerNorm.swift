import SquisherTensor

/// Layer normalization over the trailing `normalizedShape` axes, as PyTorch's
/// `nn.LayerNorm(normalized_shape, eps, elementwise_affine)`. For each row `x` of
/// `D = product(normalizedShape)` scalars:
///
///     mean = (1/D) sum_i x_i,   var = (1/D) sum_i (x_i - mean)^2   (biased, as PyTorch)
///     x̂_i = (x_i - mean) / sqrt(var + eps),   y_i = weight_i * x̂_i + bias_i
///
/// - Input `[N, ..., *normalizedShape]` (at least one leading axis); output the same shape.
/// - `weight` (ones) and `bias` (zeros) have shape `normalizedShape`; absent without affine.
/// - Backward: `dx = rstd * (dx̂ - mean(dx̂) - x̂ * mean(dx̂ * x̂))` with `dx̂ = dy * weight`,
///   `rstd = 1/sqrt(var + eps)`; `dweight += sum_rows dy * x̂`, `dbias += sum_rows dy`.
/// Row loops run 16 lanes at a time with the rows split over the threads (``LayerNormKernels``; AVX-512
/// C kernels where the CPU has them, ``kernelISALevel``); row sums are combined in `Double`. The forward keeps `x̂` (reused by ``normalized(_:)`` for the
/// same input, as the per-sample rule asks after every backward pass).
///
/// Memory reused across passes (``ReusableTensor``): the forward writes its output and `x̂` into the
/// memory of an earlier forward's once nothing else holds it (the output with two slots, since the
/// next layer keeps the last one as its input until its own next forward; `x̂` with one, since only
/// this layer keeps it and a forward lets go of the last one first), and each backward writes its
/// input gradient into the last backward's memory once the caller has let go of it. A tensor the
/// caller still holds (an output, an `x̂` from ``normalized(_:)``, a gradient) is never written, and
/// the backward passes after one forward all read that forward's `x̂`.
public final class LayerNorm: Layer, CustomStringConvertible {
    public let typeName = "LayerNorm"
    /// The trailing axes normalized over.
    public let normalizedShape: [Int]
    /// Added to the variance before the square root.
    public let eps: Float
    /// Per-element scale, `normalizedShape`, initialized to ones (nil without affine).
    public let weight: Parameter?
    /// Per-element offset, `normalizedShape`, initialized to zeros (nil without affine).
    public let bias: Parameter?

    private var cachedInput: Tensor?
    private var cachedNormalized: Tensor?
    private var cachedReciprocalStandardDeviation: [Float] = []
    /// Memory of the outputs (two slots: the next layer holds the last one until its own next forward;
    /// without affine, the output is `x̂`), of `x̂` with affine (one slot: only this layer holds it) and of
    /// the input gradients (one slot), reused across passes.
    private var outputBuffer = ReusableTensor(slots: 2), normalizedBuffer = ReusableTensor(), gradientBuffer = ReusableTensor()

    /// Creates the layer with PyTorch's initialization (weight ones, bias zeros).
    /// - Throws: ``TensorError/invalidArgument(argument:reason:)`` when `normalizedShape` is empty
    ///   or has a non-positive dimension, or `eps` is negative or not finite.
    public init(normalizedShape: [Int], eps: Float = 1e-5, elementwiseAffine: Bool = true) throws(TensorError) {
        guard !normalizedShape.isEmpty, normalizedShape.allSatisfy({ $0 > 0 }) else {
            throw .invalidArgument(argument: "LayerNorm(\(normalizedShape)) normalizedShape", reason: "must be non-empty with positive dimensions")
        }
        guard eps >= 0, eps.isFinite else {
            throw .invalidArgument(argument: "LayerNorm(\(normalizedShape)) eps \(eps)", reason: "must be finite and non-negative")
        }
        self.normalizedShape = normalizedShape
        self.eps = eps
        weight = elementwiseAffine ? Parameter(Tensor(repeating: 1, shape: normalizedShape)) : nil
        bias = elementwiseAffine ? Parameter(Tensor(zeros: normalizedShape)) : nil
    }

    /// PyTorch's repr, e.g. `LayerNorm((4,), eps=1e-05, elementwise_affine=True)`; names the layer in errors.
    public var description: String {
        let shape = normalizedShape.count == 1 ? "(\(normalizedShape[0]),)" : "(" + normalizedShape.map(String.init).joined(separator: ", ") + ")"
        return "LayerNorm(\(shape), eps=\(eps), elementwise_affine=\(weight == nil ? "False" : "True"))"
    }

    public var localParameters: [(name: String, parameter: Parameter)] {
        guard let weight, let bias else { return [] }
        return [("weight", weight), ("bias", bias)]
    }

    /// Scalars per normalized row: `product(normalizedShape)`.
    public var featureCount: Int { normalizedShape.reduce(1, *) }

    /// Instruction-set level of the row kernels: 3 (the default where the CPU has AVX-512F) runs the C
    /// kernels `csq_layernorm_*_avx512`, lower levels the Swift lanes (as ``GEMMConfiguration/isaLevel``).
    /// Lowering it is for tests and benchmarks; the two agree to float32 roundoff.
    public var kernelISALevel: Int = GEMMKernelInfo.cpuISALevel

    private var usesVectorKernels: Bool { VectorMath.usesAVX512Kernels(level: kernelISALevel) }

    private func checkInput(_ input: Tensor, _ operation: String) throws(TensorError) {
        guard input.rank > normalizedShape.count, Array(input.shape.suffix(normalizedShape.count)) == normalizedShape else {
            throw .shapeMismatch(
                operation: "\(description) \(operation)",
                expected: "input [N, ..., \(normalizedShape.map(String.init).joined(separator: ", "))]", actual: input.shape)
        }
    }

    /// Runs the row kernels over `input` (`rows > 0` rows): `x̂` into `normalized`, and with `output` the
    /// affine map into it; returns the per-row `1/sqrt(var + eps)`.
    private func normalizeRows(_ input: Tensor, rows: Int, into normalized: UnsafeMutableBufferPointer<Float>, output: UnsafeMutableBufferPointer<Float>?) -> [Float] {
        let d = featureCount, eps = eps, vector = usesVectorKernels
        var reciprocal = [Float](repeating: 0, count: rows)
        input.withUnsafeBufferPointer { x in
            reciprocal.withUnsafeMutableBufferPointer { rstd in
                guard let output, let weight, let bias else {
                    LayerNormKernels.forward(x.baseAddress!, rows: rows, d: d, eps: eps, normalized: normalized.baseAddress!, reciprocal: rstd.baseAddress!, affine: nil, vector: vector)
                    return
                }
                weight.value.withUnsafeBufferPointer { w in
                    bias.value.withUnsafeBufferPointer { b in
                        LayerNormKernels.forward(
                            x.baseAddress!, rows: rows, d: d, eps: eps, normalized: normalized.baseAddress!, reciprocal: rstd.baseAddress!,
                            affine: (w.baseAddress!, b.baseAddress!, output.baseAddress!), vector: vector)
                    }
                }
            }
        }
        return reciprocal
    }

    /// The normalized input `x̂ = (x - mean) / sqrt(var + eps)` before the affine map, same shape
    /// as the input (what a per-sample estimator needs: the per-sample weight gradient is
    /// `sum over positions of outputGradient * x̂`, the bias gradient `sum of outputGradient`).
    /// - Throws: ``TensorError/shapeMismatch(operation:expected:actual:)`` naming the layer when the
    ///   trailing axes are not `normalizedShape`.
    public func normalized(_ input: Tensor) throws(TensorError) -> Tensor {
        try checkInput(input, "normalized")
        // The input of the last forward (compared by storage first, so this is O(1) for it): its x̂ is cached.
        if let cachedNormalized, let cachedInput, cachedInput == input { return cachedNormalized }
        let rows = input.count / featureCount
        guard rows > 0 else { return input }
        // Fresh memory: the forward's x̂ stays cached for the backward passes.
        return Tensor(uninitializedShape: input.shape) { xhat in _ = normalizeRows(input, rows: rows, into: xhat, output: nil) }
    }

    /// The affine output (`x̂` itself without affine), written into the memory of an earlier output once
    /// nothing else holds it; `x̂` likewise into the last forward's, whose cache this lets go of first.
    public func forward(_ input: Tensor, mode: LayerMode) throws(TensorError) -> Tensor {
        try checkInput(input, "forward")
        let rows = input.count / featureCount
        guard rows > 0 else {
            (cachedInput, cachedNormalized, cachedReciprocalStandardDeviation) = (input, input, [])
            return input
        }
        cachedNormalized = nil  // only this layer holds the last x̂: its memory can then be reused
        var normalized = Tensor(zeros: [0]), reciprocal: [Float] = []
        let output: Tensor
        if weight != nil, bias != nil {
            output = outputBuffer.make(shape: input.shape) { y in
                normalized = normalizedBuffer.make(shape: input.shape) { xhat in reciprocal = normalizeRows(input, rows: rows, into: xhat, output: y) }
            }
        } else {
            output = outputBuffer.make(shape: input.shape) { xhat in reciprocal = normalizeRows(input, rows: rows, into: xhat, output: nil) }
            normalized = output
        }
        cachedInput = input
        cachedNormalized = normalized
        cachedReciprocalStandardDeviation = reciprocal
        return output
    }

    public func backward(_ outputGradient: Tensor, accumulateParameterGradients: Bool) throws(TensorError) -> Tensor {
        guard let normalized = cachedNormalized else {
            throw .invalidArgument(argument: "\(description) backward", reason: "called before forward")
        }
        try outputGradient.checkShape(normalized.shape, "\(description) backward (output gradient)")
        let d = featureCount, rows = normalized.count / d, vector = usesVectorKernels
        guard rows > 0 else { return outputGradient }
        // dy copied into the last backward's memory once the caller has let go of it, then transformed in place.
        let inputGradient = gradientBuffer.make(shape: normalized.shape) { g in
            outputGradient.withUnsafeBufferPointer { dy in g.baseAddress!.update(from: dy.baseAddress!, count: g.count) }
            normalized.withUnsafeBufferPointer { xhat in
                cachedReciprocalStandardDeviation.withUnsafeBufferPointer { rstd in
                    if let weight {
                        weight.value.withUnsafeBufferPointer { w in
                            LayerNormKernels.inputGradient(g.baseAddress!, normalized: xhat.baseAddress!, reciprocal: rstd.baseAddress!, weight: w.baseAddress!, rows: rows, d: d, vector: vector)
                        }
                    } else {
                        LayerNormKernels.inputGradient(g.baseAddress!, normalized: xhat.baseAddress!, reciprocal: rstd.baseAddress!, weight: nil, rows: rows, d: d, vector: vector)
                    }
                }
            }
        }
        if accumulateParameterGradients, let weight, let bias, weight.requiresGradient || bias.requiresGradient {
            let (weightGradient, biasGradient) = normalized.withUnsafeBufferPointer { xhat in
                outputGradient.withUnsafeBufferPointer { dy in
                    LayerNormKernels.parameterGradients(dy.baseAddress!, normalized: xhat.baseAddress!, rows: rows, d: d, vector: vector)
                }
            }
            if weight.requiresGradient {
                weight.gradient.withUnsafeMutableBufferPointer { g in for i in 0..<d { g[i] += Float(weightGradient[i]) } }
            }
            if bias.requiresGradient {
                bias.gradient.withUnsafeMutableBufferPointer { g in for i in 0..<d { g[i] += Float(biasGradient[i]) } }
            }
        }
        return inputGradient
    }
}
