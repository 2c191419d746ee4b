import SquisherLayers
import SquisherTensor

/// RMSprop (Hinton's lecture 6e; centered variant of Graves 2013) with PyTorch's semantics
/// (`torch.optim.RMSprop`, `foreach=False`).
///
/// Per parameter, with gradient `g`:
/// - `maximize`: `g ← −g`; weight decay: `g ← g + weight_decay·θ`.
/// - `square_avg ← α·square_avg + (1 − α)·g²`.
/// - centered: `grad_avg ← α·grad_avg + (1 − α)·g` (PyTorch's `lerp_`),
///   `avg = sqrt(max(square_avg − grad_avg², 0)) + eps` (the variance is non-negative in exact
///   arithmetic; the clamp keeps float rounding from producing PyTorch's NaN); otherwise `avg = sqrt(square_avg) + eps`.
/// - momentum `μ > 0`: `buf ← μ·buf + g/avg`, `θ ← θ − lr·buf`; otherwise `θ ← θ − lr·g/avg`.
///
/// State (``state``): `square_avg`, `momentum_buffer` (when `momentum > 0`) and `grad_avg` (when
/// centered), zero-initialized, each of the parameter's shape, plus the per-parameter `step`.
/// `square_avg` is an exponential moving average of the squared gradient **without** bias
/// correction. Values agree with PyTorch up to float32 rounding (PyTorch's vectorized kernels fuse
/// some multiply-adds; this loop does not).
public final class RMSprop: Optimizer {
    /// Step size `lr` (PyTorch default 1e-2). Mutable, for learning-rate schedules.
    public var learningRate: Float
    /// Smoothing constant α of the squared-gradient average (default 0.99).
    public let alpha: Float
    /// Term added to the denominator for numerical stability (default 1e-8).
    public let eps: Float
    /// L2 penalty added to the gradient (default 0).
    public let weightDecay: Float
    /// Momentum factor μ (default 0).
    public let momentum: Float
    /// Normalize by the estimated variance `square_avg − grad_avg²` instead of `square_avg` (default false).
    public let centered: Bool
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
        var squareAvg: Tensor
        var momentumBuffer: Tensor?
        var gradAvg: Tensor?
    }
    private var slots: [String: Slot] = [:]

    /// Creates RMSprop over named parameters.
    /// - Throws: ``TensorError/invalidArgument(argument:reason:)`` naming the argument for a
    ///   negative or non-finite learning rate, eps, weight decay or momentum, `alpha` outside
    ///   [0, 1], or two parameters with one name.
    public init(
        parameters: [(name: String, parameter: Parameter)], learningRate: Float = 1e-2, alpha: Float = 0.99,
        eps: Float = 1e-8, weightDecay: Float = 0, momentum: Float = 0, centered: Bool = false, maximize: Bool = false
    ) throws(TensorError) {
        try OptimizerSupport.requireNonNegative(learningRate, "learningRate")
        try OptimizerSupport.require(alpha, in: 0...1, "alpha")
        try OptimizerSupport.requireNonNegative(eps, "eps")
        try OptimizerSupport.requireNonNegative(weightDecay, "weightDecay")
        try OptimizerSupport.requireNonNegative(momentum, "momentum")
        try OptimizerSupport.requireUniqueNames(parameters)
        self.parameters = parameters
        self.learningRate = learningRate
        self.alpha = alpha
        self.eps = eps
        self.weightDecay = weightDecay
        self.momentum = momentum
        self.centered = centered
        self.maximize = maximize
    }

    /// PyTorch's class name, `"RMSprop"`.
    public var kind: String { "RMSprop" }

    /// The state: buffers `square_avg`, `momentum_buffer` (when `momentum > 0`) and `grad_avg`
    /// (when centered) for every parameter that has taken a step; hyperparameters `lr`, `alpha`,
    /// `eps`, `weight_decay`, `momentum`, `centered`, `maximize` (0/1) and `step_count`.
    public var state: OptimizerState {
        var steps: [String: Int] = [:]
        var squareAvg = NamedTensors(), momentumBuffer = NamedTensors(), gradAvg = NamedTensors()
        for (name, _) in parameters {
            guard let slot = slots[name] else { continue }
            steps[name] = slot.step
            squareAvg[name] = slot.squareAvg
            if let buffer = slot.momentumBuffer { momentumBuffer[name] = buffer }
            if let average = slot.gradAvg { gradAvg[name] = average }
        }
        var buffers = ["square_avg": squareAvg]
        if momentum > 0 { buffers["momentum_buffer"] = momentumBuffer }
        if centered { buffers["grad_avg"] = gradAvg }
        let decimal = OptimizerSupport.pythonFloat
        return OptimizerState(
            kind: kind,
            hyperparameters: [
                "lr": decimal(learningRate), "alpha": decimal(alpha), "eps": decimal(eps),
                "weight_decay": decimal(weightDecay), "momentum": decimal(momentum), "centered": centered ? 1 : 0,
                "maximize": maximize ? 1 : 0, "step_count": Double(stepCount),
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
                squareAvg: try OptimizerSupport.buffer("square_avg", of: name, shape: shape, in: state),
                momentumBuffer: momentum > 0
                    ? try OptimizerSupport.buffer("momentum_buffer", of: name, shape: shape, in: state) : nil,
                gradAvg: centered ? try OptimizerSupport.buffer("grad_avg", of: name, shape: shape, in: state) : nil)
        }
        let count = try OptimizerSupport.stepCount(of: state)
        slots = newSlots
        stepCount = count
    }

    /// Applies one RMSprop step to every parameter with `requiresGradient`; call ``Optimizer/step(batchSize:)``.
    /// - Throws: ``TensorError`` when a gradient is missing or mis-shaped.
    public func applyUpdate(gradients: NamedTensors) throws(TensorError) {
        var work: [(name: String, parameter: Parameter, gradient: Tensor)] = []
        for (name, parameter) in parameters where parameter.requiresGradient {
            let gradient = try gradients.tensor(named: name)
            try gradient.checkShape(parameter.value.shape, "gradient of '\(name)'")
            work.append((name, parameter, gradient))
        }
        let alpha = self.alpha, oneMinusAlpha = Float(1 - OptimizerSupport.pythonFloat(alpha))
        let negativeLR = -learningRate, eps = self.eps, mu = momentum, weightDecay = self.weightDecay
        let sign: Float = maximize ? -1 : 1, centered = self.centered
        for (name, parameter, gradient) in work {
            let shape = parameter.value.shape
            var slot = slots.removeValue(forKey: name) ?? Slot(
                squareAvg: Tensor(zeros: shape), momentumBuffer: mu > 0 ? Tensor(zeros: shape) : nil,
                gradAvg: centered ? Tensor(zeros: shape) : nil)
            slot.step += 1
            // Unused buffers are empty placeholders; the loop touches them only when enabled.
            var buffer = slot.momentumBuffer.take() ?? Tensor(zeros: [0])
            var average = slot.gradAvg.take() ?? Tensor(zeros: [0])
            gradient.withUnsafeBufferPointer { g in
                slot.squareAvg.withUnsafeMutableBufferPointer { s in
                    buffer.withUnsafeMutableBufferPointer { b in
                        average.withUnsafeMutableBufferPointer { a in
                            parameter.value.withUnsafeMutableBufferPointer { theta in
                                guard let gBase = g.baseAddress, let sBase = s.baseAddress, let thetaBase = theta.baseAddress else { return }
                                let count = g.count
                                var index = 0
                                while index < count {
                                    var d = Lanes.load(gBase, index, count) * sign
                                    var value = Lanes.load(thetaBase, index, count)
                                    if weightDecay != 0 { d = value * weightDecay + d }
                                    let squareAvg = Lanes.load(sBase, index, count) * alpha + oneMinusAlpha * d * d
                                    Lanes.store(squareAvg, sBase, index, count)
                                    var variance = squareAvg
                                    if centered, let aBase = a.baseAddress {
                                        var gradAvg = Lanes.load(aBase, index, count)
                                        gradAvg = oneMinusAlpha * (d - gradAvg) + gradAvg  // lerp_(grad, 1 - alpha)
                                        Lanes.store(gradAvg, aBase, index, count)
                                        // addcmul(grad_avg, grad_avg, value=-1), clamped at 0 against rounding.
                                        variance = pointwiseMax(-gradAvg * gradAvg + squareAvg, Lanes.Vector())
                                    }
                                    let denominator = variance.squareRoot() + eps
                                    if mu > 0, let bBase = b.baseAddress {
                                        let momentumBuffer = Lanes.load(bBase, index, count) * mu + d / denominator
                                        Lanes.store(momentumBuffer, bBase, index, count)
                                        value = momentumBuffer * negativeLR + value
                                    } else {
                                        value = negativeLR * d / denominator + value
                                    }
                                    Lanes.store(value, thetaBase, index, count)
                                    index += Lanes.width
                                }
                            }
                        }
                    }
                }
            }
            if mu > 0 { slot.momentumBuffer = buffer }
            if centered { slot.gradAvg = average }
            slots[name] = slot
        }
        stepCount += 1
    }
}
