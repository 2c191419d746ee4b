import Foundation
import SquisherTensor

/// An optimizer state read from `torch.save(optimizer.state_dict())`:
/// `{'state': {index: {'step': tensor, 'exp_avg': tensor, ...}}, 'param_groups': [{'lr': ..., 'params': [indices], ...}]}`.
///
/// PyTorch numbers parameters 0, 1, ... over all groups in order (group 0's first). The file does not
/// record which model parameter each index is (unless the optimizer was built from `named_parameters()`
/// in a recent torch, which stores `param_names` in each group); ``OptimizerParameterMapping`` recovers
/// the names. A parameter that never had a gradient has no entry in `state`.
public struct TorchOptimizerState: Sendable {
    /// The optimizer family, detected from the state's buffer names and the groups' keys.
    public enum Kind: String, Sendable, Hashable {
        /// `torch.optim.Adam` (`exp_avg`, `exp_avg_sq`; `decoupled_weight_decay` false).
        case adam
        /// `torch.optim.AdamW` (as Adam, with `decoupled_weight_decay` true).
        case adamW
        /// Adam or AdamW from a torch version that did not record `decoupled_weight_decay`: they differ
        /// only in how `weight_decay` is applied.
        case adamOrAdamW
        /// `torch.optim.RMSprop` (`square_avg`).
        case rmsprop
        /// `torch.optim.Adagrad` (`sum`).
        case adagrad
        /// `torch.optim.SGD` (`momentum_buffer`, or no state with SGD's group keys).
        case sgd
        /// `torch.optim.NAdam` (`mu_product`, `exp_avg`, `exp_avg_sq`; Adam's own second moment EMA).
        case nadam
        /// `torch.optim.RAdam` (`exp_avg`, `exp_avg_sq` without an `amsgrad` key; Adam's EMA).
        case radam
        /// `torch.optim.Adamax` (`exp_inf` = max(β₂u, |g|+ε): an infinity norm, not a second moment).
        case adamax
        /// transformers' `Adafactor` (`exp_avg_sq_row`/`exp_avg_sq_col` factored, or `exp_avg_sq` for rank 1).
        case adafactor
        /// A bitsandbytes optimizer (`state1`, `state2` quantized with `qmap`/`absmax`, nested under
        /// `__bnb_optimizer_quant_state__`): Adam-type when it has `state2`, Lion/momentum when only `state1`.
        case bitsAndBytes
        /// A first-moment-only optimizer such as Lion (`exp_avg` alone).
        case lion
        /// Anything else (Adadelta, ...): buffers are still read, by name.
        case unknown
    }

    /// One parameter group (`optimizer.param_groups[i]` without the tensors).
    public struct ParameterGroup: Sendable, Hashable {
        /// The optimizer indices of this group's parameters, in order (`'params'`).
        public var parameterIndices: [Int]
        /// The parameter names stored in the group (`'param_names'`, newer torch), or `nil`.
        public var parameterNames: [String]?
        /// Every other key: `lr`, `betas`, `eps`, `weight_decay`, `amsgrad`, ... as stored.
        public var hyperparameters: PickleDictionary

        /// `lr`, the learning rate.
        public var learningRate: Double? { hyperparameters[.string("lr")]?.doubleValue }
        /// `betas` = (beta1, beta2) of Adam-type optimizers.
        public var betas: (Double, Double)? {
            guard let items = hyperparameters[.string("betas")]?.elements, items.count == 2,
                  let b1 = items[0].doubleValue, let b2 = items[1].doubleValue else { return nil }
            return (b1, b2)
        }
        /// `eps`, the denominator's epsilon.
        public var eps: Double? { hyperparameters[.string("eps")]?.doubleValue }
        /// `weight_decay` (an int `0` in the file when left at its default, read as 0.0).
        public var weightDecay: Double? { hyperparameters[.string("weight_decay")]?.doubleValue }
        /// `amsgrad`.
        public var amsgrad: Bool? { hyperparameters[.string("amsgrad")]?.boolValue }
        /// `decoupled_weight_decay` (true for AdamW), when the torch version records it.
        public var decoupledWeightDecay: Bool? { hyperparameters[.string("decoupled_weight_decay")]?.boolValue }
    }

