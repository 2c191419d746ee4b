import SquisherData
import SquisherLayers
import SquisherOptimizers
import SquisherTensor

/// The Squisher: the diagonal Fisher recycled from an optimizer's squared-gradient accumulator,
/// at zero extra cost [1].
///
/// Reads Adam/AdamW `exp_avg_sq` (`v_t = β₂ v_{t−1} + (1−β₂) ḡ_t²`, ḡ the mini-batch gradient),
/// RMSprop `square_avg` (same EMA with `alpha`), or Adagrad `sum` (running sum `Σ_t ḡ_t²`), from a
/// live optimizer or a saved ``OptimizerState``. Options:
/// - ``biasCorrection``: divide an EMA by `1 − β₂ᵗ` (PyTorch stores `v` uncorrected; the paper uses
///   it "without modification", so the default is off). No effect on Adagrad's sum.
/// - ``scaling``: raw `v`, `B·v`, `N·v` or `N·B·v`, the scale of a sum-reduced Fisher (see ``SquisherScaling``).
///
/// Names must match: a trainable parameter without optimizer state (an optimizer built over a
/// sub-model names `0.weight` what the model calls `0.0.weight`, or over part of the parameters)
/// is an ``EstimatorError`` naming the parameters and the prefix mismatch, unless
/// ``unobserved`` is `.zero` (zeros, listed in `conventions["no_state"]`). Parameters the model
/// itself freezes (`requiresGradient == false`) have no state by design: zeros, listed in
/// `conventions["frozen"]`.
///
/// [1]: Li, Dangel, Tam, Raffel 2025, Fishers for Free? Approximating the Fisher Information Matrix
///      by Recycling the Squared Gradient Accumulator.
public struct Squisher: SensitivityEstimator {
    /// `"squisher"`.
    public let name = "squisher"
    /// `.trainingRun`: it reads the optimizer state a training run filled.
    public let requirement = EstimatorRequirement.trainingRun

    /// Where the accumulator comes from.
    public enum Source {
        /// A live optimizer (its current state is read at ``estimate(model:data:)``).
        case optimizer(any Optimizer)
        /// A saved state.
        case state(OptimizerState)
    }

    /// Where the accumulator is read.
    public var source: Source
    /// Divide the EMA by `1 − β₂ᵗ` (per parameter, `t` its step count).
    public var biasCorrection: Bool
    /// The rescaling of `v`.
    public var scaling: SquisherScaling
    /// What to do with a trainable parameter that has no optimizer state.
    public var unobserved: UnobservedParameterPolicy

    /// The Squisher of an optimizer or a saved state.
    public init(source: Source, biasCorrection: Bool = false, scaling: SquisherScaling = .none, unobserved: UnobservedParameterPolicy = .fail) {
        self.source = source
        self.biasCorrection = biasCorrection
        self.scaling = scaling
        self.unobserved = unobserved
    }

    /// The Squisher of a live optimizer.
    public init(optimizer: any Optimizer, biasCorrection: Bool = false, scaling: SquisherScaling = .none, unobserved: UnobservedParameterPolicy = .fail) {
        self.init(source: .optimizer(optimizer), biasCorrection: biasCorrection, scaling: scaling, unobserved: unobserved)
    }

    /// The accumulator buffer and EMA decay of an optimizer kind.
    /// - Returns: `nil` for optimizers without a squared-gradient accumulator (SGD).
    public static func accumulator(of state: OptimizerState) -> (buffer: String, decay: Double?)? {
        switch state.kind {
        case "Adam", "AdamW": ("exp_avg_sq", state.hyperparameters["beta2"] ?? 0.999)
        case "RMSprop": ("square_avg", state.hyperparameters["alpha"] ?? 0.99)
        case "Adagrad": ("sum", nil)
        default: nil
        }
    }

