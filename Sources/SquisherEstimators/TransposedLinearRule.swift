import SquisherLayers
import SquisherTensor

/// `TransposedLinear` (HF `Conv1D`, weight `[in, out]`): sample `n`'s gradient is `X_nᵀ Δ_n`
/// (summed over its positions, then squared) and `Σ_t Δ_n[t]` for the bias; for a 2-D input
/// `[N, in]` the sum of squares is one product `(X⊙X)ᵀ(Δ⊙Δ)`.
/// Per-sample gradients (``PerSampleGradientRule``) are made one sample at a time.
public struct TransposedLinearSquaredGradientRule: PerSampleGradientRule {
    /// Settings of the sums of squares' products over sequences (nil: ``GEMMConfiguration/current``):
    /// an instruction-set level below 3 runs them as on a CPU without AVX-512.
    public let products: GEMMConfiguration?

    public init(products: GEMMConfiguration? = nil) {
        self.products = products
    }

    private func layer(_ layer: any Layer) throws -> TransposedLinear {
        guard let linear = layer as? TransposedLinear else {
            throw TensorError.invalidArgument(argument: "layer", reason: "expected Conv1D (TransposedLinear), got \(layer.typeName)")
        }
        return linear
    }

    private func gradients(_ linear: TransposedLinear, _ input: Tensor) -> SequenceLinearGradients {
        let n = input.shape.first ?? 0
        return SequenceLinearGradients(
            samples: n, positions: input.count / max(n * linear.inputFeatures, 1), inFeatures: linear.inputFeatures,
            outFeatures: linear.outputFeatures, transposed: true, products: products)
    }

    public func accumulateSquaredGradients(
        layer: any Layer, input: Tensor, outputGradient: Tensor, scale: Float, into accumulators: inout [String: Tensor]
    ) throws -> Int {
        let linear = try self.layer(layer)
        let (i, o) = (linear.inputFeatures, linear.outputFeatures)
        let plan = gradients(linear, input)
        if plan.positions == 1 {
            let x2 = try input.reshaped([plan.samples, i]).map { $0 * $0 }
            let d2 = try outputGradient.reshaped([plan.samples, o]).map { $0 * $0 }
            if linear.weight.requiresGradient {
                try accumulators["weight", default: Tensor(zeros: [i, o])].addScaled(Tensor.matmul(x2, d2, transposeA: true), scale)
            }
            if linear.bias.requiresGradient { try accumulators["bias", default: Tensor(zeros: [o])].addScaled(d2.sumOverLeadingAxis(), scale) }
            return plan.scratchBytes + 4 * (input.count + outputGradient.count)
        }
        return try plan.addSquaredSums(
            input: input, outputGradient: outputGradient, scale: scale, weightShape: linear.weight.requiresGradient ? [i, o] : nil,
            bias: linear.bias.requiresGradient, into: &accumulators)
    }

    public func perSampleGradients(layer: any Layer, input: Tensor, outputGradient: Tensor) throws -> [String: PerSampleGradients] {
        let linear = try self.layer(layer)
        return try gradients(linear, input).perSample(
            input: input, outputGradient: outputGradient, weight: linear.weight.requiresGradient ? [linear.inputFeatures, linear.outputFeatures] : nil,
            bias: linear.bias.requiresGradient)
    }
}