    /// One parameter's state (`optimizer.state_dict()['state'][index]`).
    public struct ParameterState: Sendable, Hashable {
        /// The step count (`'step'`, a 0-dim tensor in current torch, a number in old ones), or `nil`.
        public var step: Double?
        /// Every other entry that is a tensor, by its PyTorch name (`exp_avg`, `exp_avg_sq`, ...).
        public var buffers: [String: TorchTensor]
        /// Buffer names in file order.
        public var bufferNames: [String]
        /// Entries that are neither tensors nor the step (kept as read).
        public var otherValues: [String: PickleValue]
    }

    /// The detected optimizer family.
    public var kind: Kind
    /// Parameter groups in order.
    public var groups: [ParameterGroup]
    /// Per-parameter state by optimizer index; indices without state are absent.
    public var states: [Int: ParameterState]
    /// Whether the file listed parameter names instead of indices (FSDP full state dict); the
    /// indices are then positions in group order and each group's ``ParameterGroup/parameterNames``
    /// holds the names.
    public var keyedByName: Bool

    /// All optimizer indices in group order.
    public var parameterIndices: [Int] { groups.flatMap(\.parameterIndices) }

    /// Loads an optimizer state file.
    public init(contentsOf url: URL, limits: PickleLimits = PickleLimits()) throws(CheckpointError) {
        try self.init(TorchCheckpoint.load(url, limits: limits), path: url.path)
    }

    /// Interprets a loaded value; `path` names it in messages.
    ///
    /// `params` are usually indices; a full state dict of FSDP (`get_optimizer_state_dict(...,
    /// full_state_dict=True)`) lists parameter **names** instead and keys `state` by name: then the
    /// indices are positions in group order and ``ParameterGroup/parameterNames`` holds the names.
    /// Tensors in a dictionary nested inside a parameter's state (bitsandbytes'
    /// `__bnb_optimizer_quant_state__`) are read as that parameter's buffers.
    /// - Throws: ``CheckpointError`` when the structure is not an optimizer state dict, an index is
    ///   repeated across groups, or a state entry refers to an index no group lists.
    public init(_ value: PickleValue, path: String) throws(CheckpointError) {
        func fail(_ problem: String) -> CheckpointError { CheckpointError(path: path, problem: problem) }
        guard let state = value["state"]?.dictionaryValue, let groupValues = value["param_groups"]?.elements else {
            throw fail("expected an optimizer state dict {'state': dict, 'param_groups': list} but found a \(value.kindName)\(value.dictionaryValue.map { " with keys \($0.keys.prefix(6).map { $0.stringValue ?? $0.kindName })" } ?? "")")
        }
        var groups: [ParameterGroup] = []
        var seen = Set<Int>()
        var indexOfName: [String: Int] = [:]
        for (number, groupValue) in groupValues.enumerated() {
            guard var dictionary = groupValue.dictionaryValue else {
                throw fail("param_groups[\(number)] is a \(groupValue.kindName), not a dict")
            }
            guard let paramValues = dictionary[.string("params")]?.elements else {
                throw fail("param_groups[\(number)] has no 'params' list")
            }
            var indices: [Int] = []
            var keyNames: [String] = []
            for item in paramValues {
                if let name = item.stringValue {  // FSDP full state dict: names instead of indices
                    guard indexOfName[name] == nil else { throw fail("parameter '\(name)' appears in more than one place in param_groups") }
                    indexOfName[name] = indexOfName.count
                    keyNames.append(name)
                    continue
                }
                guard let index = item.intValue, index >= 0 else {
                    throw fail("param_groups[\(number)]['params'] holds a \(item.kindName), not a parameter index or name")
                }
                guard seen.insert(index).inserted else { throw fail("parameter index \(index) appears in more than one place in param_groups") }
                indices.append(index)
            }
            if !keyNames.isEmpty {
                guard indices.isEmpty, seen.count == indexOfName.count - keyNames.count else {
                    throw fail("param_groups[\(number)]['params'] mixes parameter names and indices")
                }
                indices = keyNames.map { indexOfName[$0]! }
                seen.formUnion(indices)
            }
            var names: [String]? = keyNames.isEmpty ? nil : keyNames
            if names == nil, let nameValues = dictionary[.string("param_names")]?.elements {
                let strings = nameValues.compactMap(\.stringValue)
                guard strings.count == nameValues.count, strings.count == indices.count else {
                    throw fail("param_groups[\(number)]['param_names'] must be \(indices.count) strings, one per index in 'params'")
                }
                names = strings
            }
            dictionary[.string("params")] = nil
            dictionary[.string("param_names")] = nil
            groups.append(ParameterGroup(parameterIndices: indices, parameterNames: names, hyperparameters: dictionary))
        }
        var states: [Int: ParameterState] = [:]
        for (key, entry) in state.entries {
            let index: Int
            if let name = key.stringValue {
                guard let position = indexOfName[name] else { throw fail("state has an entry for parameter '\(name)', which no param group lists") }
                index = position
            } else {
                guard let number = key.intValue else { throw fail("state key of type \(key.kindName) is not a parameter index or name") }
                index = number
            }
            guard seen.contains(index) else { throw fail("state has an entry for index \(index), which no param group lists") }
            guard let fields = entry.dictionaryValue else { throw fail("state[\(index)] is a \(entry.kindName), not a dict") }
            var parameter = ParameterState(step: nil, buffers: [:], bufferNames: [], otherValues: [:])
            for (fieldKey, field) in fields.entries {
                guard let name = fieldKey.stringValue else { throw fail("state[\(index)] has a key of type \(fieldKey.kindName)") }
                if name == "step" {
                    guard let step = field.doubleValue else { throw fail("state[\(index)]['step'] is a \(field.kindName), not a number") }
                    // Checked before anyone converts it to an integer or raises β to its power.
                    guard step.isFinite, step >= 0, step <= 9_007_199_254_740_992, step == step.rounded() else {
                        throw fail("state[\(index)]['step'] is \(step); expected a whole number of steps in 0...2^53")
                    }
                    parameter.step = step
                } else if let tensor = field.tensorValue {
                    parameter.buffers[name] = tensor
                    parameter.bufferNames.append(name)
                } else if let nested = field.dictionaryValue, nested.values.contains(where: { $0.tensorValue != nil }) {
                    for (nestedKey, nestedValue) in nested.entries {
                        guard let nestedName = nestedKey.stringValue, let tensor = nestedValue.tensorValue else { continue }
                        guard parameter.buffers[nestedName] == nil else { throw fail("state[\(index)] has '\(nestedName)' twice (also inside '\(name)')") }
                        parameter.buffers[nestedName] = tensor
                        parameter.bufferNames.append(nestedName)
                    }
                } else {
                    parameter.otherValues[name] = field
                }
            }
            states[index] = parameter
        }
        self.groups = groups
        self.states = states
        self.keyedByName = !indexOfName.isEmpty
        self.kind = Self.detectKind(groups: groups, states: states)
    }

