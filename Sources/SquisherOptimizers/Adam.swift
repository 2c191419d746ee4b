import CSquisherKernels
import Foundation
import SquisherLayers
import SquisherTensor

/// Adam (Kingma & Ba 2015) and AdamW (Loshchilov & Hutter 2019) with PyTorch's exact update
/// (`torch.optim.Adam`/`AdamW`, `foreach=False`, the CPU default), including AMSGrad.
///
/// Per parameter, with gradient `g` at step `t` (the parameter's own step count, 1-based):
/// - `maximize`: `g ← −g`.
/// - L2 (`Adam`): `g ← g + weight_decay·θ`; decoupled (`AdamW`): `θ ← θ·(1 − lr·weight_decay)`.
/// - `exp_avg ← exp_avg + (1−β₁)(g − exp_avg)`; `exp_avg_sq ← β₂·exp_avg_sq + (1−β₂)·g²`
///   (stored **without** bias correction: this is the Squisher's `v` [1]).
/// - `θ ← θ − (lr/(1−β₁ᵗ)) · exp_avg / (sqrt(v̂)/sqrt(1−β₂ᵗ) + eps)`, `v̂ = exp_avg_sq` or, with
///   AMSGrad, its running maximum `max_exp_avg_sq`.
///
/// Rounding follows PyTorch's CPU kernels: fused multiply-adds in `lerp_` and `addcmul_`, the
/// scalars `1−β`, `β**t` (libm `pow`), `lr/(1−β₁ᵗ)` in double precision from the decimal values of
/// the hyperparameters, then cast to float32. Fed the same gradients, `exp_avg` and `exp_avg_sq`
/// match PyTorch bit for bit; the parameters match to a few ulp, because PyTorch's float32 `sqrt`
/// (MKL VML) is not always correctly rounded while ours is.
///
/// State (``state``): `exp_avg`, `exp_avg_sq`, and `max_exp_avg_sq` with AMSGrad, per parameter,
/// each of the parameter's shape, plus the per-parameter `step`.
///
/// - Complexity: O(parameters) per step, one pass over the gradient, moments and parameter per step
///   (the decoupled decay is applied in the same pass), split over the threads; AMSGrad runs one
///   element at a time on one thread.
///
/// [1]: Li, Dangel, Tam, Raffel 2025, Fishers for Free?
public final class Adam: Optimizer {
    /// Step size `lr` (PyTorch default 1e-3). Mutable, for learning-rate schedules.
    public var learningRate: Float
    /// (β₁, β₂), the decay rates of the first and second moment averages; PyTorch default (0.9, 0.999).
    public let betas: (Float, Float)
    /// Term added to the denominator for numerical stability; default 1e-8.
    public let eps: Float
    /// L2 penalty (Adam) or decoupled decay rate (AdamW); default 0 for Adam, 0.01 for AdamW.
    public let weightDecay: Float
    /// True for AdamW's decoupled weight decay (`θ ← θ·(1 − lr·weight_decay)` before the update).
    public let decoupledWeightDecay: Bool
    /// Keep the running maximum of `exp_avg_sq` and use it in the denominator (Reddi et al. 2018).
    public let amsgrad: Bool
    /// Maximize the objective instead of minimizing it (the gradient's sign is flipped).
    public let maximize: Bool

    /// The parameters this optimizer updates, by name, in model order.
    public let parameters: [(name: String, parameter: Parameter)]
    /// The registered step hooks.
    public let hooks = StepHookRegistry()
    /// The number of completed steps.
    public private(set) var stepCount = 0

    private struct Slot {
        var step = 0
        var expAvg: Tensor
        var expAvgSq: Tensor
        var maxExpAvgSq: Tensor?
    }
    private var slots: [String: Slot] = [:]

    /// The float32 scalars of one parameter's update, as PyTorch's kernel receives them.
    struct Constants: Sendable {
        var sign, l2, oneMinusBeta1, oneMinusBeta2, beta2, negativeStepSize, biasCorrection2Sqrt, eps: Float
    }

    /// Creates Adam (`decoupledWeightDecay: false`) or AdamW (`true`) over named parameters.
    /// - Throws: ``TensorError/invalidArgument(argument:reason:)`` naming the argument for a
    ///   negative or non-finite learning rate, eps or weight decay, betas outside [0, 1), or two
    ///   parameters with one name.
    public init(
        parameters: [(name: String, parameter: Parameter)], learningRate: Float = 1e-3,
        betas: (Float, Float) = (0.9, 0.999), eps: Float = 1e-8, weightDecay: Float = 0,
        decoupledWeightDecay: Bool = false, amsgrad: Bool = false, maximize: Bool = false
    ) throws(TensorError) {
        try OptimizerSupport.requireNonNegative(learningRate, "learningRate")
        guard (0..<1).contains(betas.0), (0..<1).contains(betas.1) else {
            throw .invalidArgument(argument: "betas", reason: "each must be in [0, 1), got \(betas)")
        }
        try OptimizerSupport.requireNonNegative(eps, "eps")
        try OptimizerSupport.requireNonNegative(weightDecay, "weightDecay")
        try OptimizerSupport.requireUniqueNames(parameters)
        self.parameters = parameters
        self.learningRate = learningRate
        self.betas = betas
        self.eps = eps
        self.weightDecay = weightDecay
        self.decoupledWeightDecay = decoupledWeightDecay
        self.amsgrad = amsgrad
        self.maximize = maximize
    }

