import SquisherLayers
import SquisherTensor

/// Computes `Σ_n (∂ℓ_n/∂θ)²` for one layer's parameters from the layer input and the per-sample
/// output gradient, without a loop over single-sample backward passes (BackPACK's extensions keyed
/// by layer type, "SumGradSquared").
///
/// `outputGradient` row `n` must be `∂ℓ_n/∂(output_n)` for sample `n`'s own loss term (a sum
/// reduction, possibly pre-scaled by the caller). Rules are registered per layer type in a
/// ``PerSampleRuleRegistry``; users add rules for their own layers.
public protocol PerSampleSquaredGradientRule: Sendable {
    /// Adds `scale · Σ_n (∂ℓ_n/∂θ)²` into `accumulators[localName]` (shape of the parameter) for each
    /// of the layer's parameters that requires a gradient, and returns the bytes of temporaries it
    /// allocated (for cost accounting).
    func accumulateSquaredGradients(
        layer: any Layer, input: Tensor, outputGradient: Tensor, scale: Float,
        into accumulators: inout [String: Tensor]
    ) throws -> Int
}

/// A rule that can also return each sample's gradient itself, `∂ℓ_n/∂θ` (BackPACK's `BatchGrad`),
/// not only the sum of squares. Needed for a parameter used by several layers (a tied output
/// embedding): its per-sample gradient is the **sum** of every use's contribution, squared
/// afterwards, so the squares of the uses cannot be added separately.
public protocol PerSampleGradientRule: PerSampleSquaredGradientRule {
    /// Each sample's gradient of each local parameter that requires a gradient, by local name, for
    /// the output gradient `[N, ...]` (row `n`: `∂ℓ_n/∂output_n`), made one sample at a time.
    func perSampleGradients(layer: any Layer, input: Tensor, outputGradient: Tensor) throws -> [String: PerSampleGradients]
}

/// The per-sample gradients of one parameter, produced **one sample at a time** into a caller's
/// buffer, so that `N` copies of a large parameter (a `[vocabulary, dim]` embedding) never exist at
/// once: the closure keeps only the layer's input and output gradient (the factors of the
/// gradient) and multiplies them out for the sample asked for.
public struct PerSampleGradients {
    /// How many samples (`N`).
    public var samples: Int
    /// The parameter's shape.
    public var shape: [Int]
    /// Adds sample `n`'s gradient (row-major, `shape`) into the buffer.
    public var addSample: (_ sample: Int, _ destination: UnsafeMutablePointer<Float>) throws -> Void

    public init(samples: Int, shape: [Int], addSample: @escaping (Int, UnsafeMutablePointer<Float>) throws -> Void) {
        self.samples = samples
        self.shape = shape
        self.addSample = addSample
    }

    /// Gradients stacked in one tensor `[N] + shape` (for small parameters and user rules).
    public init(stacked: Tensor) {
        let shape = Array(stacked.shape.dropFirst()), size = shape.reduce(1, *)
        self.init(samples: stacked.shape.first ?? 0, shape: shape) { sample, destination in
            stacked.withUnsafeBufferPointer { g in axpy(count: size, alpha: 1, x: g.baseAddress! + sample * size, y: destination) }
        }
    }

    /// `scale · Σ_n (Σ_uses g_{use,n})²` over several uses of one parameter (all with `samples` rows),
    /// one sample at a time in a scratch buffer of the parameter's size.
    public static func squaredSum(of uses: [PerSampleGradients], scale: Float) throws -> Tensor {
        guard let first = uses.first else { return Tensor(zeros: [0]) }
        let size = first.shape.reduce(1, *)
        var total = Tensor(zeros: first.shape)
        guard size > 0 else { return total }
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: size)
        defer { scratch.deallocate() }
        try total.withUnsafeMutableBufferPointer { t in
            for sample in 0..<first.samples {
                scratch.update(repeating: 0, count: size)
                for use in uses { try use.addSample(sample, scratch) }
                addScaledSquares(count: size, scale: scale, x: scratch, y: t.baseAddress!)
            }
        }
        return total
    }
}

/// Per-sample rules by layer type. Layers without parameters need no rule; a layer with
/// parameters and no rule is an error that names it (never a silent skip).
public struct PerSampleRuleRegistry: Sendable {
    private var rules: [ObjectIdentifier: any PerSampleSquaredGradientRule] = [:]

