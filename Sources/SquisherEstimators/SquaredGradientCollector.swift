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
