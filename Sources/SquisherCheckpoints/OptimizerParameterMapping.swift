import Foundation
import SquisherIO

/// The map from PyTorch optimizer parameter indices to model parameter names, which `optimizer.pt`
/// usually does not store. Resolution never guesses silently; in order of preference:
///
/// 1. **An explicit mapping** (a JSON file `{"0": "fc1.weight", ...}`), checked for completeness and,
///    when a model order is given, for names and shapes.
/// 2. **Names stored in the file**: newer torch stores `param_names` in each param group when the
///    optimizer was built from `model.named_parameters()`.
/// 3. **The model's parameter order** (``TorchStateDict/order`` from `model.pt`; not a safetensors
///    file, which lists tensors sorted by name). Assumption: every param group lists its parameters in
///    model order, and the groups together cover every model tensor, so the optimizer indices are an
///    interleaving of the groups along the model order. This holds for `Adam(model.parameters())`, for
///    groups built from consecutive sub-modules, and for Hugging Face Trainer's decay/no-decay split.
///    Every parameter with state must match its model tensor's shape (from `exp_avg`, `exp_avg_sq`,
///    `square_avg`, `sum`, `momentum_buffer`, ...); parameters without state cannot be checked.
///    Exactly one interleaving must be consistent; none (the order was different, e.g. a hand-made
///    list) or several (e.g. two groups of same-shaped tensors) is an error asking for a mapping file.
public struct OptimizerParameterMapping: Sendable, Hashable {
    /// Where the names came from.
    public enum Source: String, Sendable, Hashable {
        /// An explicit mapping supplied by the user.
        case explicitMapping
        /// `param_names` stored in the optimizer's param groups.
        case storedNames
        /// The unique shape-consistent interleaving of the groups along the model order.
        case modelOrder
    }

    /// The parameter name of every optimizer index.
    public var names: [Int: String]
    /// Where the names came from.
    public var source: Source

    /// Resolves the names of `optimizer`'s parameters (see the type's documentation for the rules).
    /// - Parameters:
    ///   - modelOrder: the model's tensors in registration order (e.g. ``TorchStateDict/order``).
    ///   - explicit: a user-supplied mapping (see ``readMappingFile(_:)``); takes precedence.
    ///   - path: the optimizer file, for messages.
    /// - Throws: ``CheckpointError`` explaining why the mapping cannot be decided or is inconsistent.
    public static func resolve(
        _ optimizer: TorchOptimizerState, modelOrder: [ModelTensorShape]? = nil, explicit: [Int: String]? = nil, path: String
    ) throws(CheckpointError) -> OptimizerParameterMapping {
        func fail(_ problem: String) -> CheckpointError { CheckpointError(path: path, problem: problem) }
        let indices = optimizer.parameterIndices
        let stateShapes = try parameterShapes(optimizer, path: path)
        let modelShapes = modelOrder.map { Dictionary($0.map { ($0.name, $0.shape) }, uniquingKeysWith: { a, _ in a }) }

        func validate(_ names: [Int: String], what: String) throws(CheckpointError) {
            for index in indices where names[index] == nil {
                throw fail("\(what) has no name for optimizer index \(index)")
            }
            let extra = Set(names.keys).subtracting(indices)
            guard extra.isEmpty else { throw fail("\(what) names indices \(extra.sorted().prefix(8)) that no param group lists") }
            var seen: [String: Int] = [:]
            for index in indices {
                let name = names[index]!
                if let other = seen.updateValue(index, forKey: name) {
                    throw fail("\(what) gives name '\(name)' to both index \(other) and index \(index)")
                }
                guard let modelShapes else { continue }
                guard let modelShape = modelShapes[name] else { throw fail("\(what) maps index \(index) to '\(name)', which is not in the model") }
                if let shape = stateShapes[index], shape != modelShape {
                    throw fail("\(what) maps index \(index) (state shape \(shape)) to '\(name)' of shape \(modelShape)")
                }
            }
        }

        if let explicit {
            try validate(explicit, what: "the mapping file")
            return OptimizerParameterMapping(names: explicit, source: .explicitMapping)
        }
        if optimizer.groups.contains(where: { $0.parameterNames != nil }) {
            var names: [Int: String] = [:]
            for (number, group) in optimizer.groups.enumerated() {
                guard let stored = group.parameterNames else {
                    throw fail("param_groups[\(number)] has no 'param_names' although other groups do")
                }
                for (index, name) in zip(group.parameterIndices, stored) { names[index] = name }
            }
            try validate(names, what: "the stored param_names")
            return OptimizerParameterMapping(names: names, source: .storedNames)
        }
        guard let modelOrder else {
            throw fail("the optimizer state does not store parameter names; supply the model's parameter order (from model.pt, whose OrderedDict keeps registration order; a safetensors file lists tensors sorted by name, which is not the model order) or a mapping file {\"0\": \"fc1.weight\", ...}")
        }
        guard modelOrder.count == indices.count else {
            throw fail("cannot map optimizer indices to names: the optimizer has \(indices.count) parameters (groups of \(optimizer.groups.map(\.parameterIndices.count))) but the model order has \(modelOrder.count) tensors (a state dict also holds buffers such as BatchNorm's running_mean, and frozen parameters are not in the optimizer); supply a mapping file {\"0\": \"fc1.weight\", ...}")
        }
        let groups = optimizer.groups.map { $0.parameterIndices.map { stateShapes[$0] } }
        let assignment = try uniqueInterleaving(groups: groups, model: modelOrder.map(\.shape), fail: fail)
        var names: [Int: String] = [:]
        for (position, (group, item)) in assignment.enumerated() {
            names[optimizer.groups[group].parameterIndices[item]] = modelOrder[position].name
        }
        return OptimizerParameterMapping(names: names, source: .modelOrder)
    }

