import Foundation
import SquisherLayers
import SquisherTensor

/// Scales `gradients` in place so that their global norm is at most `maxNorm`, like PyTorch's
/// `torch.nn.utils.clip_grad_norm_(parameters, max_norm, norm_type)`.
///
/// The global norm treats all tensors as one vector:
/// `total = (Σ_p Σ_i |g_p,i|^q)^(1/q)` for `q = normType` (`q = .infinity`: `max |g_p,i|`).
/// Every gradient is multiplied by `min(1, maxNorm / (total + 1e-6))` (PyTorch's `1e-6` guard;
/// like PyTorch, the multiplication by `1` happens too, which leaves the values unchanged).
/// The norm is accumulated in double precision (PyTorch accumulates in float32), so the clip
/// coefficient agrees with PyTorch's up to float32 rounding.
///
/// A non-finite total (a NaN or infinite gradient) leaves the gradients unchanged and is
/// returned as is; ``Optimizer/step(batchSize:)`` then throws naming the offending parameter.
///
/// - Parameters:
///   - gradients: the gradients by parameter name, scaled in place.
///   - maxNorm: the largest allowed global norm (`>= 0`).
///   - normType: the order `q` of the norm (`> 0`, or `.infinity`); default 2.
/// - Returns: the global norm *before* clipping (as PyTorch returns it).
/// - Throws: ``TensorError/invalidArgument(argument:reason:)`` naming `maxNorm` or `normType`.
/// - Complexity: O(total number of gradient elements).
@discardableResult
public func clipGradientNorm(_ gradients: inout NamedTensors, maxNorm: Float, normType: Float = 2) throws(TensorError) -> Double {
    try GradientClipping.validate(maxNorm: maxNorm, normType: normType)
    return GradientClipping.clip(&gradients, maxNorm: maxNorm, normType: normType)
}

/// Clips the accumulated gradients (``SquisherLayers/Parameter/gradient``) of `parameters` that
/// require a gradient to global norm `maxNorm`, exactly as ``clipGradientNorm(_:maxNorm:normType:)``;
/// call it between the backward pass and ``Optimizer/step(batchSize:)``, as one calls PyTorch's
/// `clip_grad_norm_(model.parameters(), max_norm)`.
/// - Returns: the global norm before clipping.
/// - Throws: ``TensorError/invalidArgument(argument:reason:)`` naming `maxNorm` or `normType`.
@discardableResult
public func clipGradientNorm(
    of parameters: [(name: String, parameter: Parameter)], maxNorm: Float, normType: Float = 2
) throws(TensorError) -> Double {
    try GradientClipping.validate(maxNorm: maxNorm, normType: normType)
    var gradients = NamedTensors()
    for (name, parameter) in parameters where parameter.requiresGradient { gradients[name] = parameter.gradient }
    let total = GradientClipping.clip(&gradients, maxNorm: maxNorm, normType: normType)
    for (name, parameter) in parameters where parameter.requiresGradient {
        if let gradient = gradients[name] { parameter.gradient = gradient }
    }
    return total
}

extension Optimizer {
    /// Registers a pre-step hook that clips the gradients to global norm `maxNorm` before every
    /// update (``clipGradientNorm(_:maxNorm:normType:)``). Hooks run in registration order:
    /// register this one first so that later hooks and observers (such as the Squisher's) see,
    /// and the update uses, the clipped gradients.
    /// - Parameters:
    ///   - maxNorm: the largest allowed global norm (`>= 0`).
    ///   - normType: the order of the norm (`> 0`, or `.infinity`); default 2.
    ///   - onNorm: called with the step index and the global norm before clipping (for logging).
    /// - Returns: the handle whose ``HookHandle/remove()`` stops the clipping.
    /// - Throws: ``TensorError/invalidArgument(argument:reason:)`` naming `maxNorm` or `normType`.
    @discardableResult
    public func clipGradientNorm(
        maxNorm: Float, normType: Float = 2, onNorm: ((_ step: Int, _ norm: Double) -> Void)? = nil
    ) throws(TensorError) -> HookHandle {
        try GradientClipping.validate(maxNorm: maxNorm, normType: normType)
        return registerStepPreHook { event in
            let norm = GradientClipping.clip(&event.gradients, maxNorm: maxNorm, normType: normType)
            onNorm?(event.step, norm)
        }
    }
}

/// The implementation behind the `clipGradientNorm` functions.
enum GradientClipping {
    static func validate(maxNorm: Float, normType: Float) throws(TensorError) {
        guard maxNorm.isFinite, maxNorm >= 0 else {
            throw .invalidArgument(argument: "maxNorm", reason: "must be finite and >= 0, got \(maxNorm)")
        }
        guard normType > 0, !normType.isNaN else {
            throw .invalidArgument(argument: "normType", reason: "must be > 0 or infinity, got \(normType)")
        }
    }

    /// The global `q`-norm of all tensors, accumulated in double precision.
    static func globalNorm(_ gradients: NamedTensors, normType q: Float) -> Double {
        var accumulator = 0.0
        for (_, tensor) in gradients {
            tensor.withUnsafeBufferPointer { g in
                if q == .infinity {
                    for x in g { accumulator = max(accumulator, Double(x.magnitude)) }
                    if g.contains(where: \.isNaN) { accumulator = .nan }
                } else if q == 2 {
                    for x in g { accumulator += Double(x) * Double(x) }
                } else if q == 1 {
                    for x in g { accumulator += Double(x.magnitude) }
                } else {
                    let exponent = Double(q)
                    for x in g { accumulator += Foundation.pow(Double(x.magnitude), exponent) }
                }
            }
        }
        if q == .infinity || q == 1 { return accumulator }
        if q == 2 { return accumulator.squareRoot() }
        return Foundation.pow(accumulator, 1 / Double(q))
    }

    static func clip(_ gradients: inout NamedTensors, maxNorm: Float, normType: Float) -> Double {
        let total = globalNorm(gradients, normType: normType)
        guard total.isFinite else { return total }
        let coefficient = Float(min(1, Double(maxNorm) / (total + 1e-6)))
        guard coefficient < 1 else { return total }  // multiplying by 1 changes nothing
        for name in gradients.names {
            gradients[name]?.scale(by: coefficient)
        }
        return total
    }
}