    /// An empty registry.
    public init() {}

    /// The built-in rules: `Linear`, `Conv2d`, `LayerNorm`, `Embedding`, `TransposedLinear` (HF `Conv1D`).
    /// Parameterless layers (attention core, activations) need none.
    public static var standard: PerSampleRuleRegistry {
        var registry = PerSampleRuleRegistry()
        registry.register(LinearSquaredGradientRule(), for: Linear.self)
        registerBuiltInRules(into: &registry)
        return registry
    }

    /// Registers (or replaces) the rule for a layer type.
    public mutating func register(_ rule: any PerSampleSquaredGradientRule, for type: (some Layer).Type) {
        rules[ObjectIdentifier(type)] = rule
    }

    /// The rule for this layer's dynamic type, if any.
    public func rule(for layer: any Layer) -> (any PerSampleSquaredGradientRule)? {
        rules[ObjectIdentifier(type(of: layer))]
    }
}

/// `Linear`: with input `X` `[N, in]` and output gradient `Δ` `[N, out]`,
/// `Σ_n (∂ℓ_n/∂W)² = (Δ⊙Δ)ᵀ (X⊙X)` (one matrix product) and `Σ_n (∂ℓ_n/∂b)² = Σ_n Δ_n⊙Δ_n`.
/// For inputs with extra axes `[N, T, in]` each sample's gradient sums over positions first,
/// `∂ℓ_n/∂W = Δ_nᵀ X_n`, then is squared (one product per sample, ``SequenceLinearGradients``).
///
/// Over the passes of one batch (``PassSummableSquaredGradientRule``), a 2-D input sums
/// `D = Σ_pass scale·Δ⊙Δ` (`[N, out]`) and does one product `Dᵀ(X⊙X)` per batch (bias: `Σ_n D_n`);
/// inputs with extra axes keep the per-pass path.
public struct LinearSquaredGradientRule: PassSummableSquaredGradientRule, PerSampleGradientRule {
    /// Settings of the sums of squares' products over sequences (nil: ``GEMMConfiguration/current``):
    /// an instruction-set level below 3 runs them as on a CPU without AVX-512.
    public let products: GEMMConfiguration?

    public init(products: GEMMConfiguration? = nil) {
        self.products = products
    }

    public func perSampleGradients(layer: any Layer, input: Tensor, outputGradient: Tensor) throws -> [String: PerSampleGradients] {
        guard let linear = layer as? Linear else { throw TensorError.invalidArgument(argument: "layer", reason: "expected Linear, got \(layer.typeName)") }
        let n = input.shape.first ?? 0, positions = input.count / max(n * linear.inputFeatures, 1)
        return try SequenceLinearGradients(
            samples: n, positions: positions, inFeatures: linear.inputFeatures, outFeatures: linear.outputFeatures, transposed: false
        ).perSample(
            input: input, outputGradient: outputGradient, weight: linear.weight.requiresGradient ? [linear.outputFeatures, linear.inputFeatures] : nil,
            bias: linear.bias?.requiresGradient == true)
    }

    public func accumulateSquaredGradients(
        layer: any Layer, input: Tensor, outputGradient: Tensor, scale: Float,
        into accumulators: inout [String: Tensor]
    ) throws -> Int {
        guard let linear = layer as? Linear else { throw TensorError.invalidArgument(argument: "layer", reason: "expected Linear, got \(layer.typeName)") }
        let n = input.shape[0], inFeatures = linear.inputFeatures, outFeatures = linear.outputFeatures
        let positions = input.count / max(n * inFeatures, 1)
        var temporaryBytes = 0
        if positions == 1 {
            let x2 = try input.reshaped([n, inFeatures]).map { $0 * $0 }
            let d2 = try outputGradient.reshaped([n, outFeatures]).map { $0 * $0 }
            temporaryBytes = 4 * (x2.count + d2.count + outFeatures * inFeatures)
            if linear.weight.requiresGradient {
                let w = try Tensor.matmul(d2, x2, transposeA: true)
                try accumulators["weight", default: Tensor(zeros: [outFeatures, inFeatures])].addScaled(w, scale)
            }
            if let bias = linear.bias, bias.requiresGradient {
                try accumulators["bias", default: Tensor(zeros: [outFeatures])].addScaled(d2.sumOverLeadingAxis(), scale)
            }
        } else {
            temporaryBytes = try SequenceLinearGradients(
                samples: n, positions: positions, inFeatures: inFeatures, outFeatures: outFeatures, transposed: false,
                products: products
            ).addSquaredSums(
                input: input, outputGradient: outputGradient, scale: scale,
                weightShape: linear.weight.requiresGradient ? [outFeatures, inFeatures] : nil, bias: linear.bias?.requiresGradient == true,
                into: &accumulators)
        }
        return temporaryBytes
    }

