import SquisherData
import SquisherLayers
import SquisherTensor

/// The data-free baseline "all parameters matter equally": every importance is 1 (turns Fisher
/// merging into plain averaging and EWC into an L2 penalty towards the old parameters).
public struct UniformImportance: SensitivityEstimator, Sendable {
    public let name = "uniform"
    public let requirement = EstimatorRequirement.parametersOnly
    public init() {}
    public func estimate(model: any Layer, data: Dataset?) throws -> Importance {
        Importance(unchecked: try NamedTensors(model.namedParameters.map { ($0.name, Tensor(repeating: 1, shape: $0.parameter.value.shape)) }), estimator: name)
    }
}

/// The data-free baseline "large weights matter": importance `θ²` (magnitude pruning's score).
public struct MagnitudeImportance: SensitivityEstimator, Sendable {
    public let name = "magnitude"
    public let requirement = EstimatorRequirement.parametersOnly
    public init() {}
    public func estimate(model: any Layer, data: Dataset?) throws -> Importance {
        Importance(unchecked: try NamedTensors(model.namedParameters.map { ($0.name, $0.parameter.value.map { $0 * $0 }) }), estimator: name)
    }
}

/// The data-free baseline "random importance": independent uniform values in [0, 1) from a seeded
/// generator (a random mask in pruning and FISH-mask training). Same seed, same values.
public struct RandomImportance: SensitivityEstimator, Sendable {
    public var name: String { "random" }
    public let requirement = EstimatorRequirement.parametersOnly
    public var seed: UInt64
    public init(seed: UInt64 = 0) { self.seed = seed }
    public func estimate(model: any Layer, data: Dataset?) throws -> Importance {
        var generator = SplitMix64(seed: seed)
        return Importance(
            unchecked: try NamedTensors(model.namedParameters.map { ($0.name, Tensor.uniform(shape: $0.parameter.value.shape, low: 0, high: 1, using: &generator)) }),
            estimator: name, conventions: ["seed": "\(seed)"])
    }
}
