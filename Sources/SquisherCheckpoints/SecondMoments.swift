import SquisherTensor

/// The second moments of an optimizer's parameters, keyed by parameter name, with what the
/// Squisher needs to use them: steps, each parameter's EMA decay, and the parameters without state.
public struct SecondMoments: Sendable {
    /// The second moment of every parameter with state, float32, in the parameter's shape, in
    /// optimizer order.
    public var values: NamedTensors
    /// What was read (`exp_avg_sq`, Adafactor's factors, bitsandbytes' `state2`, ...).
    public var source: SecondMomentSource
    /// Each parameter's step count (validated: a finite, non-negative integer).
    public var steps: [String: Int]
    /// Each parameter's EMA decay: its param group's `betas[1]` (`alpha` for RMSprop); absent when the
    /// decay is not a constant (Adafactor) or there is no EMA (Adagrad).
    public var decay: [String: Double]
    /// Parameters the optimizer lists without state (frozen, or never given a gradient).
    public var parametersWithoutState: [String]

    /// Creates a value from its parts.
    public init(values: NamedTensors, source: SecondMomentSource, steps: [String: Int], decay: [String: Double], parametersWithoutState: [String]) {
        self.values = values
        self.source = source
        self.steps = steps
        self.decay = decay
        self.parametersWithoutState = parametersWithoutState
    }

    /// A step count as an integer.
    /// - Throws: ``CheckpointError`` naming the file and parameter for a NaN, infinite, negative,
    ///   fractional or huge (> 2⁵³) step, instead of trapping in a conversion.
    public static func stepCount(_ step: Double, parameter: String, path: String) throws(CheckpointError) -> Int {
        guard step.isFinite, step >= 0, step <= 9_007_199_254_740_992, step.rounded() == step else {
            throw CheckpointError(path: path, problem: "step of parameter '\(parameter)' is \(step); expected a finite, non-negative whole number of optimizer steps (at most 2^53)")
        }
        return Int(step)
    }

    /// Why an optimizer kind has no second moment to recycle, or `nil` when it has one.
    public static func refusal(for kind: TorchOptimizerState.Kind, buffers: Set<String>) -> String? {
        switch kind {
        case .adam, .adamW, .adamOrAdamW, .nadam, .radam, .rmsprop, .adagrad, .adafactor:
            return nil
        case .bitsAndBytes:
            return buffers.contains("state2") ? nil
                : "this bitsandbytes optimizer keeps only state1 (Lion or momentum: a first moment), so it has no second moment of the gradients to recycle"
        case .adamax:
            return "Adamax keeps exp_inf = max(beta2 * u, |g| + eps), an infinity norm of past gradients, not a second moment (an average of squared gradients); it cannot stand in for the Fisher"
        case .sgd:
            return "SGD keeps only momentum_buffer (or nothing): no second moment of the gradients"
        case .lion:
            return "Lion keeps only exp_avg, a first moment (a momentum of the gradients): no second moment"
        case .unknown:
            return "the optimizer state (buffers \(buffers.sorted())) has no recognised second moment (expected Adam/NAdam/RAdam exp_avg_sq, RMSprop square_avg, Adagrad sum, Adafactor exp_avg_sq_row/col or bitsandbytes state2)"
        }
    }

    /// Reads the second moment of every named parameter of `state`.
    /// - Parameters:
    ///   - names: the parameter name of every optimizer index.
    ///   - path: the optimizer file, for messages.
    /// - Throws: ``CheckpointError`` with the reason when the optimizer has no second moment (Adamax,
    ///   SGD, Lion, ...), a parameter's state is incomplete, or a step is not a valid count.
    public init(_ state: TorchOptimizerState, names: [Int: String], path: String) throws(CheckpointError) {
        let buffers = Set(state.states.values.flatMap(\.bufferNames))
        if let reason = Self.refusal(for: state.kind, buffers: buffers) {
            throw CheckpointError(path: path, problem: "cannot recycle a second moment: \(reason)")
        }
        source = switch state.kind {
        case .rmsprop: .squareAvg
        case .adagrad: .sum
        case .adafactor: .adafactorFactored
        case .bitsAndBytes: .bitsAndBytesState2
        default: .expAvgSq
        }
        values = NamedTensors()
        steps = [:]
        decay = [:]
        parametersWithoutState = []
        for group in state.groups {
            let groupDecay: Double? = switch state.kind {
            case .rmsprop: group.hyperparameters[.string("alpha")]?.doubleValue
            case .adagrad, .adafactor: nil
            default: group.betas?.1
            }
            for index in group.parameterIndices {
                let name = names[index] ?? "#\(index)"
                guard let parameter = state.states[index], !parameter.buffers.isEmpty else {
                    parametersWithoutState.append(name)
                    continue
                }
                values[name] = try Self.moment(of: parameter, kind: state.kind, source: source, name: name, path: path)
                if let step = parameter.step { steps[name] = try Self.stepCount(step, parameter: name, path: path) }
                if let groupDecay { decay[name] = groupDecay }
            }
        }
    }

    /// One parameter's second moment.
    static func moment(
        of parameter: TorchOptimizerState.ParameterState, kind: TorchOptimizerState.Kind, source: SecondMomentSource, name: String, path: String
    ) throws(CheckpointError) -> Tensor {
        let buffers = parameter.buffers
        switch source {
        case .bitsAndBytesState2:
            guard let state2 = buffers["state2"] else {
                throw CheckpointError(path: path, problem: "bitsandbytes state of '\(name)' has no state2 (buffers \(parameter.bufferNames))")
            }
            return try BitsAndBytesState.secondMoment(state2: state2, qmap: buffers["qmap2"], absmax: buffers["absmax2"], parameter: name, path: path)
        case .adafactorFactored:
            if let row = buffers["exp_avg_sq_row"], let column = buffers["exp_avg_sq_col"] {
                return try AdafactorState.reconstruct(row: row.tensor, column: column.tensor, parameter: name, path: path)
            }
            guard let full = buffers["exp_avg_sq"] else {
                throw CheckpointError(path: path, problem: "Adafactor state of '\(name)' has neither exp_avg_sq_row/exp_avg_sq_col nor exp_avg_sq (buffers \(parameter.bufferNames))")
            }
            return full.tensor
        case .expAvgSq, .squareAvg, .sum:
            guard let tensor = buffers[source.rawValue] else {
                throw CheckpointError(path: path, problem: "\(kind.rawValue) state of '\(name)' has no \(source.rawValue) (buffers \(parameter.bufferNames))")
            }
            return tensor.tensor
        }
    }
}
