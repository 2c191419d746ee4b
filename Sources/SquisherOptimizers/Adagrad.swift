import SquisherLayers
import SquisherTensor

/// Adagrad (Duchi, Hazan & Singer 2011) with PyTorch's semantics (`torch.optim.Adagrad`,
/// `foreach=False`, dense gradients).
///
/// Per parameter, with gradient `g` at the parameter's step `t` (1-based):
/// - `maximize`: `g ← −g`; weight decay: `g ← g + weight_decay·θ`.
/// - `clr = lr / (1 + (t − 1)·lr_decay)` (double precision, as PyTorch's Python scalar).
/// - `sum ← sum + g²`; `θ ← θ − clr · g / (sqrt(sum) + eps)`.
///
/// State (``state``): `sum` per parameter, initialized to `initial_accumulator_value` for every
/// parameter when the optimizer is created (as PyTorch), and the per-parameter `step` (0 before the
/// first update). `sum` is the *sum* (not the mean) of the squared gradients. Values agree with
/// PyTorch up to float32 rounding (PyTorch's vectorized kernels fuse some multiply-adds).
public final class Adagrad: Optimizer {
    /// Step size `lr` (PyTorch default 1e-2). Mutable, for learning-rate schedules.
    public var learningRate: Float
    /// Learning-rate decay: step `t` uses `lr / (1 + (t − 1)·lr_decay)` (default 0).
    public let learningRateDecay: Float
    /// L2 penalty added to the gradient (default 0).
    public let weightDecay: Float
    /// The starting value of every element of `sum` (default 0).
    public let initialAccumulatorValue: Float
    /// Term added to the denominator for numerical stability (default 1e-10).
    public let eps: Float
    /// Maximize the objective instead of minimizing it (the gradient's sign is flipped).
    public let maximize: Bool

    /// The parameters this optimizer updates, by name, in model order.
    public let parameters: [(name: String, parameter: Parameter)]
    /// The registered step hooks.
    public let hooks = StepHookRegistry()
    /// The number of completed steps.
    public private(set) var stepCount = 0

    private var steps: [String: Int] = [:]
    private var sums: [String: Tensor] = [:]

    /// Creates Adagrad over named parameters.
    /// - Throws: ``TensorError/invalidArgument(argument:reason:)`` naming the argument for a
    ///   negative or non-finite learning rate, learning-rate decay, weight decay, initial
    ///   accumulator value or eps, or two parameters with one name.
    public init(
        parameters: [(name: String, parameter: Parameter)], learningRate: Float = 1e-2, learningRateDecay: Float = 0,
        weightDecay: Float = 0, initialAccumulatorValue: Float = 0, eps: Float = 1e-10, maximize: Bool = false
    ) throws(TensorError) {
        try OptimizerSupport.requireNonNegative(learningRate, "learningRate")
        try OptimizerSupport.requireNonNegative(learningRateDecay, "learningRateDecay")
        try OptimizerSupport.requireNonNegative(weightDecay, "weightDecay")
        try OptimizerSupport.requireNonNegative(initialAccumulatorValue, "initialAccumulatorValue")
        try OptimizerSupport.requireNonNegative(eps, "eps")
        try OptimizerSupport.requireUniqueNames(parameters)
        self.parameters = parameters
        self.learningRate = learningRate
        self.learningRateDecay = learningRateDecay
        self.weightDecay = weightDecay
        self.initialAccumulatorValue = initialAccumulatorValue
        self.eps = eps
        self.maximize = maximize
        resetState()
    }

    private func resetState() {
        steps = [:]
        sums = [:]
        for (name, parameter) in parameters {
            steps[name] = 0
            sums[name] = Tensor(repeating: initialAccumulatorValue, shape: parameter.value.shape)
        }
    }

    /// PyTorch's class name, `"Adagrad"`.
    public var kind: String { "Adagrad" }

