import SquisherLayers
import SquisherTensor

/// Stochastic gradient descent with momentum, dampening, Nesterov momentum and L2 weight decay,
/// with PyTorch's semantics (`torch.optim.SGD`, `foreach=False`).
///
/// Per parameter, with gradient `g`:
/// - `maximize`: `g ← −g`; weight decay: `g ← g + weight_decay·θ`.
/// - With momentum `μ ≠ 0`: `b ← g` on the parameter's first step (PyTorch clones the gradient,
///   no dampening), afterwards `b ← μ·b + (1 − dampening)·g`; then `g ← g + μ·b` (Nesterov) or
///   `g ← b`.
/// - `θ ← θ − lr·g`.
///
/// State (``state``): `momentum_buffer` per parameter (only when `momentum ≠ 0`, as PyTorch) and
/// the per-parameter `step`. Values agree with PyTorch up to float32 rounding (PyTorch's vectorized
/// kernels fuse some multiply-adds; this loop does not).
public final class SGD: Optimizer {
    /// Step size `lr` (PyTorch ≥ 2.2 default 1e-3). Mutable, for learning-rate schedules.
    public var learningRate: Float
    /// Momentum factor μ (default 0: plain SGD).
    public let momentum: Float
    /// Dampening of the gradient in the momentum average (default 0); not applied on the first step.
    public let dampening: Float
    /// L2 penalty added to the gradient (default 0).
    public let weightDecay: Float
    /// Nesterov momentum (default false; needs `momentum > 0` and `dampening == 0`).
    public let nesterov: Bool
    /// Maximize the objective instead of minimizing it (the gradient's sign is flipped).
    public let maximize: Bool

    /// The parameters this optimizer updates, by name, in model order.
    public let parameters: [(name: String, parameter: Parameter)]
    /// The registered step hooks.
    public let hooks = StepHookRegistry()
    /// The number of completed steps.
    public private(set) var stepCount = 0

    private var steps: [String: Int] = [:]
    private var momentumBuffers: [String: Tensor] = [:]

    /// Creates SGD over named parameters.
    /// - Throws: ``TensorError/invalidArgument(argument:reason:)`` naming the argument for a
    ///   negative or non-finite learning rate, momentum or weight decay, a non-finite dampening,
    ///   Nesterov without positive momentum and zero dampening, or two parameters with one name.
    public init(
        parameters: [(name: String, parameter: Parameter)], learningRate: Float = 1e-3, momentum: Float = 0,
        dampening: Float = 0, weightDecay: Float = 0, nesterov: Bool = false, maximize: Bool = false
    ) throws(TensorError) {
        try OptimizerSupport.requireNonNegative(learningRate, "learningRate")
        try OptimizerSupport.requireNonNegative(momentum, "momentum")
        guard dampening.isFinite else {
            throw .invalidArgument(argument: "dampening", reason: "must be finite, got \(dampening)")
        }
        try OptimizerSupport.requireNonNegative(weightDecay, "weightDecay")
        if nesterov && (momentum <= 0 || dampening != 0) {
            throw .invalidArgument(argument: "nesterov", reason: "requires momentum > 0 and dampening == 0, got momentum \(momentum), dampening \(dampening)")
        }
        try OptimizerSupport.requireUniqueNames(parameters)
        self.parameters = parameters
        self.learningRate = learningRate
        self.momentum = momentum
        self.dampening = dampening
        self.weightDecay = weightDecay
        self.nesterov = nesterov
        self.maximize = maximize
    }

    /// PyTorch's class name, `"SGD"`.
    public var kind: String { "SGD" }

