import SquisherTensor

/// An optimizer state keyed by parameter name instead of PyTorch's index: buffers (`exp_avg_sq`, ...)
/// as ``NamedTensors`` keyed by parameter name, step counts and hyperparameters. A plain value that a
/// training module can convert into its own optimizer state (for the Squisher: `exp_avg_sq` is Adam's
/// second moment estimate, `v_t = beta2 v_{t-1} + (1 - beta2) g_t^2`, the quantity it recycles).
public struct OptimizerStateByName: Sendable {
    /// The detected optimizer family.
    public var kind: TorchOptimizerState.Kind
    /// Parameter names in optimizer index order.
    public var parameterNames: [String]
    /// Buffer name (PyTorch's: `exp_avg`, `exp_avg_sq`, ...) to the tensors of the parameters that have
    /// it, keyed by parameter name, in optimizer order. The step is in ``steps``, not here.
    public var buffers: [String: NamedTensors]
    /// Buffer names in first-seen order.
    public var bufferNames: [String]
    /// The dtype each buffer had in the file, by buffer name then parameter name.
    public var bufferDTypes: [String: [String: TorchDType]]
    /// Step count per parameter that has state.
    public var steps: [String: Double]
    /// Parameters listed by the optimizer that have no state (never had a gradient).
    public var parametersWithoutState: [String]
    /// Param groups, with ``TorchOptimizerState/ParameterGroup/parameterNames`` filled in.
    public var groups: [TorchOptimizerState.ParameterGroup]
    /// The group number of each parameter.
    public var groupOfParameter: [String: Int]
    /// How the names were obtained.
    public var nameSource: OptimizerParameterMapping.Source

    /// Re-keys `state` by the names in `mapping`.
    public init(_ state: TorchOptimizerState, mapping: OptimizerParameterMapping) {
        kind = state.kind
        nameSource = mapping.source
        parameterNames = state.parameterIndices.map { mapping.names[$0] ?? "#\($0)" }
        buffers = [:]
        bufferNames = []
        bufferDTypes = [:]
        steps = [:]
        parametersWithoutState = []
        groups = state.groups
        groupOfParameter = [:]
        for (number, group) in state.groups.enumerated() {
            let names = group.parameterIndices.map { mapping.names[$0] ?? "#\($0)" }
            groups[number].parameterNames = names
            for name in names { groupOfParameter[name] = number }
        }
        for index in state.parameterIndices {
            let name = mapping.names[index] ?? "#\(index)"
            guard let parameter = state.states[index] else {
                parametersWithoutState.append(name)
                continue
            }
            if let step = parameter.step { steps[name] = step }
            for bufferName in parameter.bufferNames {
                let tensor = parameter.buffers[bufferName]!
                if buffers[bufferName] == nil {
                    buffers[bufferName] = NamedTensors()
                    bufferNames.append(bufferName)
                }
                buffers[bufferName]![name] = tensor.tensor
                bufferDTypes[bufferName, default: [:]][name] = tensor.dtype
            }
        }
    }
}

extension TorchOptimizerState {
    /// This state keyed by parameter name; see ``OptimizerParameterMapping/resolve(_:modelOrder:explicit:path:)``
    /// for how names are found.
    /// - Throws: ``CheckpointError`` when the names cannot be decided without guessing.
    public func byName(modelOrder: [ModelTensorShape]? = nil, explicit: [Int: String]? = nil, path: String) throws(CheckpointError) -> OptimizerStateByName {
        let mapping = try OptimizerParameterMapping.resolve(self, modelOrder: modelOrder, explicit: explicit, path: path)
        return OptimizerStateByName(self, mapping: mapping)
    }
}