    /// Per-parameter buffers whose shape is the parameter's shape.
    static let parameterShapedBuffers: Set<String> = [
        "exp_avg", "exp_avg_sq", "max_exp_avg_sq", "square_avg", "grad_avg", "momentum_buffer", "sum", "acc_delta", "exp_inf",
        "state1", "state2",
    ]

    /// The parameter shape implied by each index's state (absent when it has no parameter-shaped buffer).
    static func parameterShapes(_ optimizer: TorchOptimizerState, path: String) throws(CheckpointError) -> [Int: [Int]] {
        var shapes: [Int: [Int]] = [:]
        for (index, state) in optimizer.states {
            for name in state.bufferNames where parameterShapedBuffers.contains(name) {
                let shape = state.buffers[name]!.shape
                if let known = shapes[index], known != shape {
                    throw CheckpointError(path: path, problem: "state[\(index)] has buffers of different shapes (\(known) and '\(name)' \(shape))")
                }
                shapes[index] = shape
            }
            // Adafactor's factored second moment: row = shape[:-1], col = shape[:-2] + shape[-1:].
            if shapes[index] == nil, let row = state.buffers["exp_avg_sq_row"]?.shape, let col = state.buffers["exp_avg_sq_col"]?.shape,
               let last = col.last, !row.isEmpty {
                shapes[index] = row + [last]
            }
        }
        return shapes
    }

