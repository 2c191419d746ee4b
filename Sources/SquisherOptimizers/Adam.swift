import SquisherLayers
import SquisherTensor

/// Adam (Kingma & Ba 2015) and AdamW (Loshchilov & Hutter 2019) with PyTorch's exact update
/// (`torch.optim.Adam`/`AdamW`, `foreach=False`), including AMSGrad.
///
/// Per parameter, with gradient `g` at step `t`:
/// - L2 (`Adam`): `g ← g + weight_decay·θ`; decoupled (`AdamW`): `θ ← θ·(1 − lr·weight_decay)`.
/// - `exp_avg ← exp_avg + (1−β₁)(g − exp_avg)`; `exp_avg_sq ← β₂·exp_avg_sq + (1−β₂)·g²`
///   (stored **without** bias correction: this is the Squisher's `v` [1]).
/// - `θ ← θ − (lr/(1−β₁ᵗ)) · exp_avg / (sqrt(v̂)/sqrt(1−β₂ᵗ) + eps)`, `v̂ = exp_avg_sq` or its running
///   maximum `max_exp_avg_sq` with AMSGrad.
///
/// Rounding follows PyTorch's CPU kernels (fused multiply-adds in `lerp_` and `addcmul_`), so that
/// `exp_avg` and `exp_avg_sq` match PyTorch bit for bit when fed the same gradients.
///
/// [1]: Li, Dangel, Tam, Raffel 2025, Fishers for Free?
public final class Adam: Optimizer {
    /// Step size (PyTorch default 1e-3).
    public var learningRate: Float
    /// (β₁, β₂), PyTorch default (0.9, 0.999).
    public let betas: (Float, Float)
    /// Denominator term, default 1e-8.
    public let eps: Float
    /// L2 penalty (Adam) or decoupled decay (AdamW); default 0 for Adam, 0.01 for AdamW.
    public let weightDecay: Float
    /// True for AdamW's decoupled weight decay.
    public let decoupledWeightDecay: Bool
    /// Keep the running maximum of `exp_avg_sq` (Reddi et al. 2018).
    public let amsgrad: Bool

    public let parameters: [(name: String, parameter: Parameter)]
    public let hooks = StepHookRegistry()
    public private(set) var stepCount = 0

    private struct Slot {
        var step = 0
        var expAvg: Tensor
        var expAvgSq: Tensor
        var maxExpAvgSq: Tensor?
    }
    private var slots: [String: Slot] = [:]

    /// Creates Adam (`decoupledWeightDecay: false`) or AdamW (`true`) over named parameters.
    /// - Throws: ``TensorError/invalidArgument(argument:reason:)`` for a negative learning rate,
    ///   betas outside [0, 1), negative eps or weight decay.
    public init(
        parameters: [(name: String, parameter: Parameter)], learningRate: Float = 1e-3,
        betas: (Float, Float) = (0.9, 0.999), eps: Float = 1e-8, weightDecay: Float = 0,
        decoupledWeightDecay: Bool = false, amsgrad: Bool = false
    ) throws(TensorError) {
        guard learningRate >= 0 else { throw .invalidArgument(argument: "learningRate", reason: "must be >= 0, got \(learningRate)") }
        guard (0..<1).contains(betas.0), (0..<1).contains(betas.1) else {
            throw .invalidArgument(argument: "betas", reason: "each must be in [0, 1), got \(betas)")
        }
        guard eps >= 0 else { throw .invalidArgument(argument: "eps", reason: "must be >= 0, got \(eps)") }
        guard weightDecay >= 0 else { throw .invalidArgument(argument: "weightDecay", reason: "must be >= 0, got \(weightDecay)") }
        self.parameters = parameters
        self.learningRate = learningRate
        self.betas = betas
        self.eps = eps
        self.weightDecay = weightDecay
        self.decoupledWeightDecay = decoupledWeightDecay
        self.amsgrad = amsgrad
    }

    /// AdamW: Adam with decoupled weight decay (PyTorch's `torch.optim.AdamW`, default decay 0.01).
    public static func adamW(
        parameters: [(name: String, parameter: Parameter)], learningRate: Float = 1e-3,
        betas: (Float, Float) = (0.9, 0.999), eps: Float = 1e-8, weightDecay: Float = 0.01, amsgrad: Bool = false
    ) throws(TensorError) -> Adam {
        try Adam(parameters: parameters, learningRate: learningRate, betas: betas, eps: eps,
                 weightDecay: weightDecay, decoupledWeightDecay: true, amsgrad: amsgrad)
    }