    /// The state: buffer `sum` for every parameter; hyperparameters `lr`, `lr_decay`,
    /// `weight_decay`, `initial_accumulator_value`, `eps`, `maximize` (0/1) and `step_count`.
    public var state: OptimizerState {
        var sum = NamedTensors()
        for (name, _) in parameters { if let tensor = sums[name] { sum[name] = tensor } }
        let decimal = OptimizerSupport.pythonFloat
        return OptimizerState(
            kind: kind,
            hyperparameters: [
                "lr": decimal(learningRate), "lr_decay": decimal(learningRateDecay),
                "weight_decay": decimal(weightDecay), "initial_accumulator_value": decimal(initialAccumulatorValue),
                "eps": decimal(eps), "maximize": maximize ? 1 : 0, "step_count": Double(stepCount),
            ],
            steps: steps, buffers: ["sum": sum])
    }

    /// Replaces the accumulators and steps with `state` (resuming). Hyperparameters stay this
    /// optimizer's own. Parameters absent from `state.steps` restart from `initial_accumulator_value`.
    /// - Throws: ``TensorError`` for a state of another kind, an unknown parameter, or a missing,
    ///   mis-shaped or non-finite `sum` (naming the parameter).
    public func loadState(_ state: OptimizerState) throws(TensorError) {
        try OptimizerSupport.checkKind(state, kind: kind, parameters: parameters)
        var newSteps: [String: Int] = [:], newSums: [String: Tensor] = [:]
        for (name, parameter) in parameters {
            let shape = parameter.value.shape
            if let step = state.steps[name] {
                newSteps[name] = step
                newSums[name] = try OptimizerSupport.buffer("sum", of: name, shape: shape, in: state)
            } else {
                newSteps[name] = 0
                newSums[name] = Tensor(repeating: initialAccumulatorValue, shape: shape)
            }
        }
        let count = try OptimizerSupport.stepCount(of: state)
        steps = newSteps
        sums = newSums
        stepCount = count
    }

    /// Applies one Adagrad step to every parameter with `requiresGradient`; call ``Optimizer/step(batchSize:)``.
    /// - Throws: ``TensorError`` when a gradient is missing or mis-shaped.
    public func applyUpdate(gradients: NamedTensors) throws(TensorError) {
        var work: [(name: String, parameter: Parameter, gradient: Tensor)] = []
        for (name, parameter) in parameters where parameter.requiresGradient {
            let gradient = try gradients.tensor(named: name)
            try gradient.checkShape(parameter.value.shape, "gradient of '\(name)'")
            work.append((name, parameter, gradient))
        }
        let lr = OptimizerSupport.pythonFloat(learningRate), decay = OptimizerSupport.pythonFloat(learningRateDecay)
        let eps = self.eps, weightDecay = self.weightDecay, sign: Float = maximize ? -1 : 1
        for (name, parameter, gradient) in work {
            let step = (steps[name] ?? 0) + 1
            let negativeCLR = Float(-(lr / (1 + Double(step - 1) * decay)))
            var sum = sums.removeValue(forKey: name) ?? Tensor(repeating: initialAccumulatorValue, shape: parameter.value.shape)
            gradient.withUnsafeBufferPointer { g in
                sum.withUnsafeMutableBufferPointer { s in
                    parameter.value.withUnsafeMutableBufferPointer { theta in
                        guard let gBase = g.baseAddress, let sBase = s.baseAddress, let thetaBase = theta.baseAddress else { return }
                        let count = g.count
                        var index = 0
                        while index < count {
                            var d = Lanes.load(gBase, index, count) * sign
                            var value = Lanes.load(thetaBase, index, count)
                            if weightDecay != 0 { d = value * weightDecay + d }
                            let accumulated = d * d + Lanes.load(sBase, index, count)  // addcmul_(grad, grad, value=1)
                            Lanes.store(accumulated, sBase, index, count)
                            value = negativeCLR * d / (accumulated.squareRoot() + eps) + value  // addcdiv_
                            Lanes.store(value, thetaBase, index, count)
                            index += Lanes.width
                        }
                    }
                }
            }
            sums[name] = sum
            steps[name] = step
        }
        stepCount += 1
    }
}