    /// The unique way to interleave `groups` (each in order) along `model` so that known shapes match,
    /// as (group, position in group) per model position.
    static func uniqueInterleaving(
        groups: [[[Int]?]], model: [[Int]], fail: (String) -> CheckpointError
    ) throws(CheckpointError) -> [(Int, Int)] {
        // ways[s] = number of consistent completions (capped at 2) from state s = (p_0, ..., p_{G-1}),
        // where p_g counts group g's parameters already placed; states are numbered in mixed radix.
        let radices = groups.map { $0.count + 1 }
        var stateCount = 1
        for radix in radices {
            let (product, overflow) = stateCount.multipliedReportingOverflow(by: radix)
            guard !overflow, product <= 20_000_000 else {
                throw fail("cannot map optimizer indices to names: \(groups.count) param groups of sizes \(groups.map(\.count)) are too many to check every interleaving along the model order; supply a mapping file {\"0\": \"fc1.weight\", ...}")
            }
            stateCount = product
        }
        var weights = [Int](repeating: 1, count: groups.count)
        for g in groups.indices.dropFirst() { weights[g] = weights[g - 1] * radices[g - 1] }
        func matches(_ g: Int, _ p: Int, _ position: Int) -> Bool {
            guard let shape = groups[g][p] else { return true }
            return shape == model[position]
        }
        var ways = [UInt8](repeating: 0, count: stateCount)
        var positions = [Int](repeating: 0, count: groups.count)
        for state in stride(from: stateCount - 1, through: 0, by: -1) {
            var rest = state, placed = 0
            for g in groups.indices {
                positions[g] = rest % radices[g]
                rest /= radices[g]
                placed += positions[g]
            }
            if placed == model.count { ways[state] = 1; continue }
            var total = 0
            for g in groups.indices where positions[g] < groups[g].count && matches(g, positions[g], placed) {
                total += Int(ways[state + weights[g]])
            }
            ways[state] = UInt8(min(total, 2))
        }
        guard ways[0] == 1 else {
            if ways[0] == 0 {
                // Point at the first mismatch of the plain (group after group) order.
                let flat = groups.enumerated().flatMap { g, items in items.indices.map { (g, $0) } }
                let first = flat.indices.first { !matches(flat[$0].0, flat[$0].1, $0) }
                let detail = first.map { " (in plain order, group \(flat[$0].0) item \(flat[$0].1) has state shape \(groups[flat[$0].0][flat[$0].1]!) but model tensor #\($0) has shape \(model[$0]))" } ?? ""
                throw fail("cannot map optimizer indices to names: no assignment that keeps each param group in model order matches the state shapes\(detail); the optimizer was given its parameters in another order; supply a mapping file {\"0\": \"fc1.weight\", ...}")
            }
            throw fail("cannot map optimizer indices to names: ambiguous, the \(groups.count) param groups (sizes \(groups.map(\.count))) can be interleaved along the model order in more than one way consistent with the shapes (as with Hugging Face Trainer's decay/no-decay groups of same-shaped tensors); refusing to guess: supply a mapping file {\"0\": \"fc1.weight\", ...}")
        }
        var assignment: [(Int, Int)] = []
        var state = 0
        positions = [Int](repeating: 0, count: groups.count)
        for position in model.indices {
            guard let g = groups.indices.first(where: { positions[$0] < groups[$0].count && matches($0, positions[$0], position) && ways[state + weights[$0]] > 0 }) else {
                throw fail("internal inconsistency while mapping optimizer indices (position \(position))")
            }
            assignment.append((g, positions[g]))
            positions[g] += 1
            state += weights[g]
        }
        return assignment
    }

    /// Reads a mapping file: a JSON object from optimizer index (a decimal string) to parameter name,
    /// `{"0": "fc1.weight", "1": "fc1.bias"}`, or an object holding one under `"param_index_to_model_name"`.
    public static func readMappingFile(_ url: URL) throws(CheckpointError) -> [Int: String] {
        func fail(_ problem: String) -> CheckpointError { CheckpointError(path: url.path, problem: problem) }
        let data: Data
        do { data = try InputFile.read(url) } catch { throw CheckpointError(error) }
        guard let json = try? JSONSerialization.jsonObject(with: data), var object = json as? [String: Any] else {
            throw fail("mapping file is not a JSON object {\"0\": \"fc1.weight\", ...}")
        }
        if let nested = object["param_index_to_model_name"] as? [String: Any] { object = nested }
        var names: [Int: String] = [:]
        for (key, value) in object {
            guard let index = Int(key), index >= 0, String(index) == key else {
                throw fail("mapping key '\(key)' is not a non-negative optimizer index written in decimal without leading zeros or signs (\"0\", \"1\", ...)")
            }
            guard names[index] == nil else { throw fail("mapping gives optimizer index \(index) twice") }
            guard let name = value as? String else { throw fail("mapping value for index \(index) is not a string") }
            names[index] = name
        }
        return names
    }
}