    public var kind: String { decoupledWeightDecay ? "AdamW" : "Adam" }

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
        return OptimizerState(
            kind: kind,
            hyperparameters: [
                "lr": Double(learningRate), "beta1": Double(betas.0), "beta2": Double(betas.1), "eps": Double(eps),
                "weight_decay": Double(weightDecay), "amsgrad": amsgrad ? 1 : 0, "step_count": Double(stepCount),
            ],
            steps: steps, buffers: buffers)
    }

    public func loadState(_ state: OptimizerState) throws(TensorError) {
        guard state.kind == kind else {
            throw .invalidArgument(argument: "optimizer state", reason: "is for \(state.kind), this optimizer is \(kind)")
        }
        var newSlots: [String: Slot] = [:]
        for (name, parameter) in parameters {
            guard let step = state.steps[name] else { continue }
            func buffer(_ key: String) throws(TensorError) -> Tensor {
                guard let tensor = state.buffer(key, for: name) else {
                    throw .invalidArgument(argument: "optimizer state of '\(name)'", reason: "missing buffer '\(key)'")
                }
                try tensor.checkShape(parameter.value.shape, "optimizer state '\(key)' of '\(name)'")
                return tensor
            }
            newSlots[name] = Slot(
                step: step, expAvg: try buffer("exp_avg"), expAvgSq: try buffer("exp_avg_sq"),
                maxExpAvgSq: amsgrad ? try buffer("max_exp_avg_sq") : nil)
        }
        slots = newSlots
        stepCount = state.hyperparameters["step_count"].map { Int($0) } ?? (newSlots.values.map(\.step).max() ?? 0)
    }

    public func applyUpdate(gradients: NamedTensors) throws(TensorError) {
        let beta1 = betas.0, beta2 = betas.1
        // PyTorch passes 1-beta as a Python float (double) that the kernel casts to float32.
        let oneMinusBeta1 = Float(1 - Double(beta1)), oneMinusBeta2 = Float(1 - Double(beta2))
        for (name, parameter) in parameters where parameter.requiresGradient {
            var gradient = try gradients.tensor(named: name)
            var slot = slots.removeValue(forKey: name) ?? Slot(
                expAvg: Tensor(zeros: parameter.value.shape), expAvgSq: Tensor(zeros: parameter.value.shape),
                maxExpAvgSq: amsgrad ? Tensor(zeros: parameter.value.shape) : nil)
            slot.step += 1
            if weightDecay != 0 {
                if decoupledWeightDecay {
                    parameter.value.scale(by: 1 - learningRate * weightDecay)
                } else {
                    try gradient.addScaled(parameter.value, weightDecay)
                }
            }
            let biasCorrection1 = 1 - Double(beta1).power(slot.step)
            let biasCorrection2 = 1 - Double(beta2).power(slot.step)
            let negativeStepSize = Float(-(Double(learningRate) / biasCorrection1))
            let biasCorrection2Sqrt = Float(biasCorrection2.squareRoot())
            let eps = self.eps
            let amsgrad = self.amsgrad
            gradient.withUnsafeBufferPointer { g in
                slot.expAvg.withUnsafeMutableBufferPointer { m in
                    slot.expAvgSq.withUnsafeMutableBufferPointer { v in
                        parameter.value.withUnsafeMutableBufferPointer { theta in
                            var vMax = slot.maxExpAvgSq ?? Tensor(zeros: [])
                            vMax.withUnsafeMutableBufferPointer { vm in
                                for i in 0..<g.count {
                                    let gi = g[i]
                                    m[i] = m[i].addingProduct(oneMinusBeta1, gi - m[i])       // lerp_, one rounding
                                    v[i] = (v[i] * beta2).addingProduct(oneMinusBeta2 * gi, gi)  // mul_ then addcmul_
                                    var second = v[i]
                                    if amsgrad {
                                        vm[i] = max(vm[i], v[i])
                                        second = vm[i]
                                    }
                                    let denominator = second.squareRoot() / biasCorrection2Sqrt + eps
                                    theta[i] = (negativeStepSize * m[i]) / denominator + theta[i]
                                }
                            }
                            if amsgrad { slot.maxExpAvgSq = vMax }
                        }
                    }
                }
            }
            slots[name] = slot
        }
        stepCount += 1
    }
}

extension Double {
    /// `self` to an integer power by repeated squaring (matches Python's float `**` for these
    /// exponents to the last bit in practice; used for bias corrections).
    func power(_ exponent: Int) -> Double {
        var result = 1.0, base = self, e = exponent
        while e > 0 {
            if e & 1 == 1 { result *= base }
            base *= base
            e >>= 1
        }
        return result
    }
}
