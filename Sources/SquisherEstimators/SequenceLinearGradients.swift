import SquisherLayers
import SquisherTensor

/// Per-sample gradients of an affine map applied at every position of a sequence, `y_t = W x_t + b`
/// (PyTorch `Linear`, weight `[out, in]`) or `y_t = x_t W + b` (HF `Conv1D`, weight `[in, out]`).
///
/// With sample `n`'s input `X_n` `[T, in]` and output gradient `Δ_n` `[T, out]`, its gradient is
/// the **product** `Δ_nᵀ X_n` (`[out, in]`; `X_nᵀ Δ_n` for `[in, out]`) summed over positions before
/// any square, and `Σ_t Δ_n[t]` for the bias. One GEMM per sample, on strided views of the batch
/// (no copies); `visit` receives each sample's weight and bias gradients in scratch buffers that
/// are overwritten by the next sample. The sums of squares (``addSquaredSums(input:outputGradient:scale:weightShape:bias:into:)``)
/// go through ``SequenceLinearSquares``, which squares each product block while it is in cache.
struct SequenceLinearGradients {
    let samples: Int, positions: Int, inFeatures: Int, outFeatures: Int
    /// Weight stored `[in, out]` (HF Conv1D) instead of `[out, in]`.
    let transposed: Bool
    /// Settings of the products of the sums of squares (nil: ``GEMMConfiguration/current``).
    var products: GEMMConfiguration? = nil

    /// Bytes of the two scratch buffers.
    var scratchBytes: Int { 4 * (inFeatures * outFeatures + outFeatures) }

    func forEachSample(
        input: Tensor, outputGradient: Tensor,
        _ visit: (_ sample: Int, _ weight: UnsafePointer<Float>, _ bias: UnsafePointer<Float>) throws -> Void
    ) throws {
        guard input.count == samples * positions * inFeatures, outputGradient.count == samples * positions * outFeatures else {
            throw TensorError.shapeMismatch(
                operation: "per-sample linear gradients", expected: "input [\(samples), \(positions), \(inFeatures)] and output gradient [\(samples), \(positions), \(outFeatures)]",
                actual: outputGradient.shape)
        }
        let weight = UnsafeMutablePointer<Float>.allocate(capacity: max(1, inFeatures * outFeatures))
        let bias = UnsafeMutablePointer<Float>.allocate(capacity: max(1, outFeatures))
        defer { weight.deallocate(); bias.deallocate() }
        let (t, i, o) = (positions, inFeatures, outFeatures)
        try input.withUnsafeBufferPointer { x in
            try outputGradient.withUnsafeBufferPointer { d in
                for sample in 0..<samples {
                    let xs = x.baseAddress! + sample * t * i, ds = d.baseAddress! + sample * t * o
                    if transposed {
                        gemm(transposeA: true, transposeB: false, m: i, n: o, k: t, a: xs, lda: i, b: ds, ldb: o, c: weight, ldc: o)
                    } else {
                        gemm(transposeA: true, transposeB: false, m: o, n: i, k: t, a: ds, lda: o, b: xs, ldb: i, c: weight, ldc: i)
                    }
                    bias.update(repeating: 0, count: o)
                    for position in 0..<t { axpy(count: o, alpha: 1, x: ds + position * o, y: bias) }
                    try visit(sample, weight, bias)
                }
            }
        }
    }

    /// Adds `scale · Σ_n (per-sample gradient)²` into `accumulators["weight"]` (shape `weightShape`, the
    /// layer's layout) and, with `bias`, into `accumulators["bias"]` (`[out]`), each created as zeros
    /// where absent; a nil `weightShape` skips the weight. In place (see ``SequenceLinearSquares``).
    /// Returns the bytes of the temporaries it allocated.
    @discardableResult
    func addSquaredSums(
        input: Tensor, outputGradient: Tensor, scale: Float, weightShape: [Int]?, bias: Bool,
        into accumulators: inout [String: Tensor]
    ) throws -> Int {
        guard input.count == samples * positions * inFeatures, outputGradient.count == samples * positions * outFeatures else {
            throw TensorError.shapeMismatch(
                operation: "per-sample linear gradients", expected: "input [\(samples), \(positions), \(inFeatures)] and output gradient [\(samples), \(positions), \(outFeatures)]",
                actual: outputGradient.shape)
        }
        // Taken out of the dictionary while written, so that each is the only reference to its storage.
        var weightSums = weightShape.map { accumulators.removeValue(forKey: "weight") ?? Tensor(zeros: $0) }
        var biasSums = bias ? accumulators.removeValue(forKey: "bias") ?? Tensor(zeros: [outFeatures]) : nil
        if let weightShape, let weightSums { try weightSums.checkShape(weightShape, "accumulated squared weight gradients") }
        if let biasSums { try biasSums.checkShape([outFeatures], "accumulated squared bias gradients") }
        let squares = SequenceLinearSquares(gradients: self)
        var bytes = 0
        func add(_ weight: UnsafeMutablePointer<Float>?, _ bias: UnsafeMutablePointer<Float>?) {
            bytes = squares.add(input: input, outputGradient: outputGradient, scale: scale, weight: weight, bias: bias)
        }
        func withBias(_ weight: UnsafeMutablePointer<Float>?) {
            if biasSums == nil { add(weight, nil) } else { biasSums!.withUnsafeMutableBufferPointer { add(weight, $0.baseAddress) } }
        }
        if weightSums == nil { withBias(nil) } else { weightSums!.withUnsafeMutableBufferPointer { withBias($0.baseAddress) } }
        if let weightSums { accumulators["weight"] = weightSums }
        if let biasSums { accumulators["bias"] = biasSums }
        return bytes
    }

    /// Each sample's gradients, made one sample at a time: `"weight"` (of shape `weight`, when
    /// given) and `"bias"` (`[out]`, when `bias`).
    func perSample(input: Tensor, outputGradient: Tensor, weight weightShape: [Int]?, bias: Bool) throws -> [String: PerSampleGradients] {
        guard input.count == samples * positions * inFeatures, outputGradient.count == samples * positions * outFeatures else {
            throw TensorError.shapeMismatch(
                operation: "per-sample linear gradients", expected: "input [\(samples), \(positions), \(inFeatures)] and output gradient [\(samples), \(positions), \(outFeatures)]",
                actual: outputGradient.shape)
        }
        let (t, i, o, transposed) = (positions, inFeatures, outFeatures, transposed)
        var result: [String: PerSampleGradients] = [:]
        if let weightShape {
            result["weight"] = PerSampleGradients(samples: samples, shape: weightShape) { sample, destination in
                input.withUnsafeBufferPointer { x in
                    outputGradient.withUnsafeBufferPointer { d in
                        let xs = x.baseAddress! + sample * t * i, ds = d.baseAddress! + sample * t * o
                        if transposed {
                            gemm(transposeA: true, transposeB: false, m: i, n: o, k: t, a: xs, lda: i, b: ds, ldb: o, beta: 1, c: destination, ldc: o)
                        } else {
                            gemm(transposeA: true, transposeB: false, m: o, n: i, k: t, a: ds, lda: o, b: xs, ldb: i, beta: 1, c: destination, ldc: i)
                        }
                    }
                }
            }
        }
        if bias {
            result["bias"] = PerSampleGradients(samples: samples, shape: [o]) { sample, destination in
                outputGradient.withUnsafeBufferPointer { d in
                    for position in 0..<t { axpy(count: o, alpha: 1, x: d.baseAddress! + (sample * t + position) * o, y: destination) }
                }
            }
        }
        return result
    }
}
