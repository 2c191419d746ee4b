import SquisherLayers
import SquisherTensor

/// A ``BackwardObserver`` that sums per-sample squared gradients of every parameterized leaf layer
/// with the rules of a ``PerSampleRuleRegistry`` (no per-sample loop).
final class SquaredGradientCollector: BackwardObserver {
    let registry: PerSampleRuleRegistry
    let estimator: String
    /// Multiplies each observed contribution (e.g. `1/S` for S Monte-Carlo samples).
    var scale: Float = 1
    /// Accumulators by layer path, then local parameter name.
    private(set) var accumulators: [String: [String: Tensor]] = [:]
    /// Largest temporary allocation of any rule call, in bytes.
    private(set) var peakTemporaryBytes = 0

    init(registry: PerSampleRuleRegistry, estimator: String) {
        self.registry = registry
        self.estimator = estimator
    }

    func observe(layer: any Layer, path: String, input: Tensor, outputGradient: Tensor) throws {
        guard layer.localParameters.contains(where: { $0.parameter.requiresGradient }) else { return }
        guard let rule = registry.rule(for: layer) else {
            throw EstimatorError(
                estimator: estimator,
                problem: "layer '\(path)' (\(layer.typeName)) has parameters but no per-sample rule; register one with PerSampleRuleRegistry.register(_:for:)")
        }
        var local = accumulators[path] ?? [:]
        let bytes = try rule.accumulateSquaredGradients(layer: layer, input: input, outputGradient: outputGradient, scale: scale, into: &local)
        accumulators[path] = local
        peakTemporaryBytes = max(peakTemporaryBytes, bytes)
    }

    /// The accumulated values by full parameter name, in the model's parameter order; parameters
    /// that never received a contribution (frozen) get zeros.
    func result(for model: any Layer) -> NamedTensors {
        var result = NamedTensors()
        for (name, parameter) in model.namedParameters {
            let dot = name.lastIndex(of: ".")
            let path = dot.map { String(name[..<$0]) } ?? ""
            let local = dot.map { String(name[name.index(after: $0)...]) } ?? name
            result[name] = accumulators[path]?[local] ?? Tensor(zeros: parameter.value.shape)
        }
        return result
    }

    var accumulatorBytes: Int { accumulators.values.reduce(0) { $0 + $1.values.reduce(0) { $0 + 4 * $1.count } } }
}
