import SquisherLayers
import SquisherTensor

/// A ``BackwardObserver`` that sums per-sample squared gradients of every parameterized leaf layer
/// with the rules of a ``PerSampleRuleRegistry`` (no per-sample loop).
///
/// Between ``beginBatch()`` and ``endBatch()`` (several backward passes after one forward, so every
/// layer sees the same input in each pass), rules that adopt ``PassSummableSquaredGradientRule``
/// get one ``SquaredGradientPassSum`` per layer, fed every pass and finished at ``endBatch()``;
/// other rules run per pass. Outside a batch every rule runs per pass.
final class SquaredGradientCollector: BackwardObserver {
    let registry: PerSampleRuleRegistry
    let estimator: String
    /// Multiplies each observed contribution (e.g. `1/S` for S Monte-Carlo samples).
    var scale: Float = 1
    /// Accumulators by layer path, then local parameter name.
    private(set) var accumulators: [String: [String: Tensor]] = [:]
    /// Largest temporary allocation of any rule call, in bytes.
    private(set) var peakTemporaryBytes = 0

    /// A layer's open pass sum in the current batch (nil: its rule runs per pass for this input).
    private struct OpenSum {
        var input: Tensor
        var sum: (any SquaredGradientPassSum)?
    }
    private var batchOpen = false
    private var expectedPasses = 1
    /// Open sums by layer path, and the paths in the order they were opened.
    private var openSums: [String: OpenSum] = [:]
    private var openOrder: [String] = []
    /// Each layer's last finished sum, offered to its next batch for reuse of its buffers.
    private var finished: [String: any SquaredGradientPassSum] = [:]

    /// Parameters used by more than one leaf layer (tied weights).
    private let shared: Set<ObjectIdentifier>
    /// The per-sample gradients of shared parameters in the current pass, one entry per use,
    /// with the pass's scale; summed over uses and squared sample by sample at ``endPass()``.
    private var sharedPass: [ObjectIdentifier: (uses: [PerSampleGradients], scale: Float)] = [:]
    /// Accumulated values of shared parameters.
    private var sharedAccumulators: [ObjectIdentifier: Tensor] = [:]
    /// Every parameter some observed layer holds (to tell an unreached parameter from a frozen one).
    private var observed = Set<ObjectIdentifier>()

    /// - Parameter model: the model whose backward passes will be observed (for its shared parameters).
    init(registry: PerSampleRuleRegistry, estimator: String, model: any Layer) {
        self.registry = registry
        self.estimator = estimator
        shared = Set(model.parameterUseCounts.filter { $0.value > 1 }.keys)
    }

    func observe(layer: any Layer, path: String, input: Tensor, outputGradient: Tensor) throws {
        guard layer.localParameters.contains(where: { $0.parameter.requiresGradient }) else { return }
        for (_, parameter) in layer.localParameters { observed.insert(ObjectIdentifier(parameter)) }
        guard let rule = registry.rule(for: layer) else {
            throw EstimatorError(
                estimator: estimator,
                problem: "layer '\(path)' (\(layer.typeName)) has parameters but no per-sample rule; register one with PerSampleRuleRegistry.register(_:for:)")
        }
        if layer.localParameters.contains(where: { shared.contains(ObjectIdentifier($0.parameter)) }) {
            try observeShared(layer: layer, path: path, rule: rule, input: input, outputGradient: outputGradient)
            return
        }
        if batchOpen, let summable = rule as? PassSummableSquaredGradientRule {
            if let open = openSums[path], !Self.sameStorage(open.input, input) {
                try finish(path)  // a new input at this path: its earlier passes are complete
            }
            if openSums[path] == nil {
                let previous = finished.removeValue(forKey: path)
                openSums[path] = OpenSum(input: input, sum: try summable.beginPasses(layer: layer, input: input, passes: expectedPasses, reusing: previous))
                openOrder.append(path)
            }
            if let sum = openSums[path]!.sum {
                let bytes = try sum.add(outputGradient: outputGradient, scale: scale)
                peakTemporaryBytes = max(peakTemporaryBytes, bytes + retainedBytes)
                return
            }
        }
        var local = accumulators.removeValue(forKey: path) ?? [:]
        let bytes = try rule.accumulateSquaredGradients(layer: layer, input: input, outputGradient: outputGradient, scale: scale, into: &local)
        accumulators[path] = local
        peakTemporaryBytes = max(peakTemporaryBytes, bytes + retainedBytes)
    }

