import SquisherTensor

/// Squared error as a Gaussian likelihood with fixed variance `σ²`: the model output `f_n` is the
/// mean of `y_n ~ N(f_n, σ² I)`, and
///
///     l_n = Σ_d (f_{n,d} − y_{n,d})² / (2σ²)        (+ a constant)
///
/// summed over every output of the sample (output `[N, ...]`, targets the same shape).
/// - Gradient: `(f − y) / σ²`.
/// - True Fisher: `E_y (∇_θ l_n)² = diag(J_nᵀ J_n) / σ²` exactly (the Gauss-Newton diagonal); one
///   pass per output coordinate `d`, the one-hot `e_d / σ` in every sample.
/// - Monte Carlo: `y = f + σ ε`, `ε ~ N(0, I)`, gradient `−ε / σ`.
///
/// **Beware of scaling**: PyTorch's `MSELoss(reduction='sum')`, `Σ (f − y)²`, is this loss with
/// `σ² = 1/2`; its empirical Fisher is 4x that of `σ² = 1`.
public struct GaussianLikelihood: LikelihoodLoss, Hashable {
    /// The variance `σ² > 0`.
    public var variance: Double

    public init(variance: Double = 1) { self.variance = variance }

    public var conventions: [String: String] {
        ["loss": "Gaussian negative log-likelihood, sum over outputs of (f - y)^2 / (2 variance)", "variance": "\(variance)", "reduction": "sum"]
    }

    private func check(_ output: Tensor, _ targets: Tensor) throws(TensorError) {
        guard variance > 0, variance.isFinite else {
            throw .invalidArgument(argument: "GaussianLikelihood variance \(variance)", reason: "must be finite and > 0")
        }
        guard output.rank >= 1, output.count > 0 else {
            throw .shapeMismatch(operation: "GaussianLikelihood", expected: "non-empty predictions [N, ...]", actual: output.shape)
        }
        try targets.checkShape(output.shape, "GaussianLikelihood targets (must match predictions)")
    }

    public func lossAndGradient(output: Tensor, targets: Tensor) throws(TensorError) -> (loss: Double, outputGradient: Tensor) {
        try check(output, targets)
        let inverse = 1 / variance
        var loss = 0.0
        let gradient = try output.zipWith(targets, "GaussianLikelihood") { f, y in
            Float(Double(f - y) * inverse)
        }
        for (f, y) in zip(output.scalars, targets.scalars) { loss += Double(f - y) * Double(f - y) * inverse / 2 }
        return (loss, gradient)
    }

    public func exactFisherPasses(output: Tensor, targets: Tensor) throws(TensorError) -> FisherPasses {
        try check(output, targets)
        let n = output.shape[0], width = output.count / n, shape = output.shape
        let value = Float(1 / variance.squareRoot())
        return FisherPasses(count: width) { d in
            var gradient = [Float](repeating: 0, count: n * width)
            for sample in 0..<n { gradient[sample * width + d] = value }
            return (Tensor(uncheckedShape: shape, scalars: gradient), 1)
        }
    }

    public func sampledGradients(output: Tensor, targets: Tensor, samples: Int, using generator: inout SplitMix64) throws(TensorError) -> [Tensor] {
        try check(output, targets)
        let n = output.shape[0], width = output.count / n
        let scale = Float(1 / variance.squareRoot())
        var gradients = [[Float]](repeating: [Float](repeating: 0, count: output.count), count: samples)
        for sample in 0..<n {
            for s in 0..<samples {
                for d in 0..<width { gradients[s][sample * width + d] = -scale * Float(generator.nextNormal()) }
            }
        }
        return gradients.map { Tensor(uncheckedShape: output.shape, scalars: $0) }
    }
}