    /// The state: buffer `momentum_buffer` (when `momentum ≠ 0`) for every parameter that has taken
    /// a step; hyperparameters `lr`, `momentum`, `dampening`, `weight_decay`, `nesterov`,
    /// `maximize` (0/1) and `step_count`.
    public var state: OptimizerState {
        var buffers: [String: NamedTensors] = [:]
        if momentum != 0 {
            var named = NamedTensors()
            for (name, _) in parameters { if let buffer = momentumBuffers[name] { named[name] = buffer } }
            buffers["momentum_buffer"] = named
        }
        let decimal = OptimizerSupport.pythonFloat
        return OptimizerState(
            kind: kind,
            hyperparameters: [
                "lr": decimal(learningRate), "momentum": decimal(momentum), "dampening": decimal(dampening),
                "weight_decay": decimal(weightDecay), "nesterov": nesterov ? 1 : 0, "maximize": maximize ? 1 : 0,
                "step_count": Double(stepCount),
            ],
            steps: steps, buffers: buffers)
    }

    /// Replaces the momentum buffers and steps with `state` (resuming). Hyperparameters stay this
    /// optimizer's own. Parameters absent from `state.steps` start fresh.
    /// - Throws: ``TensorError`` for a state of another kind, an unknown parameter, or a missing,
    ///   mis-shaped or non-finite `momentum_buffer` (naming the parameter).
    public func loadState(_ state: OptimizerState) throws(TensorError) {
        try OptimizerSupport.checkKind(state, kind: kind, parameters: parameters)
        var newSteps: [String: Int] = [:], newBuffers: [String: Tensor] = [:]
        for (name, parameter) in parameters {
            guard let step = state.steps[name] else { continue }
            newSteps[name] = step
            if momentum != 0 && step > 0 {
                newBuffers[name] = try OptimizerSupport.buffer(
                    "momentum_buffer", of: name, shape: parameter.value.shape, in: state)
            }
        }
        let count = try OptimizerSupport.stepCount(of: state)
        steps = newSteps
        momentumBuffers = newBuffers
        stepCount = count
    }

    /// Applies one SGD step to every parameter with `requiresGradient`; call ``Optimizer/step(batchSize:)``.
    /// - Throws: ``TensorError`` when a gradient is missing or mis-shaped.
    public func applyUpdate(gradients: NamedTensors) throws(TensorError) {
        var work: [(name: String, parameter: Parameter, gradient: Tensor)] = []
        for (name, parameter) in parameters where parameter.requiresGradient {
            let gradient = try gradients.tensor(named: name)
            try gradient.checkShape(parameter.value.shape, "gradient of '\(name)'")
            work.append((name, parameter, gradient))
        }
        let negativeLR = -learningRate, mu = momentum, weightDecay = self.weightDecay
        let oneMinusDampening = Float(1 - OptimizerSupport.pythonFloat(dampening))
        let sign: Float = maximize ? -1 : 1, nesterov = self.nesterov
        for (name, parameter, gradient) in work {
            let firstStep = momentumBuffers[name] == nil
            var buffer = momentumBuffers.removeValue(forKey: name) ?? Tensor(zeros: mu != 0 ? parameter.value.shape : [0])
            gradient.withUnsafeBufferPointer { g in
                buffer.withUnsafeMutableBufferPointer { b in
                    parameter.value.withUnsafeMutableBufferPointer { theta in
                        guard let gBase = g.baseAddress, let thetaBase = theta.baseAddress else { return }
                        let count = g.count
                        var index = 0
                        while index < count {
                            var d = Lanes.load(gBase, index, count) * sign
                            var value = Lanes.load(thetaBase, index, count)
                            if weightDecay != 0 { d = value * weightDecay + d }
                            if mu != 0, let bBase = b.baseAddress {
                                let previous = Lanes.load(bBase, index, count)
                                let updated = firstStep ? d : previous * mu + oneMinusDampening * d
                                Lanes.store(updated, bBase, index, count)
                                d = nesterov ? updated * mu + d : updated
                            }
                            value = d * negativeLR + value
                            Lanes.store(value, thetaBase, index, count)
                            index += Lanes.width
                        }
                    }
                }
            }
            if mu != 0 { momentumBuffers[name] = buffer }
            steps[name, default: 0] += 1
        }
        stepCount += 1
    }
}