    /// A layer holding a shared parameter: per-sample gradients of the shared ones are summed over
    /// the uses of this pass (squared at ``endPass()``); the layer's other parameters are squared now.
    private func observeShared(
        layer: any Layer, path: String, rule: any PerSampleSquaredGradientRule, input: Tensor, outputGradient: Tensor
    ) throws {
        guard let gradientRule = rule as? PerSampleGradientRule else {
            throw EstimatorError(
                estimator: estimator,
                problem: "layer '\(path)' (\(layer.typeName)) uses a parameter shared with another layer, and its rule cannot return per-sample gradients (PerSampleGradientRule)")
        }
        let gradients = try gradientRule.perSampleGradients(layer: layer, input: input, outputGradient: outputGradient)
        var local = accumulators.removeValue(forKey: path) ?? [:]
        for (name, parameter) in layer.localParameters where parameter.requiresGradient {
            guard let gradient = gradients[name], gradient.shape == parameter.value.shape, gradient.samples == input.shape.first else {
                throw EstimatorError(
                    estimator: estimator,
                    problem: "the rule of layer '\(path)' (\(layer.typeName)) returned no per-sample gradient of shape \(parameter.value.shape) for '\(name)'")
            }
            let id = ObjectIdentifier(parameter)
            if shared.contains(id) {
                sharedPass[id, default: ([], scale)].uses.append(gradient)
            } else {
                try local[name, default: Tensor(zeros: parameter.value.shape)].addScaled(PerSampleGradients.squaredSum(of: [gradient], scale: scale))
            }
        }
        accumulators[path] = local
        peakTemporaryBytes = max(peakTemporaryBytes, 4 * layer.localParameters.reduce(0) { $0 + $1.parameter.value.count } + retainedBytes)
    }

    /// Ends one backward pass: squares the per-sample gradients of shared parameters, summed over
    /// their uses, one sample at a time.
    func endPass() throws {
        for (id, open) in sharedPass {
            let squares = try PerSampleGradients.squaredSum(of: open.uses, scale: open.scale)
            try sharedAccumulators[id, default: Tensor(zeros: squares.shape)].addScaled(squares)
        }
        sharedPass = [:]
    }

    /// Starts a batch of `passes` backward passes that all follow the same forward.
    func beginBatch(passes: Int) {
        batchOpen = true
        expectedPasses = passes
    }

    /// Ends a batch: finishes every open pass sum into the accumulators.
    func endBatch() throws {
        for path in openOrder where openSums[path] != nil { try finish(path) }
        openSums = [:]
        openOrder = []
        batchOpen = false
    }

    private func finish(_ path: String) throws {
        guard let open = openSums.removeValue(forKey: path) else { return }
        openOrder.removeAll { $0 == path }
        guard let sum = open.sum else { return }
        var local = accumulators.removeValue(forKey: path) ?? [:]
        let bytes = try sum.finish(into: &local)
        accumulators[path] = local
        peakTemporaryBytes = max(peakTemporaryBytes, bytes + retainedBytes + sum.retainedBytes)
        finished[path] = sum
    }

    /// Bytes kept by the open and the finished pass sums.
    private var retainedBytes: Int {
        openSums.values.reduce(0) { $0 + ($1.sum?.retainedBytes ?? 0) } + finished.values.reduce(0) { $0 + $1.retainedBytes }
    }

    /// Whether two tensors are the same storage (not merely equal values): an input kept alive by
    /// an open sum cannot be freed or written in place, so the same address and shape mean the same input.
    private static func sameStorage(_ a: Tensor, _ b: Tensor) -> Bool {
        a.shape == b.shape && a.withUnsafeBufferPointer { pa in b.withUnsafeBufferPointer { pb in pa.baseAddress == pb.baseAddress } }
    }

    /// The accumulated values by full parameter name, in the model's parameter order; frozen
    /// parameters (`requiresGradient == false`) get zeros.
    /// - Throws: ``EstimatorError`` naming a trainable parameter that no observed layer holds (a
    ///   layer not reached by the backward pass): never a silent zero.
    func result(for model: any Layer) throws -> NamedTensors {
        var result = NamedTensors()
        for (name, parameter) in model.namedParameters {
            let id = ObjectIdentifier(parameter)
            if parameter.requiresGradient, !observed.contains(id) {
                throw EstimatorError(
                    estimator: estimator,
                    problem: "parameter '\(name)' requires a gradient but no layer holding it was reached by the backward pass (is it used in the forward?)")
            }
            if let value = sharedAccumulators[id] {
                result[name] = value
                continue
            }
            let dot = name.lastIndex(of: ".")
            let path = dot.map { String(name[..<$0]) } ?? ""
            let local = dot.map { String(name[name.index(after: $0)...]) } ?? name
            result[name] = accumulators[path]?[local] ?? Tensor(zeros: parameter.value.shape)
        }
        return result
    }

    var accumulatorBytes: Int {
        accumulators.values.reduce(0) { $0 + $1.values.reduce(0) { $0 + 4 * $1.count } } + sharedAccumulators.values.reduce(0) { $0 + 4 * $1.count }
    }
}
