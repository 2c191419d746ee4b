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
/// Row statistics are accumulated in `Double`.
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

    private var cachedNormalized: Tensor?
    private var cachedReciprocalStandardDeviation: [Float] = []

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

    private func checkInput(_ input: Tensor, _ operation: String) throws(TensorError) {
        guard input.rank > normalizedShape.count, Array(input.shape.suffix(normalizedShape.count)) == normalizedShape else {
            throw .shapeMismatch(
                operation: "\(description) \(operation)",
                expected: "input [N, ..., \(normalizedShape.map(String.init).joined(separator: ", "))]", actual: input.shape)
        }
    }

    /// Normalizes rows and returns `x̂` with the per-row `1/sqrt(var + eps)`.
    private func normalize(_ input: Tensor) -> (Tensor, [Float]) {
        let d = featureCount, rows = input.count / d
        var normalized = input
        var reciprocal = [Float](repeating: 0, count: rows)
        normalized.withUnsafeMutableBufferPointer { x in
            for r in 0..<rows {
                let row = x.baseAddress! + r * d
                var total = 0.0
                for i in 0..<d { total += Double(row[i]) }
                let mean = total / Double(d)
                var squares = 0.0
                for i in 0..<d {
                    let centered = Double(row[i]) - mean
                    squares += centered * centered
                }
                let rstd = 1 / (squares / Double(d) + Double(eps)).squareRoot()
                for i in 0..<d { row[i] = Float((Double(row[i]) - mean) * rstd) }
                reciprocal[r] = Float(rstd)
            }
        }
        return (normalized, reciprocal)
    }

    /// The normalized input `x̂ = (x - mean) / sqrt(var + eps)` before the affine map, same shape
    /// as the input (what a per-sample estimator needs: the per-sample weight gradient is
    /// `sum over positions of outputGradient * x̂`, the bias gradient `sum of outputGradient`).
    /// - Throws: ``TensorError/shapeMismatch(operation:expected:actual:)`` naming the layer when the
    ///   trailing axes are not `normalizedShape`.
    public func normalized(_ input: Tensor) throws(TensorError) -> Tensor {
        try checkInput(input, "normalized")
        return normalize(input).0
    }

    public func forward(_ input: Tensor, mode: LayerMode) throws(TensorError) -> Tensor {
        try checkInput(input, "forward")
        let (normalized, reciprocal) = normalize(input)
        cachedNormalized = normalized
        cachedReciprocalStandardDeviation = reciprocal
        guard let weight, let bias else { return normalized }
        let d = featureCount, rows = input.count / d
        var output = normalized
        weight.value.withUnsafeBufferPointer { w in
            bias.value.withUnsafeBufferPointer { b in
                output.withUnsafeMutableBufferPointer { y in
                    for r in 0..<rows {
                        let row = y.baseAddress! + r * d
                        for i in 0..<d { row[i] = row[i] * w[i] + b[i] }
                    }
                }
            }
        }
        return output
    }

    public func backward(_ outputGradient: Tensor, accumulateParameterGradients: Bool) throws(TensorError) -> Tensor {
        guard let normalized = cachedNormalized else {
            throw .invalidArgument(argument: "\(description) backward", reason: "called before forward")
        }
        try outputGradient.checkShape(normalized.shape, "\(description) backward (output gradient)")
        let d = featureCount, rows = normalized.count / d
        let ones = [Float](repeating: 1, count: d)
        let scale = weight?.value.scalars ?? ones
        var inputGradient = outputGradient
        normalized.withUnsafeBufferPointer { xhat in
            scale.withUnsafeBufferPointer { w in
                cachedReciprocalStandardDeviation.withUnsafeBufferPointer { rstd in
                    inputGradient.withUnsafeMutableBufferPointer { g in
                        for r in 0..<rows {
                            let row = g.baseAddress! + r * d, xr = xhat.baseAddress! + r * d
                            var sumDxhat = 0.0, sumDxhatXhat = 0.0
                            for i in 0..<d {
                                let dxhat = Double(row[i] * w[i])
                                sumDxhat += dxhat
                                sumDxhatXhat += dxhat * Double(xr[i])
                            }
                            let meanDxhat = Float(sumDxhat / Double(d)), meanDxhatXhat = Float(sumDxhatXhat / Double(d))
                            for i in 0..<d {
                                row[i] = rstd[r] * (row[i] * w[i] - meanDxhat - xr[i] * meanDxhatXhat)
                            }
                        }
                    }
                }
            }
        }
        if accumulateParameterGradients, let weight, let bias {
            let updateWeight = weight.requiresGradient, updateBias = bias.requiresGradient
            var weightGradient = [Double](repeating: 0, count: d), biasGradient = [Double](repeating: 0, count: d)
            normalized.withUnsafeBufferPointer { xhat in
                outputGradient.withUnsafeBufferPointer { dy in
                    for r in 0..<rows {
                        for i in 0..<d {
                            weightGradient[i] += Double(dy[r * d + i] * xhat[r * d + i])
                            biasGradient[i] += Double(dy[r * d + i])
                        }
                    }
                }
            }
            if updateWeight {
                weight.gradient.withUnsafeMutableBufferPointer { g in for i in 0..<d { g[i] += Float(weightGradient[i]) } }
            }
            if updateBias {
                bias.gradient.withUnsafeMutableBufferPointer { g in for i in 0..<d { g[i] += Float(biasGradient[i]) } }
            }
        }
        return inputGradient
    }
}