    static func detectKind(groups: [ParameterGroup], states: [Int: ParameterState]) -> Kind {
        let buffers = Set(states.values.flatMap(\.bufferNames))
        let groupKeys = Set(groups.flatMap { $0.hyperparameters.keys.compactMap(\.stringValue) })
        if buffers.contains("state1") || buffers.contains("state2") { return .bitsAndBytes }
        if buffers.contains("exp_avg_sq_row") || groupKeys.isSuperset(of: ["scale_parameter", "relative_step"]) { return .adafactor }
        if buffers.contains("exp_inf") { return .adamax }
        let adamBuffers = buffers.contains("exp_avg") && buffers.contains("exp_avg_sq")
            && buffers.isSubset(of: ["exp_avg", "exp_avg_sq", "max_exp_avg_sq"])
        if !groupKeys.contains("amsgrad"), buffers.contains("exp_avg_sq"), buffers.isSubset(of: ["exp_avg", "exp_avg_sq", "mu_product"]) {
            if buffers.contains("mu_product") || groupKeys.contains("momentum_decay") { return .nadam }
            if groupKeys.contains("betas") { return .radam }
        }
        if buffers == ["exp_avg"], groupKeys.contains("betas") { return .lion }
        // Adam before its first step has no state; its groups still have `betas` and `amsgrad`.
        if groupKeys.contains("amsgrad"), adamBuffers || (buffers.isEmpty && groupKeys.contains("betas")) {
            let decoupled = Set(groups.map(\.decoupledWeightDecay))
            if decoupled == [true] { return .adamW }
            if decoupled == [false] { return .adam }
            return .adamOrAdamW
        }
        if buffers.contains("square_avg"), buffers.isSubset(of: ["square_avg", "momentum_buffer", "grad_avg"]) { return .rmsprop }
        if buffers == ["sum"] { return .adagrad }
        if buffers.isSubset(of: ["momentum_buffer"]), groupKeys.isSuperset(of: ["momentum", "dampening", "nesterov"]) { return .sgd }
        return .unknown
    }
}