    public func beginPasses(
        layer: any Layer, input: Tensor, passes: Int, reusing previous: (any SquaredGradientPassSum)?
    ) throws -> (any SquaredGradientPassSum)? {
        guard let linear = layer as? Linear else { throw TensorError.invalidArgument(argument: "layer", reason: "expected Linear, got \(layer.typeName)") }
        let n = input.shape.first ?? 0
        guard input.rank == 2, input.count == n * linear.inputFeatures, n > 0 else { return nil }
        return LinearPassSum(linear: linear, input: input, rows: n)
    }
}

/// The pass-summed statistic of ``LinearSquaredGradientRule`` for a 2-D input `X` `[N, in]`:
/// `D = Σ_pass scale·Δ⊙Δ` `[N, out]`, turned into `Dᵀ(X⊙X)` (weight) and `Σ_n D_n` (bias) once.
final class LinearPassSum: SquaredGradientPassSum {
    let linear: Linear
    let input: Tensor
    let rows: Int
    private var squares: Tensor

    init(linear: Linear, input: Tensor, rows: Int) {
        self.linear = linear
        self.input = input
        self.rows = rows
        squares = Tensor(zeros: [rows, linear.outputFeatures])
    }

    var retainedBytes: Int { 4 * squares.count }

    func add(outputGradient: Tensor, scale: Float) throws -> Int {
        guard outputGradient.count == squares.count, outputGradient.shape.first == rows else {
            throw TensorError.shapeMismatch(operation: "\(linear) pass sum", expected: "output gradient [\(rows), \(linear.outputFeatures)]", actual: outputGradient.shape)
        }
        guard squares.count > 0 else { return 0 }
        outputGradient.withUnsafeBufferPointer { g in
            squares.withUnsafeMutableBufferPointer { d in
                addScaledSquares(count: d.count, scale: scale, x: g.baseAddress!, y: d.baseAddress!)
            }
        }
        return 0
    }

    func finish(into accumulators: inout [String: Tensor]) throws -> Int {
        let inFeatures = linear.inputFeatures, outFeatures = linear.outputFeatures
        var temporaryBytes = 0
        guard outFeatures > 0 else { return 0 }
        if linear.weight.requiresGradient, inFeatures > 0 {
            let inputSquares = input.map { $0 * $0 }
            temporaryBytes = 4 * inputSquares.count
            var weight = accumulators.removeValue(forKey: "weight") ?? Tensor(zeros: [outFeatures, inFeatures])
            try weight.checkShape([outFeatures, inFeatures], "\(linear) pass sum")
            // weight += Dᵀ (X⊙X), accumulated in place by the GEMM (beta = 1).
            squares.withUnsafeBufferPointer { d in
                inputSquares.withUnsafeBufferPointer { x2 in
                    weight.withUnsafeMutableBufferPointer { w in
                        gemm(transposeA: true, transposeB: false, m: outFeatures, n: inFeatures, k: rows,
                             a: d.baseAddress!, lda: outFeatures, b: x2.baseAddress!, ldb: inFeatures,
                             beta: 1, c: w.baseAddress!, ldc: inFeatures)
                    }
                }
            }
            accumulators["weight"] = weight
        }
        if let bias = linear.bias, bias.requiresGradient {
            var sums = accumulators.removeValue(forKey: "bias") ?? Tensor(zeros: [outFeatures])
            try sums.checkShape([outFeatures], "\(linear) pass sum")
            squares.withUnsafeBufferPointer { d in
                sums.withUnsafeMutableBufferPointer { b in
                    for row in 0..<rows { axpy(count: outFeatures, alpha: 1, x: d.baseAddress! + row * outFeatures, y: b.baseAddress!) }
                }
            }
            accumulators["bias"] = sums
        }
        return temporaryBytes
    }
}
