import SquisherTensor

/// A loss that is a negative log-likelihood, `l_n = −log p(y_n | f(x_n))` up to a constant, with
/// what the Fisher estimators need from it: the per-sample gradient at the given targets, the
/// exact expectation over the model's own distribution (true Fisher), and samples from it (its
/// Monte-Carlo estimate).
///
/// Conventions shared by every implementation:
/// - a **sample** is one row of the model output's leading axis; its loss `l_n` is the **sum** of
///   its terms (every predicted token of a sequence, every output of a regression);
/// - gradients are with respect to the model output, row `n` being `∂l_n/∂output_n` (the
///   sum-reduced loss `Σ_n l_n`: no `1/N`);
/// - targets are a float tensor whose leading axis is the sample axis (class ids travel as floats).
public protocol LikelihoodLoss: Sendable {
    /// How the loss is defined, for ``Importance``'s conventions (`"loss"`, `"sample loss"`, ...).
    var conventions: [String: String] { get }

    /// `Σ_n l_n` (in Double) and the per-sample output gradient.
    /// - Throws: ``TensorError`` naming the loss, the expected and the actual shape or target.
    func lossAndGradient(output: Tensor, targets: Tensor) throws(TensorError) -> (loss: Double, outputGradient: Tensor)

    /// Output gradients `G_k` with scales `s_k` whose per-sample squared parameter gradients sum to
    /// the exact true Fisher: `Σ_k s_k Σ_n (J_nᵀ G_{k,n})² = Σ_n E_{y ~ p(·|x_n)} (∇_θ l_n(y))²`.
    /// `pass(k)` makes the `k`-th one on demand (there may be many).
    func exactFisherPasses(output: Tensor, targets: Tensor) throws(TensorError) -> FisherPasses

    /// `samples` output gradients of `−log p(ŷ | f(x))` with `ŷ` drawn from the model's distribution
    /// (one independent draw per sample and per term), drawn in row order with the draws of one row
    /// consecutive; positions the targets mark as ignored stay ignored.
    func sampledGradients(output: Tensor, targets: Tensor, samples: Int, using generator: inout SplitMix64) throws(TensorError) -> [Tensor]
}

/// The backward passes of an exact true Fisher, made on demand: `count` passes, the `k`-th being
/// (output gradient, scale).
public struct FisherPasses {
    /// How many passes.
    public var count: Int
    /// Makes pass `k` in `0..<count`.
    public var pass: (Int) throws -> (gradient: Tensor, scale: Float)

    public init(count: Int, pass: @escaping (Int) throws -> (gradient: Tensor, scale: Float)) {
        self.count = count
        self.pass = pass
    }
}
