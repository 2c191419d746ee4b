import SquisherTensor

/// The second moments of an optimizer's parameters, keyed by parameter name, with what the
/// Squisher needs to use them: steps, each parameter's EMA decay, and the parameters without state.
///
/// Values are read **per parameter, on demand** (``value(of:)``) from the memory-mapped checkpoint:
/// shapes, sizes and names are checked when the state is opened, the float32 values (Adafactor's
/// reconstruction, bitsandbytes' dequantization, DeepSpeed's partitions) are computed when asked
/// for, so a caller that handles one tensor at a time holds one tensor at a time.
public struct SecondMoments: Sendable {
    /// How one parameter's second moment is computed from the file's tensors.
    enum Recipe: Sendable {
        case tensor(TorchTensor)
        case adafactor(row: TorchTensor, column: TorchTensor)
        case bitsAndBytes(state2: TorchTensor, qmap: TorchTensor?, absmax: TorchTensor?)
        case materialized(Tensor)
    }

    /// Parameters with state, in optimizer order.
    public private(set) var names: [String]
    /// Each parameter's shape.
    public private(set) var shapes: [String: [Int]]
    var recipes: [String: Recipe]
    /// The file the values come from, for messages.
    var path: String
    /// What was read (`exp_avg_sq`, Adafactor's factors, bitsandbytes' `state2`, ...).
    public var source: SecondMomentSource
    /// Each parameter's step count (validated: a finite, non-negative integer).
    public var steps: [String: Int]
    /// Each parameter's EMA decay: its param group's `betas[1]` (`alpha` for RMSprop); absent when the
    /// decay is not a constant (Adafactor) or there is no EMA (Adagrad).
    public var decay: [String: Double]
    /// Parameters the optimizer lists without state (frozen, or never given a gradient).
    public var parametersWithoutState: [String]

    /// Creates a value from materialized tensors.
    public init(values: NamedTensors, source: SecondMomentSource, steps: [String: Int], decay: [String: Double], parametersWithoutState: [String]) {
        self.init(names: values.names, recipes: Dictionary(uniqueKeysWithValues: values.map { ($0.name, Recipe.materialized($0.tensor)) }),
                  shapes: Dictionary(uniqueKeysWithValues: values.map { ($0.name, $0.tensor.shape) }), path: "",
                  source: source, steps: steps, decay: decay, parametersWithoutState: parametersWithoutState)
    }

    init(names: [String], recipes: [String: Recipe], shapes: [String: [Int]], path: String, source: SecondMomentSource,
         steps: [String: Int], decay: [String: Double], parametersWithoutState: [String]) {
        self.names = names
        self.recipes = recipes
        self.shapes = shapes
        self.path = path
        self.source = source
        self.steps = steps
        self.decay = decay
        self.parametersWithoutState = parametersWithoutState
    }

    /// Starts reading the file bytes of `name`'s second moment ahead, asynchronously (see
    /// ``MappedFile/prefetch(_:)``); unknown names are ignored.
    public func prefetch(_ name: String) {
        switch recipes[name] {
        case .tensor(let tensor): tensor.prefetchPages()
        case .adafactor(let row, let column): row.prefetchPages(); column.prefetchPages()
        case .bitsAndBytes(let state2, _, let absmax): state2.prefetchPages(); absmax?.prefetchPages()
        case .materialized, nil: break
        }
    }

    /// The second moment of `name` (float32, the parameter's shape), computed now from the file.
    /// - Throws: ``CheckpointError`` naming the file and parameter when there is no state for it or a
    ///   value is invalid (a negative or non-finite Adafactor factor).
    public func value(of name: String) throws(CheckpointError) -> Tensor {
        guard let recipe = recipes[name] else { throw CheckpointError(path: path, problem: "no optimizer state for '\(name)'") }
        switch recipe {
        case .materialized(let tensor): return tensor
        case .tensor(let tensor):
            defer { tensor.releasePages() }
            return tensor.tensor
        case .adafactor(let row, let column):
            defer { row.releasePages(); column.releasePages() }
            return try AdafactorState.reconstruct(row: row.tensor, column: column.tensor, parameter: name, path: path)
        case .bitsAndBytes(let state2, let qmap, let absmax):
            defer { state2.releasePages(); absmax?.releasePages() }
            return try BitsAndBytesState.secondMoment(state2: state2, qmap: qmap, absmax: absmax, parameter: name, path: path)
        }
    }

    /// Every second moment, in optimizer order (materializes them all; see ``value(of:)`` to hold one at a time).
    public func allValues() throws(CheckpointError) -> NamedTensors {
        var values = NamedTensors()
        for name in names { values[name] = try value(of: name) }
        return values
    }

    /// The number of elements over all parameters with state.
    public var elementCount: Int { names.reduce(0) { $0 + (shapes[$1]?.reduce(1, *) ?? 0) } }

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
        self.names = []
        recipes = [:]
        shapes = [:]
        self.path = path
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
                let (recipe, shape) = try Self.recipe(of: parameter, kind: state.kind, source: source, name: name, path: path)
                self.names.append(name)
                recipes[name] = recipe
                shapes[name] = shape
                if let step = parameter.step { steps[name] = try Self.stepCount(step, parameter: name, path: path) }
                if let groupDecay { decay[name] = groupDecay }
            }
        }
    }

    /// How to compute one parameter's second moment, and its shape, checking sizes now.
    static func recipe(
        of parameter: TorchOptimizerState.ParameterState, kind: TorchOptimizerState.Kind, source: SecondMomentSource, name: String, path: String
    ) throws(CheckpointError) -> (Recipe, [Int]) {
        let buffers = parameter.buffers
        switch source {
        case .bitsAndBytesState2:
            guard let state2 = buffers["state2"] else {
                throw CheckpointError(path: path, problem: "bitsandbytes state of '\(name)' has no state2 (buffers \(parameter.bufferNames))")
            }
            try BitsAndBytesState.check(state2: state2, qmap: buffers["qmap2"], absmax: buffers["absmax2"], parameter: name, path: path)
            return (.bitsAndBytes(state2: state2, qmap: buffers["qmap2"], absmax: buffers["absmax2"]), state2.shape)
        case .adafactorFactored:
            if let row = buffers["exp_avg_sq_row"], let column = buffers["exp_avg_sq_col"] {
                let shape = try AdafactorState.shape(row: row.shape, column: column.shape, parameter: name, path: path)
                return (.adafactor(row: row, column: column), shape)
            }
            guard let full = buffers["exp_avg_sq"] else {
                throw CheckpointError(path: path, problem: "Adafactor state of '\(name)' has neither exp_avg_sq_row/exp_avg_sq_col nor exp_avg_sq (buffers \(parameter.bufferNames))")
            }
            return (.tensor(full), full.shape)
        case .expAvgSq, .squareAvg, .sum:
            guard let tensor = buffers[source.rawValue] else {
                throw CheckpointError(path: path, problem: "\(kind.rawValue) state of '\(name)' has no \(source.rawValue) (buffers \(parameter.bufferNames))")
            }
            return (.tensor(tensor), tensor.shape)
        }
    }
}