    /// The importance of every parameter of `model` (its names and shapes); `data` is not used.
    /// - Throws: ``EstimatorError`` for an optimizer without accumulator, a state shape that differs
    ///   from the parameter's, or trainable parameters without state (see ``unobserved``).
    public func estimate(model: any Layer, data: Dataset?) throws -> Importance {
        let parameters = model.namedParameters
        let frozen = Set(parameters.filter { !$0.parameter.requiresGradient }.map(\.name))
        return try estimate(parameters: parameters.map { ($0.name, $0.parameter.value.shape) }, frozen: frozen)
    }

    /// The estimate for parameters given by name and shape (no model needed: works on checkpoints).
    /// - Parameter frozen: parameters that legitimately have no state (zeros, listed in
    ///   `conventions["frozen"]`).
    /// - Throws: ``EstimatorError`` as ``estimate(model:data:)``.
    public func estimate(parameters: [(name: String, shape: [Int])], frozen: Set<String> = []) throws -> Importance {
        let state: OptimizerState
        switch source {
        case .optimizer(let optimizer): state = optimizer.state
        case .state(let saved): state = saved
        }
        guard let (bufferName, decay) = Self.accumulator(of: state) else {
            throw EstimatorError(estimator: name, problem: "optimizer \(state.kind) has no squared-gradient accumulator (use Adam, AdamW, RMSprop or Adagrad, or attach a SquaredGradientAccumulator)")
        }
        try checkObserved(parameters: parameters.map(\.name), frozen: frozen, state: state, bufferName: bufferName)
        var values = NamedTensors()
        var missing: [String] = [], frozenWithoutState: [String] = []
        for (parameter, shape) in parameters {
            guard var v = state.buffer(bufferName, for: parameter) else {
                if frozen.contains(parameter) { frozenWithoutState.append(parameter) } else { missing.append(parameter) }
                values[parameter] = Tensor(zeros: shape)
                continue
            }
            guard v.shape == shape else {
                throw EstimatorError(estimator: name, problem: "\(bufferName) of '\(parameter)' has shape \(v.shape), the parameter has \(shape)")
            }
            var factor = scaling.multiplier
            if biasCorrection, let decay, let step = state.steps[parameter], step > 0 {
                factor /= 1 - pow(decay, Double(step))
            }
            if factor != 1 { v.scale(by: Float(factor)) }
            values[parameter] = v
        }
        var conventions = [
            "source": "\(state.kind).\(bufferName)", "scaling": scaling.label,
            "bias_correction": biasCorrection ? "on" : "off", "reduction": "EMA of squared mean mini-batch gradients",
        ]
        if !missing.isEmpty { conventions["no_state"] = missing.joined(separator: ",") }
        if !frozenWithoutState.isEmpty { conventions["frozen"] = frozenWithoutState.joined(separator: ",") }
        return try Importance(values: values, estimator: name, conventions: conventions, cost: .free)
    }

    /// Fails when no parameter has state, or (policy `.fail`) when a trainable one lacks it.
    func checkObserved(parameters: [String], frozen: Set<String>, state: OptimizerState, bufferName: String) throws(EstimatorError) {
        let stateNames = state.buffers[bufferName]?.names ?? []
        let trainable = parameters.filter { !frozen.contains($0) }
        guard let mismatch = ParameterNameMismatch(expected: trainable, found: stateNames, source: "optimizer state (\(bufferName))", allowUnexpected: true) else { return }
        let noneObserved = mismatch.missing.count == trainable.count && !trainable.isEmpty
        guard unobserved == .fail || noneObserved else { return }
        let steps = state.steps.values.max() ?? 0
        let context = steps == 0 ? " (the optimizer has taken no step yet)" : ""
        let remedy = noneObserved ? "no parameter of the model has state, so the Squisher would be all zeros"
            : "pass unobserved: .zero to give such parameters zero importance explicitly"
        throw EstimatorError(estimator: name, problem: "\(mismatch)\(context); \(remedy)")
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