    /// AdamW: Adam with decoupled weight decay (PyTorch's `torch.optim.AdamW`, default decay 0.01).
    /// - Throws: as ``init(parameters:learningRate:betas:eps:weightDecay:decoupledWeightDecay:amsgrad:maximize:)``.
    public static func adamW(
        parameters: [(name: String, parameter: Parameter)], learningRate: Float = 1e-3,
        betas: (Float, Float) = (0.9, 0.999), eps: Float = 1e-8, weightDecay: Float = 0.01, amsgrad: Bool = false,
        maximize: Bool = false
    ) throws(TensorError) -> Adam {
        try Adam(parameters: parameters, learningRate: learningRate, betas: betas, eps: eps,
                 weightDecay: weightDecay, decoupledWeightDecay: true, amsgrad: amsgrad, maximize: maximize)
    }

    /// PyTorch's class name: `"Adam"` or `"AdamW"`.
    public var kind: String { decoupledWeightDecay ? "AdamW" : "Adam" }

    /// The state: buffers `exp_avg`, `exp_avg_sq` (without bias correction) and, with AMSGrad,
    /// `max_exp_avg_sq`, for every parameter that has taken a step; hyperparameters `lr`, `beta1`,
    /// `beta2`, `eps`, `weight_decay`, `amsgrad`, `maximize` (0/1) and `step_count`.
    public var state: OptimizerState {
        var steps: [String: Int] = [:]
        var expAvg = NamedTensors(), expAvgSq = NamedTensors(), maxExpAvgSq = NamedTensors()
        for (name, _) in parameters {
            guard let slot = slots[name] else { continue }
            steps[name] = slot.step
            expAvg[name] = slot.expAvg
            expAvgSq[name] = slot.expAvgSq
            if let m = slot.maxExpAvgSq { maxExpAvgSq[name] = m }
        }
        var buffers = ["exp_avg": expAvg, "exp_avg_sq": expAvgSq]
        if amsgrad { buffers["max_exp_avg_sq"] = maxExpAvgSq }
        let decimal = OptimizerSupport.pythonFloat
        return OptimizerState(
            kind: kind,
            hyperparameters: [
                "lr": decimal(learningRate), "beta1": decimal(betas.0), "beta2": decimal(betas.1), "eps": decimal(eps),
                "weight_decay": decimal(weightDecay), "amsgrad": amsgrad ? 1 : 0, "maximize": maximize ? 1 : 0,
                "step_count": Double(stepCount),
            ],
            steps: steps, buffers: buffers)
    }

    /// Replaces the buffers and steps with `state` (resuming). Hyperparameters stay this
    /// optimizer's own. Parameters absent from `state.steps` start fresh.
    /// - Throws: ``TensorError`` for a state of another kind, an unknown parameter, or a missing,
    ///   mis-shaped or non-finite buffer (naming the parameter and the buffer).
    public func loadState(_ state: OptimizerState) throws(TensorError) {
        try OptimizerSupport.checkKind(state, kind: kind, parameters: parameters)
        var newSlots: [String: Slot] = [:]
        for (name, parameter) in parameters {
            guard let step = state.steps[name] else { continue }
            let shape = parameter.value.shape
            newSlots[name] = Slot(
                step: step,
                expAvg: try OptimizerSupport.buffer("exp_avg", of: name, shape: shape, in: state),
                expAvgSq: try OptimizerSupport.buffer("exp_avg_sq", of: name, shape: shape, in: state),
                maxExpAvgSq: amsgrad ? try OptimizerSupport.buffer("max_exp_avg_sq", of: name, shape: shape, in: state) : nil)
        }
        let count = try OptimizerSupport.stepCount(of: state)
        slots = newSlots
        stepCount = count
    }

