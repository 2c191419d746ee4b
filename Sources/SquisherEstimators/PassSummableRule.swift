import SquisherLayers
import SquisherTensor

/// A ``PerSampleSquaredGradientRule`` whose work can be shared by the backward passes of one batch.
///
/// The true Fisher runs, per batch, one forward and then `C` backward passes (one per class `c`,
/// Monte-Carlo: one per label sample) with scales `s_c`, and wants
/// `Σ_c s_c Σ_n (∂ℓ_{n,c}/∂θ)²`. Every pass of a batch sees the **same layer input** `X` (the forward
/// is shared); only the output gradient `Δ_c` changes. A rule that opts in returns, at the first pass
/// of a batch, a ``SquaredGradientPassSum`` built from `X`; the estimator feeds it each pass's
/// output gradient and finishes it once after the last pass.
///
/// Why this is exact (only float32 rounding changes): when the per-sample squared gradient is
/// linear in a statistic of `Δ_c` for fixed `X`, the sum over passes moves inside. For `Linear` with
/// input `[N, in]`, `(∂ℓ_n/∂W_ij)² = Δ_{n,i}² X_{n,j}²`, so
/// `Σ_c s_c (Δ_c⊙Δ_c)ᵀ(X⊙X) = (Σ_c s_c Δ_c⊙Δ_c)ᵀ(X⊙X)`: one matrix product per batch instead of
/// one per pass. A rule whose per-sample gradient sums over positions before squaring (convolutions,
/// sequence inputs `[N, T, in]`) cannot move the sum inside the square, but can still do the work on
/// `X` (e.g. unfolding) once per batch instead of once per pass.
///
/// Rules that do not adopt this protocol keep the per-pass
/// ``PerSampleSquaredGradientRule/accumulateSquaredGradients(layer:input:outputGradient:scale:into:)``.
public protocol PassSummableSquaredGradientRule: PerSampleSquaredGradientRule {
    /// Starts the passes of one batch for `layer`, whose input is `input` (`[N, ...]`, as in the
    /// forward) in every pass.
    /// - Parameters:
    ///   - passes: how many passes the batch will have (a hint, e.g. for buffering: the state must
    ///     accept any number).
    ///   - previous: this layer's state from the previous batch, already finished (nil for the
    ///     first batch): the new state may take over its buffers, so that large scratch memory
    ///     stays mapped across batches instead of being freed and faulted in again. It is not
    ///     used after this call.
    /// - Returns: the batch's state, or nil to use the per-pass method for this input instead.
    func beginPasses(
        layer: any Layer, input: Tensor, passes: Int, reusing previous: (any SquaredGradientPassSum)?
    ) throws -> (any SquaredGradientPassSum)?
}

/// One layer's per-batch state of a ``PassSummableSquaredGradientRule``: created at the first pass
/// of a batch, given every pass's output gradient, finished once.
public protocol SquaredGradientPassSum: AnyObject {
    /// Adds one backward pass: `outputGradient` is `[N, ...]`, row `n` being `∂ℓ_n/∂(output_n)` of
    /// this pass (as for ``PerSampleSquaredGradientRule``), and the pass contributes
    /// `scale · Σ_n (∂ℓ_n/∂θ)²`. Returns the bytes of temporaries it allocated.
    func add(outputGradient: Tensor, scale: Float) throws -> Int

    /// Adds the sum over the passes added so far, `Σ_passes scale · Σ_n (∂ℓ_n/∂θ)²`, into
    /// `accumulators[localName]` (shape of the parameter) for each parameter that requires a
    /// gradient. Called once, after the last pass. Returns the bytes of temporaries it allocated.
    func finish(into accumulators: inout [String: Tensor]) throws -> Int

    /// Bytes this state keeps between passes (for cost accounting).
    var retainedBytes: Int { get }
}

/// `y[i] += scale · x[i]²` over `count` floats, 16 lanes at a time.
@inlinable
func addScaledSquares(count: Int, scale: Float, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>) {
    let s = SIMD16<Float>(repeating: scale)
    var i = 0
    while i + 16 <= count {
        let xv = UnsafeRawPointer(x + i).loadUnaligned(as: SIMD16<Float>.self)
        let yv = UnsafeRawPointer(y + i).loadUnaligned(as: SIMD16<Float>.self)
        UnsafeMutableRawPointer(y + i).storeBytes(of: s * xv * xv + yv, as: SIMD16<Float>.self)
        i += 16
    }
    while i < count {
        y[i] = scale * x[i] * x[i] + y[i]
        i += 1
    }
}
