import SquisherTensor

/// A fully connected layer stored transposed, `y = x W + b`, as Hugging Face's `Conv1D` (GPT-2's
/// `c_attn`, `c_proj`, `c_fc`; despite the name it is not a convolution).
///
/// - `weight`: `[inputFeatures, outputFeatures]` (the transpose of `nn.Linear`'s); `bias`: `[outputFeatures]`.
/// - Input `[N, ..., inputFeatures]`, output `[N, ..., outputFeatures]` (acts on the last axis).
/// - Initialization as Hugging Face: weight N(0, 0.02²), bias zeros.
/// - Backward: `dW += Xᵀ Δ`, `db += Σ_rows Δ`, `dX = Δ Wᵀ` (rows = every leading position).
/// - Outputs and input gradients reuse the memory of earlier passes once nothing else holds it
///   (``ReusableTensor``: two slots for the output, which the next layer may keep as its input until its
///   own next forward, one for the input gradient); a tensor the caller still holds is never written.
public final class TransposedLinear: Layer, CustomStringConvertible {
    /// `"Conv1D"`, Hugging Face's class name; keys the per-sample rule.
    public let typeName = "Conv1D"
    /// Length of the last input axis (`nx`).
    public let inputFeatures: Int
    /// Length of the last output axis (`nf`).
    public let outputFeatures: Int
    /// `[inputFeatures, outputFeatures]`.
    public let weight: Parameter
    /// `[outputFeatures]`.
    public let bias: Parameter
    private var cachedInput: Tensor?
    /// Memory of the outputs and input gradients, reused by a later pass once nothing else holds it
    /// (``ReusableTensor``). Two slots for the outputs: `c_attn`'s is kept by the attention as its input
    /// until the attention's next forward, which comes after `c_attn`'s.
    private var outputBuffer = ReusableTensor(slots: 2), inputGradientBuffer = ReusableTensor()

    /// Creates the layer with Hugging Face's initialization drawn from `generator`.
    public init(inputFeatures: Int, outputFeatures: Int, generator: inout SplitMix64) {
        self.inputFeatures = inputFeatures
        self.outputFeatures = outputFeatures
        weight = Parameter(Tensor.normal(shape: [inputFeatures, outputFeatures], using: &generator).map { 0.02 * $0 })
        bias = Parameter(Tensor(zeros: [outputFeatures]))
    }

    /// `Conv1D(nf=out, nx=in)`, Hugging Face's repr; names the layer in errors.
    public var description: String { "Conv1D(nf=\(outputFeatures), nx=\(inputFeatures))" }

    public var localParameters: [(name: String, parameter: Parameter)] { [("weight", weight), ("bias", bias)] }

    public func forward(_ input: Tensor, mode: LayerMode) throws(TensorError) -> Tensor {
        guard input.rank >= 2, input.shape.last == inputFeatures else {
            throw .shapeMismatch(operation: "\(description) forward", expected: "input [N, ..., \(inputFeatures)]", actual: input.shape)
        }
        let rows = input.count / inputFeatures, o = outputFeatures
        // Bias rows, then += x W, into the last pass's output memory when nothing holds it any more.
        let output = outputBuffer.make(shape: Array(input.shape.dropLast()) + [o]) { y in
            guard rows > 0, o > 0 else { return }
            bias.value.withUnsafeBufferPointer { b in
                fillBiasRows(b.baseAddress!, width: o, rows: rows, into: y.baseAddress!)
                input.withUnsafeBufferPointer { x in
                    weight.value.withUnsafeBufferPointer { w in
                        gemm(transposeA: false, transposeB: false, m: rows, n: o, k: inputFeatures,
                             a: x.baseAddress!, lda: inputFeatures, b: w.baseAddress!, ldb: o, beta: 1, c: y.baseAddress!, ldc: o)
                    }
                }
            }
        }
        cachedInput = input
        return output
    }

    public func backward(_ outputGradient: Tensor, accumulateParameterGradients: Bool) throws(TensorError) -> Tensor {
        try backward(outputGradient, accumulate: accumulateParameterGradients, computeInputGradient: true)!
    }

    public func accumulateParameterGradients(_ outputGradient: Tensor) throws(TensorError) {
        _ = try backward(outputGradient, accumulate: true, computeInputGradient: false)
    }

    private func backward(_ outputGradient: Tensor, accumulate: Bool, computeInputGradient: Bool) throws(TensorError) -> Tensor? {
        guard let input = cachedInput else { throw .invalidArgument(argument: "\(description) backward", reason: "called before forward") }
        try outputGradient.checkShape(Array(input.shape.dropLast()) + [outputFeatures], "\(description) backward (output gradient)")
        let rows = input.count / inputFeatures, (i, o) = (inputFeatures, outputFeatures)
        if accumulate, weight.requiresGradient, rows > 0 {
            outputGradient.withUnsafeBufferPointer { dy in
                input.withUnsafeBufferPointer { x in
                    weight.gradient.withUnsafeMutableBufferPointer { dw in
                        gemm(transposeA: true, transposeB: false, m: i, n: o, k: rows,
                             a: x.baseAddress!, lda: i, b: dy.baseAddress!, ldb: o, beta: 1, c: dw.baseAddress!, ldc: o)
                    }
                }
            }
        }
        if accumulate, bias.requiresGradient {
            try bias.gradient.addScaled(outputGradient.reshaped([rows, o]).sumOverLeadingAxis())
        }
        guard computeInputGradient else { return nil }
        // dX = Δ Wᵀ (`[rows, out] x [out, in]`), into the last pass's memory when nothing holds it any more.
        return inputGradientBuffer.make(shape: input.shape) { dx in
            guard rows > 0, i > 0 else { return }
            guard o > 0 else { return dx.update(repeating: 0) }
            outputGradient.withUnsafeBufferPointer { dy in
                weight.value.withUnsafeBufferPointer { w in
                    gemm(transposeA: false, transposeB: true, m: rows, n: i, k: o,
                         a: dy.baseAddress!, lda: o, b: w.baseAddress!, ldb: o, c: dx.baseAddress!, ldc: i)
                }
            }
        }
    }
}
