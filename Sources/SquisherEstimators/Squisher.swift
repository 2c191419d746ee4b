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
/// - ``scaling``: raw `v`, `B·v` or `N·v` (see ``SquisherScaling``).
///
/// Parameters without optimizer state (frozen, or never given a gradient) get zeros and are listed
/// in `conventions["no_state"]`.
///
/// [1]: Li, Dangel, Tam, Raffel 2025, Fishers for Free? Approximating the Fisher Information Matrix
///      by Recycling the Squared Gradient Accumulator.
public struct Squisher: SensitivityEstimator {
    public let name = "squisher"
    public let requirement = EstimatorRequirement.trainingRun

    /// Where the accumulator comes from.
    public enum Source {
        /// A live optimizer (its current state is read at ``estimate(model:data:)``).
        case optimizer(any Optimizer)
        /// A saved state.
        case state(OptimizerState)
    }

    public var source: Source
    /// Divide the EMA by `1 − β₂ᵗ` (per parameter, `t` its step count).
    public var biasCorrection: Bool
    /// The rescaling of `v`.
    public var scaling: SquisherScaling

    public init(source: Source, biasCorrection: Bool = false, scaling: SquisherScaling = .none) {
        self.source = source
        self.biasCorrection = biasCorrection
        self.scaling = scaling
    }

    /// The Squisher of a live optimizer.
    public init(optimizer: any Optimizer, biasCorrection: Bool = false, scaling: SquisherScaling = .none) {
        self.init(source: .optimizer(optimizer), biasCorrection: biasCorrection, scaling: scaling)
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

    public func estimate(model: any Layer, data: Dataset?) throws -> Importance {
        try estimate(parameters: model.namedParameters.map { ($0.name, $0.parameter.value.shape) })
    }

    /// The estimate for parameters given by name and shape (no model needed: works on checkpoints).
    public func estimate(parameters: [(name: String, shape: [Int])]) throws -> Importance {
        let state: OptimizerState
        switch source {
        case .optimizer(let optimizer): state = optimizer.state
        case .state(let saved): state = saved
        }
        guard let (bufferName, decay) = Self.accumulator(of: state) else {
            throw EstimatorError(estimator: name, problem: "optimizer \(state.kind) has no squared-gradient accumulator (use Adam, AdamW, RMSprop or Adagrad, or attach a SquaredGradientAccumulator)")
        }
        var values = NamedTensors()
        var missing: [String] = []
        for (parameter, shape) in parameters {
            guard var v = state.buffer(bufferName, for: parameter) else {
                missing.append(parameter)
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
        return try Importance(values: values, estimator: name, conventions: conventions, cost: .free)
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
