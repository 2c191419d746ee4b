import CSquisherKernels
import Foundation
import SquisherData
import SquisherLayers
import SquisherOptimizers
import SquisherTensor

/// A Squisher for **any** optimizer (SGD included): accumulates squared mini-batch gradients itself
/// from the optimizer's post-step hook, with no change to the training loop [1].
///
/// - `.ema(beta2:)`: `v_t = β₂ v_{t−1} + (1−β₂) ḡ_t²` with the same rounding as PyTorch's Adam, so
///   that with Adam's β₂ it equals Adam's `exp_avg_sq` bit for bit.
/// - `.runningSum`: `v_t = v_{t−1} + ḡ_t²` (one fused multiply-add, as Adagrad's `sum`; with a sum-reduced loss of batch size
///   `B` this is the joint empirical Fisher accumulated over the run).
/// Accumulation starts at step ``startStep`` (1-based); ``biasCorrection`` uses the number of
/// accumulated steps.
///
/// [1]: Li, Dangel, Tam, Raffel 2025, Fishers for Free?
public final class SquaredGradientAccumulator: TrainingObserver, SensitivityEstimator {
    /// The accumulation rule.
    public enum Rule: Sendable, Hashable {
        case ema(beta2: Float)
        case runningSum
    }

    public var name: String {
        switch rule {
        case .ema(let beta2): "squisher-ema\(beta2)"
        case .runningSum: "squisher-sum"
        }
    }
    public let requirement = EstimatorRequirement.trainingRun
    public let rule: Rule
    /// First optimizer step (1-based) that is accumulated.
    public let startStep: Int
    /// Divide an EMA by `1 − β₂ᵏ` for `k` accumulated steps.
    public var biasCorrection: Bool
    /// The rescaling of the result.
    public var scaling: SquisherScaling
    /// What to do with a trainable parameter that got no gradient in any accumulated step.
    public var unobserved: UnobservedParameterPolicy

    /// Accumulated values by parameter name.
    public private(set) var accumulated = NamedTensors()
    /// Steps accumulated so far.
    public private(set) var accumulatedSteps = 0
    private var handle: HookHandle?

    /// - Throws: ``EstimatorError`` for `beta2` outside [0, 1) or `startStep < 1`.
    public init(
        rule: Rule, startStep: Int = 1, biasCorrection: Bool = false, scaling: SquisherScaling = .none, unobserved: UnobservedParameterPolicy = .fail
    ) throws(EstimatorError) {
        if case .ema(let beta2) = rule, !(0..<1).contains(beta2) {
            throw EstimatorError(estimator: "squisher-ema", problem: "beta2 must be in [0, 1), got \(beta2)")
        }
        guard startStep >= 1 else { throw EstimatorError(estimator: "squisher", problem: "startStep must be >= 1, got \(startStep)") }
        self.rule = rule
        self.startStep = startStep
        self.biasCorrection = biasCorrection
        self.scaling = scaling
        self.unobserved = unobserved
    }

    @discardableResult
    public func attach(to optimizer: any Optimizer) -> HookHandle {
        let handle = optimizer.registerStepPostHook { [weak self] event in self?.record(event) }
        self.handle = handle
        return handle
    }

    /// Stops observing the optimizer it was last attached to.
    public func detach() {
        handle?.remove()
        handle = nil
    }

    /// Adds one step's gradients (as the optimizer applied them).
    public func record(_ event: StepEvent) {
        guard event.step >= startStep else { return }
        accumulatedSteps += 1
        for (name, gradient) in event.gradients {
            var v = accumulated[name] ?? Tensor(zeros: gradient.shape)
            accumulated[name] = nil  // keep `v` uniquely referenced: update in place
            gradient.withUnsafeBufferPointer { g in
                v.withUnsafeMutableBufferPointer { v in
                    guard let gBase = g.baseAddress, let vBase = v.baseAddress else { return }
                    switch rule {
                    case .ema(let beta2):
                        // As PyTorch (and our Adam): 1 − β₂ from the decimal the user wrote (0.999, not
                        // Double(Float(0.999))), rounded to float32 once; FMA kernels in C.
                        let oneMinusBeta2 = Float(1 - (Double(beta2.description) ?? Double(beta2)))
                        csq_ema_square_update(g.count, gBase, vBase, beta2, oneMinusBeta2)
                    case .runningSum:
                        csq_sum_square_update(g.count, gBase, vBase)
                    }
                }
            }
            accumulated[name] = v
        }
    }

    /// `v` (scaled, optionally bias-corrected) for every parameter of `model`.
    /// - Throws: ``EstimatorError`` when no step was accumulated, or when a trainable parameter of
    ///   `model` got no gradient in any accumulated step (names that differ, an optimizer over part
    ///   of the model) unless ``unobserved`` is `.zero`; frozen parameters get zeros, listed in
    ///   `conventions["frozen"]`.
    public func estimate(model: any Layer, data: Dataset?) throws -> Importance {
        guard accumulatedSteps > 0 else {
            throw EstimatorError(estimator: name, problem: "accumulated no optimizer step (attach it to the optimizer before training; startStep is \(startStep))")
        }
        let parameters = model.namedParameters
        let trainable = parameters.filter { $0.parameter.requiresGradient }.map(\.name)
        if let mismatch = ParameterNameMismatch(expected: trainable, found: accumulated.names, source: "accumulator", allowUnexpected: true) {
            if unobserved == .fail || mismatch.missing.count == trainable.count {
                throw EstimatorError(estimator: name, problem: "\(mismatch); \(unobserved == .fail ? "pass unobserved: .zero to give such parameters zero importance explicitly" : "no parameter of the model was observed")")
            }
        }
        var factor = scaling.multiplier
        if biasCorrection, case .ema(let beta2) = rule {
            factor /= 1 - Foundation.pow(Double(beta2), Double(accumulatedSteps))
        }
        var values = NamedTensors()
        var unobservedNames: [String] = [], frozen: [String] = []
        for (name, parameter) in parameters {
            guard var v = accumulated[name] else {
                if parameter.requiresGradient { unobservedNames.append(name) } else { frozen.append(name) }
                values[name] = Tensor(zeros: parameter.value.shape)
                continue
            }
            guard v.shape == parameter.value.shape else {
                throw EstimatorError(estimator: self.name, problem: "accumulated '\(name)' has shape \(v.shape), the model's parameter has \(parameter.value.shape)")
            }
            if factor != 1 { v.scale(by: Float(factor)) }
            values[name] = v
        }
        var conventions = ["scaling": scaling.label, "bias_correction": biasCorrection ? "on" : "off",
                           "steps": "\(accumulatedSteps)", "start_step": "\(startStep)"]
        if !unobservedNames.isEmpty { conventions["unobserved"] = unobservedNames.joined(separator: ",") }
        if !frozen.isEmpty { conventions["frozen"] = frozen.joined(separator: ",") }
        return try Importance(values: values, estimator: name, conventions: conventions, cost: .free)
    }
}
