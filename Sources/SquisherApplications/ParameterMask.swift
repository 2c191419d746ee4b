import SquisherLayers
import SquisherOptimizers
import SquisherTensor

/// A binary mask per parameter (1 = keep / train, 0 = pruned / frozen), with the parameters' names
/// and shapes. Parameters absent from the mask are untouched by it.
public struct ParameterMask: Sendable, Equatable {
    /// 0/1 tensors by parameter name.
    public var masks: NamedTensors

    public init(masks: NamedTensors) { self.masks = masks }

    /// Entries kept (ones) over all masked tensors.
    public var keptCount: Int { masks.reduce(0) { $0 + $1.tensor.scalars.filter { $0 != 0 }.count } }
    /// Entries covered by the mask.
    public var totalCount: Int { masks.scalarCount }
    /// Fraction of covered entries that are zero.
    public var sparsity: Double { totalCount == 0 ? 0 : 1 - Double(keptCount) / Double(totalCount) }

    /// Multiplies the masked parameters of a state dict by their masks.
    /// - Throws: ``ApplicationError`` naming a parameter missing from `parameters` or of another shape.
    public func applied(to parameters: NamedTensors) throws(ApplicationError) -> NamedTensors {
        var result = parameters
        for (name, mask) in masks {
            guard let value = parameters[name], value.shape == mask.shape else {
                throw ApplicationError(application: "mask", problem: "parameter '\(name)' is missing or not of the mask's shape \(mask.shape)")
            }
            result[name] = try! value * mask
        }
        return result
    }

    /// Multiplies the model's masked parameters by their masks in place.
    /// - Throws: ``ApplicationError`` naming a masked parameter the model lacks or of another shape.
    public func apply(to model: any Layer) throws(ApplicationError) {
        let parameters = Dictionary(uniqueKeysWithValues: model.namedParameters.map { ($0.name, $0.parameter) })
        for (name, mask) in masks {
            guard let parameter = parameters[name], parameter.value.shape == mask.shape else {
                throw ApplicationError(application: "mask", problem: "the model has no parameter '\(name)' of shape \(mask.shape)")
            }
            parameter.value = try! parameter.value * mask
        }
    }

    /// Enforces the mask during training through the optimizer's step hooks: before each step the
    /// masked gradients are zeroed (FISH mask's protocol), after it the masked parameters are
    /// re-zeroed when `keepParametersZero` (pruning: weight decay or momentum cannot revive them).
    /// Returns the handle that removes both hooks.
    public func enforce(on optimizer: any Optimizer, model: any Layer, keepParametersZero: Bool) -> [HookHandle] {
        let masks = self.masks
        var handles = [optimizer.registerStepPreHook { event in
            for (name, mask) in masks {
                if let gradient = event.gradients[name] { event.gradients[name] = try? gradient * mask }
            }
        }]
        if keepParametersZero {
            let parameters = Dictionary(uniqueKeysWithValues: model.namedParameters.map { ($0.name, $0.parameter) })
            handles.append(optimizer.registerStepPostHook { _ in
                for (name, mask) in masks {
                    if let parameter = parameters[name], let masked = try? parameter.value * mask { parameter.value = masked }
                }
            })
        }
        return handles
    }

    /// Keeps the `keepCount` largest scores (ties broken by parameter order then index, so the mask
    /// is deterministic) among the given tensors; all other entries get 0.
    static func topK(scores: NamedTensors, keepCount: Int) -> ParameterMask {
        var entries: [(score: Float, tensor: Int, index: Int)] = []
        entries.reserveCapacity(scores.scalarCount)
        for (t, entry) in scores.enumerated() {
            for (i, s) in entry.tensor.scalars.enumerated() { entries.append((s, t, i)) }
        }
        let keep = Swift.max(0, Swift.min(keepCount, entries.count))
        // Partial ordering would be O(n); a full sort keeps the code obvious and is fast enough here.
        entries.sort { $0.score != $1.score ? $0.score > $1.score : ($0.tensor, $0.index) < ($1.tensor, $1.index) }
        var masks = scores.mapTensors { _, t in Tensor(zeros: t.shape) }
        let names = scores.names
        var buffers = names.map { masks[$0]!.scalars }
        for entry in entries.prefix(keep) { buffers[entry.tensor][entry.index] = 1 }
        for (t, name) in names.enumerated() { masks[name] = Tensor(uncheckedShape: masks[name]!.shape, scalars: buffers[t]) }
        return ParameterMask(masks: masks)
    }
}
