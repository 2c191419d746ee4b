import SquisherTensor

/// A fully connected layer `y = x Wᵀ + b`, as PyTorch's `nn.Linear`.
///
/// - `weight`: `[outputFeatures, inputFeatures]`; `bias`: `[outputFeatures]`.
/// - Input `[N, ..., inputFeatures]`, output `[N, ..., outputFeatures]` (acts on the last axis).
/// - Initialization as PyTorch: weight and bias uniform in ±1/sqrt(inputFeatures).
public final class Linear: Layer {
    public let typeName = "Linear"
    /// Length of the last input axis (`in_features`).
    public let inputFeatures: Int
    /// Length of the last output axis (`out_features`).
    public let outputFeatures: Int
    /// The weight matrix, `[outputFeatures, inputFeatures]`.
    public let weight: Parameter
    /// The offset, `[outputFeatures]`, or nil when created with `bias: false`.
    public let bias: Parameter?
    private var cachedInput: Tensor?

    /// Creates a layer with PyTorch's default initialization drawn from `generator`.
    public init(inputFeatures: Int, outputFeatures: Int, bias: Bool = true, generator: inout SplitMix64) {
        self.inputFeatures = inputFeatures
        self.outputFeatures = outputFeatures
        let bound = 1 / Float(max(inputFeatures, 1)).squareRoot()
        weight = Parameter(.uniform(shape: [outputFeatures, inputFeatures], low: -bound, high: bound, using: &generator))
        self.bias = bias ? Parameter(.uniform(shape: [outputFeatures], low: -bound, high: bound, using: &generator)) : nil
    }

    /// Creates a layer over existing parameters, which it **shares** (not copies): a tied output
    /// embedding is `Linear(weight: embedding.weight, bias: nil)`, `logits = h · Eᵀ` with the table
    /// `E` `[vocabulary, dim]` as the weight. Gradients of every use add into the one parameter's
    /// gradient, and ``Layer/namedParameters`` lists it once, under its first name.
    /// - Throws: ``TensorError/shapeMismatch(operation:expected:actual:)`` unless `weight` is rank 2
    ///   and `bias` (when given) is `[weight.shape[0]]`.
    public init(weight: Parameter, bias: Parameter?) throws(TensorError) {
        guard weight.value.rank == 2 else {
            throw .shapeMismatch(operation: "Linear(weight:bias:)", expected: "weight [out, in]", actual: weight.value.shape)
        }
        outputFeatures = weight.value.shape[0]
        inputFeatures = weight.value.shape[1]
        if let bias { try bias.value.checkShape([outputFeatures], "Linear(weight:bias:) bias") }
        self.weight = weight
        self.bias = bias
    }

    public var localParameters: [(name: String, parameter: Parameter)] {
        [("weight", weight)] + (bias.map { [("bias", $0)] } ?? [])
    }

    /// Forward products of fewer rows than this use SIMD row dot products instead of the GEMM.
    static let rowProductLimit = 4

    public func forward(_ input: Tensor, mode: LayerMode) throws(TensorError) -> Tensor {
        guard input.rank >= 2, input.shape.last == inputFeatures else {
            throw .shapeMismatch(operation: "Linear(\(inputFeatures)->\(outputFeatures)) forward", expected: "input [N, ..., \(inputFeatures)]", actual: input.shape)
        }
        cachedInput = input
        let rows = input.count / inputFeatures
        // y = b + x Wᵀ, accumulated onto the bias rows by the packed GEMM (B = W read transposed,
        // beta = 1); products under the GEMM's parallel threshold run on this thread. The GEMM's
        // register tiles beat row dot products even for 32-wide layers (one horizontal sum per output),
        // except for one to three rows (a per-sample loop, online prediction): packing W would then cost
        // more than reading it once per row.
        var output = bias == nil
            ? Tensor(zeros: [rows, outputFeatures])
            : Tensor(uninitializedShape: [rows, outputFeatures]) { _ in }
        guard output.count > 0 else { return try output.reshaped(Array(input.shape.dropLast()) + [outputFeatures]) }
        output.withUnsafeMutableBufferPointer { y in
            if let bias {
                bias.value.withUnsafeBufferPointer { b in
                    fillBiasRows(b.baseAddress!, width: outputFeatures, rows: rows, into: y.baseAddress!)
                }
            }
            guard inputFeatures > 0 else { return }
            input.withUnsafeBufferPointer { x in
                weight.value.withUnsafeBufferPointer { w in
                    if rows < Self.rowProductLimit {
                        accumulateRowProducts(x.baseAddress!, rows: rows, w.baseAddress!, rows: outputFeatures, length: inputFeatures, into: y.baseAddress!)
                    } else {
                        gemm(
                            transposeA: false, transposeB: true, m: rows, n: outputFeatures, k: inputFeatures,
                            a: x.baseAddress!, lda: inputFeatures, b: w.baseAddress!, ldb: inputFeatures,
                            beta: 1, c: y.baseAddress!, ldc: outputFeatures)
                    }
                }
            }
        }
        return try output.reshaped(Array(input.shape.dropLast()) + [outputFeatures])
    }

    public func backward(_ outputGradient: Tensor, accumulateParameterGradients: Bool) throws(TensorError) -> Tensor {
        try backward(outputGradient, accumulateParameterGradients: accumulateParameterGradients, computeInputGradient: true)!
    }

    /// Skips the input-gradient product `g · W` (`[rows, out] x [out, in]`).
    public func accumulateParameterGradients(_ outputGradient: Tensor) throws(TensorError) {
        _ = try backward(outputGradient, accumulateParameterGradients: true, computeInputGradient: false)
    }

    /// The input gradient when `computeInputGradient`, else nil.
    private func backward(
        _ outputGradient: Tensor, accumulateParameterGradients: Bool, computeInputGradient: Bool
    ) throws(TensorError) -> Tensor? {
        guard let input = cachedInput else { throw .invalidArgument(argument: "Linear.backward", reason: "called before forward") }
        try outputGradient.checkShape(Array(input.shape.dropLast()) + [outputFeatures], "Linear(\(inputFeatures)->\(outputFeatures)) backward")
        let rows = input.count / inputFeatures
        let g = try outputGradient.reshaped([rows, outputFeatures])
        if accumulateParameterGradients {
            if weight.requiresGradient {
                // dW += gᵀ · x, accumulated in place by the GEMM (beta = 1), no temporary.
                try weight.gradient.checkShape([outputFeatures, inputFeatures], "Linear(\(inputFeatures)->\(outputFeatures)) weight gradient")
                g.withUnsafeBufferPointer { dy in
                    input.withUnsafeBufferPointer { x in
                        weight.gradient.withUnsafeMutableBufferPointer { dw in
                            gemm(
                                transposeA: true, transposeB: false, m: outputFeatures, n: inputFeatures, k: rows,
                                a: dy.baseAddress!, lda: outputFeatures, b: x.baseAddress!, ldb: inputFeatures,
                                beta: 1, c: dw.baseAddress!, ldc: inputFeatures)
                        }
                    }
                }
            }
            if let bias, bias.requiresGradient {
                try bias.gradient.addScaled(g.sumOverLeadingAxis())
            }
        }
        guard computeInputGradient else { return nil }
        // dL/dx = g · W (`[rows, out] x [out, in]`).
        return try Tensor.matmul(g, weight.value).reshaped(input.shape)
    }
}
