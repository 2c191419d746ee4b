import SquisherLayers
import SquisherTensor

/// Internal helpers shared by the optimizers: hyperparameter validation, PyTorch's double-precision
/// scalars, and reading buffers back from an ``OptimizerState``.
enum OptimizerSupport {
    /// Throws unless `value` is finite and `>= 0` (PyTorch's `if not 0.0 <= lr: raise ValueError`).
    static func requireNonNegative(_ value: Float, _ argument: String) throws(TensorError) {
        guard value.isFinite, value >= 0 else {
            throw .invalidArgument(argument: argument, reason: "must be finite and >= 0, got \(value)")
        }
    }

    /// Throws unless `value` lies in `range` (and is finite).
    static func require(_ value: Float, in range: ClosedRange<Float>, _ argument: String) throws(TensorError) {
        guard value.isFinite, range.contains(value) else {
            throw .invalidArgument(argument: argument, reason: "must be in [\(range.lowerBound), \(range.upperBound)], got \(value)")
        }
    }

    /// Throws when two parameters share a name (the state is keyed by name).
    static func requireUniqueNames(_ parameters: [(name: String, parameter: Parameter)]) throws(TensorError) {
        var seen = Set<String>()
        for (name, _) in parameters where !seen.insert(name).inserted {
            throw .invalidArgument(argument: "parameters", reason: "the name '\(name)' occurs twice; names key the optimizer state")
        }
    }

    /// The Python float a user meant when writing this `Float` hyperparameter: the shortest decimal
    /// that round-trips to `value` (e.g. `Float(0.9)` → `0.9`, not `0.8999999762`), read as a Double.
    ///
    /// PyTorch computes scalars such as `1 - beta1`, `beta2 ** step` and `lr / bias_correction1` from
    /// Python floats (doubles) and casts the result to float32 only when it reaches a kernel; using
    /// `Double(value)` instead would change those scalars in their last float32 bit.
    static func pythonFloat(_ value: Float) -> Double {
        Double(value.description) ?? Double(value)
    }

    /// The buffer `key` of parameter `name` in `state`, checked against the parameter's shape.
    static func buffer(
        _ key: String, of name: String, shape: [Int], in state: OptimizerState
    ) throws(TensorError) -> Tensor {
        guard let tensor = state.buffer(key, for: name) else {
            throw .invalidArgument(argument: "optimizer state of '\(name)'", reason: "missing buffer '\(key)'")
        }
        try tensor.checkShape(shape, "optimizer state '\(key)' of '\(name)'")
        guard tensor.isFinite else {
            throw .invalidArgument(argument: "optimizer state '\(key)' of '\(name)'", reason: "contains NaN or infinity")
        }
        return tensor
    }

    /// Checks that `state` belongs to an optimizer of `kind` and that its steps name known parameters.
    static func checkKind(
        _ state: OptimizerState, kind: String, parameters: [(name: String, parameter: Parameter)]
    ) throws(TensorError) {
        guard state.kind == kind else {
            throw .invalidArgument(argument: "optimizer state", reason: "is for \(state.kind), this optimizer is \(kind)")
        }
        let known = Set(parameters.map(\.name))
        if let unknown = state.steps.keys.sorted().first(where: { !known.contains($0) }) {
            throw .invalidArgument(argument: "optimizer state of '\(unknown)'", reason: "this optimizer has no parameter of that name")
        }
    }

    /// The optimizer-level step count stored in `state` (`step_count`), else the largest per-parameter step.
    static func stepCount(of state: OptimizerState) throws(TensorError) -> Int {
        if let stored = state.hyperparameters["step_count"] {
            guard let count = Int(exactly: stored), count >= 0 else {
                throw .invalidArgument(argument: "optimizer state 'step_count'", reason: "expected a non-negative integer, got \(stored)")
            }
            return count
        }
        return state.steps.values.max() ?? 0
    }
}