    /// Applies one Adam step to every parameter with `requiresGradient`; call ``Optimizer/step(batchSize:)``.
    /// - Throws: ``TensorError`` when a gradient is missing or mis-shaped.
    public func applyUpdate(gradients: NamedTensors) throws(TensorError) {
        let beta1 = OptimizerSupport.pythonFloat(betas.0), beta2 = OptimizerSupport.pythonFloat(betas.1)
        let lr = OptimizerSupport.pythonFloat(learningRate), weightDecay = OptimizerSupport.pythonFloat(self.weightDecay)
        // PyTorch passes `1 - beta` as a Python float (double) that the kernel casts to float32.
        let oneMinusBeta1 = Float(1 - beta1), oneMinusBeta2 = Float(1 - beta2), beta2Float = Float(beta2)
        // Validate every gradient before changing anything, so that an error leaves no half-applied step.
        var work: [(name: String, parameter: Parameter, gradient: Tensor)] = []
        for (name, parameter) in parameters where parameter.requiresGradient {
            let gradient = try gradients.tensor(named: name)
            try gradient.checkShape(parameter.value.shape, "gradient of '\(name)'")
            work.append((name, parameter, gradient))
        }
        for (name, parameter, gradient) in work {
            var slot = slots.removeValue(forKey: name) ?? Slot(
                expAvg: Tensor(zeros: parameter.value.shape), expAvgSq: Tensor(zeros: parameter.value.shape),
                maxExpAvgSq: amsgrad ? Tensor(zeros: parameter.value.shape) : nil)
            slot.step += 1
            let decay = weightDecay != 0 && decoupledWeightDecay ? Float(1 - lr * weightDecay) : nil  // param.mul_(1 - lr * weight_decay)
            let l2 = decoupledWeightDecay ? Float(0) : Float(weightDecay)
            let step = Double(slot.step)
            let biasCorrection1 = 1 - Foundation.pow(beta1, step)  // Python's beta1 ** step (libm pow)
            let biasCorrection2 = 1 - Foundation.pow(beta2, step)
            let constants = Constants(
                sign: maximize ? -1 : 1, l2: l2, oneMinusBeta1: oneMinusBeta1, oneMinusBeta2: oneMinusBeta2, beta2: beta2Float,
                negativeStepSize: Float(-(lr / biasCorrection1)), biasCorrection2Sqrt: Float(biasCorrection2.squareRoot()), eps: eps)
            if slot.maxExpAvgSq != nil {
                if let decay { parameter.value.scale(by: decay) }
                Self.updateAMSGrad(gradient: gradient, slot: &slot, theta: &parameter.value, constants)
            } else {
                Self.update(gradient: gradient, slot: &slot, theta: &parameter.value, decay: decay, constants)
            }
            slots[name] = slot
        }
        stepCount += 1
    }

    /// The update without AMSGrad, split over the threads in contiguous chunks (every element is
    /// independent, so the result is the same bits at any thread count). Each chunk first applies the
    /// decoupled decay `θ ← θ·decay` (when given) and then the moments and step, one pass over memory.
    private static func update(gradient: Tensor, slot: inout Slot, theta: inout Tensor, decay: Float?, _ k: Constants) {
        gradient.withUnsafeBufferPointer { g in
            slot.expAvg.withUnsafeMutableBufferPointer { m in
                slot.expAvgSq.withUnsafeMutableBufferPointer { v in
                    theta.withUnsafeMutableBufferPointer { t in
                        guard let gBase = g.baseAddress else { return }
                        let (gp, mp, vp, tp) = (SendablePointer(gBase), SendablePointer(m.baseAddress!), SendablePointer(v.baseAddress!), SendablePointer(t.baseAddress!))
                        parallelChunks(count: g.count, minimumPerThread: 1 << 16) { start, end in
                            // The element-wise rule in C (SIMD, FMA instructions instead of libm `fmaf` calls; bit-identical),
                            // the decoupled decay θ·decay first in the same pass.
                            csq_adam_update(
                                end - start, gp.pointer + start, mp.pointer + start, vp.pointer + start, tp.pointer + start, k.sign, k.l2,
                                k.oneMinusBeta1, k.oneMinusBeta2, k.beta2, k.negativeStepSize, k.biasCorrection2Sqrt, k.eps, decay ?? 1)
                        }
                    }
                }
            }
        }
    }

    /// The update with AMSGrad (`max_exp_avg_sq`), one element at a time in Swift.
    private static func updateAMSGrad(gradient: Tensor, slot: inout Slot, theta parameter: inout Tensor, _ k: Constants) {
        var maxExpAvgSq = slot.maxExpAvgSq.take()!
        gradient.withUnsafeBufferPointer { g in
            slot.expAvg.withUnsafeMutableBufferPointer { m in
                slot.expAvgSq.withUnsafeMutableBufferPointer { v in
                    parameter.withUnsafeMutableBufferPointer { theta in
                        maxExpAvgSq.withUnsafeMutableBufferPointer { vm in
                            for i in 0..<g.count {
                                var gi = k.sign * g[i]
                                if k.l2 != 0 { gi = gi.addingProduct(theta[i], k.l2) }  // grad.add(param, alpha=weight_decay)
                                m[i] = m[i].addingProduct(k.oneMinusBeta1, gi - m[i])           // lerp_, one rounding
                                v[i] = (v[i] * k.beta2).addingProduct(k.oneMinusBeta2 * gi, gi)  // mul_ then addcmul_
                                vm[i] = max(vm[i], v[i])  // torch.maximum(max_exp_avg_sq, exp_avg_sq)
                                let denominator = vm[i].squareRoot() / k.biasCorrection2Sqrt + k.eps
                                theta[i] = (k.negativeStepSize * m[i]) / denominator + theta[i]  // addcdiv_
                            }
                        }
                    }
                }
            }
        }
        slot.maxExpAvgSq = maxExpAvgSq
    }
}
