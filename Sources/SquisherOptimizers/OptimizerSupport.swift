import Dispatch
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

/// 16-lane chunks for the element-wise update loops (`a * b + c`, never `addingProduct`, which
/// is a libm call per lane on baseline x86-64). The last chunk is padded with zeros on load and
/// only its valid lanes are stored, so one kernel serves the whole buffer.
enum Lanes {
    typealias Vector = SIMD16<Float>
    static let width = 16

    @inline(__always)
    static func load(_ base: UnsafePointer<Float>, _ index: Int, _ count: Int) -> Vector {
        if count - index >= width { return UnsafeRawPointer(base + index).loadUnaligned(as: Vector.self) }
        var vector = Vector()
        for lane in 0..<(count - index) { vector[lane] = base[index + lane] }
        return vector
    }

    @inline(__always)
    static func load(_ base: UnsafeMutablePointer<Float>, _ index: Int, _ count: Int) -> Vector {
        load(UnsafePointer(base), index, count)
    }

    @inline(__always)
    static func store(_ vector: Vector, _ base: UnsafeMutablePointer<Float>, _ index: Int, _ count: Int) {
        if count - index >= width {
            UnsafeMutableRawPointer(base + index).storeBytes(of: vector, as: Vector.self)
            return
        }
        for lane in 0..<(count - index) { base[index + lane] = vector[lane] }
    }

    /// True when every element is finite (no NaN, no infinity): `x·0` is 0 for finite `x` and NaN
    /// otherwise, and NaN survives the sums. Sixteen lanes, four accumulators.
    static func allFinite(_ buffer: UnsafeBufferPointer<Float>) -> Bool {
        guard let base = buffer.baseAddress else { return true }
        let count = buffer.count
        var a = Vector(), b = Vector(), c = Vector(), d = Vector()
        var index = 0
        while count - index >= 4 * width {
            a += load(base, index, count) * 0
            b += load(base, index + width, count) * 0
            c += load(base, index + 2 * width, count) * 0
            d += load(base, index + 3 * width, count) * 0
            index += 4 * width
        }
        while index < count {
            a += load(base, index, count) * 0
            index += width
        }
        return ((a + b) + (c + d)).sum() == 0
    }
}

extension Tensor {
    /// True when every element is finite; a SIMD pass (``Tensor/isFinite`` walks the array), split
    /// over the threads (``GEMMConfiguration/maximumThreads``) for tensors of 128 Ki elements and more.
    var allFinite: Bool {
        withUnsafeBufferPointer { buffer in
            let parts = Swift.max(1, Swift.min(GEMMConfiguration.current.maximumThreads, buffer.count >> 17))
            guard parts > 1, let base = buffer.baseAddress else { return Lanes.allFinite(buffer) }
            var finite = [Bool](repeating: true, count: parts)
            finite.withUnsafeMutableBufferPointer { flags in
                let (source, results, count) = (SendablePointer(base), SendablePointer(flags.baseAddress!), buffer.count)
                DispatchQueue.concurrentPerform(iterations: parts) { part in
                    let start = count * part / parts, end = count * (part + 1) / parts
                    results.pointer[part] = Lanes.allFinite(UnsafeBufferPointer(start: source.pointer + start, count: end - start))
                }
            }
            return !finite.contains(false)
        }
    }
}
