import Foundation
import SquisherEstimators
import SquisherIO
import SquisherTensor

/// Merging checkpoints of any size tensor by tensor: Fisher merging, UBGM or plain averaging over
/// files, with memory bounded by a few tensors instead of the model.
///
/// For each tensor name, in the first model's order, the tensor is read from every model (and its
/// importance) in chunks of 2¹⁸ elements, merged with the per-element formulas of
/// ``FisherMerging``, ``UBGMMerging`` or ``ParameterAveraging`` (called on each chunk as a
/// one-tensor model, so the formulas are exactly the in-memory ones), collected into one float32
/// tensor, written with ``SafeTensorsStreamWriter`` in the first model's dtype (F32/F16/BF16/F64;
/// computed in float32), and dropped; the input pages are released after each tensor. Integer
/// tensors (position ids, step counters) are copied unchanged from the first model (the base for
/// UBGM), as in the reference code.
///
/// The output repeats the first model's layout (one file, or the same shards with an index) in a
/// folder written under a temporary name and renamed when complete, with the first model folder's
/// non-tensor files (config.json, tokenizer files, ...) copied. Inputs are only read.
///
/// Memory: about 4 bytes × (the largest tensor) for the output tensor, plus the chunk buffers and
/// one tensor's worth of mapped input pages per model; optimizer states are loaded one at a time
/// and spilled (see ``CheckpointImportance``).
public struct CheckpointMerge: Sendable {
    /// The merging rule.
    public enum Method: Sendable {
        /// ``FisherMerging``: `θ = Σ λ_i F̃_i θ_i / Σ λ_i F̃_i`; a tensor for which some model has no
        /// importance is merged by the weighted plain average (and listed in the report).
        case fisher(FisherMerging)
        /// ``UBGMMerging`` into a base model (every task must have an importance for every
        /// floating-point tensor).
        case ubgm(UBGMMerging)
        /// ``ParameterAveraging``: `θ = Σ λ_i θ_i / Σ λ_i`.
        case average
    }

    /// The rule.
    public var method: Method
    /// `λ_i` (Fisher, averaging) or `α_t` (UBGM), one per model; `nil` for all ones.
    public var weights: [Double]?

    /// A merge with the given rule and weights.
    public init(method: Method, weights: [Double]? = nil) {
        self.method = method
        self.weights = weights
    }

    /// What a merge did.
    public struct Report: Sendable {
        /// Tensors written.
        public var tensorCount: Int
        /// Elements written.
        public var elementCount: Int
        /// Bytes of tensor data written.
        public var bytesWritten: Int
        /// Floating-point tensors merged by the plain average because some model had no importance.
        public var averagedTensors: [String]
        /// Integer tensors copied from the first model (or the base).
        public var copiedTensors: [String]
    }

    /// Merges `models` into `output` (a folder; see the type's documentation).
    /// - Parameters:
    ///   - importances: one per model (`nil` entries allowed for Fisher merging: those models count as
    ///     having no importance); ignored for ``Method/average``.
    ///   - base: the base model `θ₀` for UBGM (required there, ignored otherwise); its layout is the
    ///     output layout.
    ///   - baseImportance: `F₀` for UBGM, or nil for only the prior precision `δ₀`.
    /// - Throws: ``ApplicationError`` naming the checkpoint and tensor: differing names, shapes or
    ///   float/integer kinds across models, bad importances, weights of the wrong count, an output
    ///   that exists, a write failure. Nothing is left under `output` on error.
    @discardableResult
    public func merge(
        models: [CheckpointModel], importances: [CheckpointImportance?] = [], base: CheckpointModel? = nil,
        baseImportance: CheckpointImportance? = nil, output: CheckpointOutputFolder
    ) throws(ApplicationError) -> Report {
        let application = "merge"
        func fail(_ problem: String) -> ApplicationError { ApplicationError(application: application, problem: problem) }
        guard !models.isEmpty else { throw fail("needs at least one model") }
        var isUBGM = false
        if case .ubgm = method { isUBGM = true }
        if isUBGM, base == nil { throw fail("UBGM needs a base model (--base)") }
        let reference = isUBGM ? base! : models[0]
        let all = isUBGM ? [reference] + models : models
        func label(_ i: Int) -> String { isUBGM ? (i == 0 ? "the base \(all[0].path)" : "model \(i - 1) (\(all[i].path))") : "model \(i) (\(all[i].path))" }
        // Layout check up front, from the headers only.
        let referenceNames = Set(reference.names)
        for (i, model) in all.enumerated().dropFirst() {
            if let missing = reference.names.first(where: { (try? model.entry($0)) == nil }) {
                throw fail("\(label(i)) has no tensor '\(missing)', which \(label(0)) has")
            }
            if let extra = model.names.first(where: { !referenceNames.contains($0) }) {
                throw fail("\(label(i)) has tensor '\(extra)', which \(label(0)) lacks")
            }
            for name in reference.names {
                let (a, b) = (try reference.entry(name), try model.entry(name))
                guard a.shape == b.shape else { throw fail("tensor '\(name)' has shape \(b.shape) in \(label(i)) but \(a.shape) in \(label(0))") }
                guard a.dtype.isFloatingPoint == b.dtype.isFloatingPoint else {
                    throw fail("tensor '\(name)' is \(b.dtype.rawValue) in \(label(i)) but \(a.dtype.rawValue) in \(label(0))")
                }
            }
        }
        var lambdas = weights ?? Array(repeating: 1, count: models.count)
        guard lambdas.count == models.count else { throw fail("got \(lambdas.count) weights for \(models.count) models") }
        let sources: [CheckpointImportance?]
        switch method {
        case .average: sources = Array(repeating: nil, count: models.count)
        case .fisher, .ubgm:
            guard importances.count == models.count else { throw fail("got \(importances.count) importances for \(models.count) models") }
            sources = importances
        }
        // Importance shapes must match the model's.
        for (i, source) in sources.enumerated() {
            guard let source else { continue }
            for name in reference.names where source.covers(name) {
                let shape = try reference.entry(name).shape
                guard source.shape(name) == shape else {
                    throw fail("importance of '\(name)' in \(source.path) has shape \(source.shape(name)!), the parameter has \(shape) (model \(i))")
                }
            }
        }
        // Per-model normalization needs global norms: one streaming pass over the importances,
        // folded into the weights so that each chunk is merged without normalization.
        var fisherRule: FisherMerging? = nil
        if case .fisher(var rule) = method {
            if rule.normalizePerModel {
                for (i, source) in sources.enumerated() {
                    guard let source else { continue }
                    var sum = 0.0
                    for name in reference.names where source.covers(name) {
                        for range in CheckpointLayoutWriter.chunks(try reference.entry(name).shape.reduce(1, *)) {
                            for x in try source.floats(name, range: range) { sum += Double(x) * Double(x) }
                        }
                        source.release(name)
                    }
                    if sum > 0 { lambdas[i] /= sum.squareRoot() }
                }
                rule.normalizePerModel = false
            }
            fisherRule = rule
        }

        var report = Report(tensorCount: 0, elementCount: 0, bytesWritten: 0, averagedTensors: [], copiedTensors: [])
        try CheckpointLayoutWriter.write(like: reference, into: output.staging) { (name: String, writer: SafeTensorsStreamWriter) throws(ApplicationError) in
            let (dtype, shape) = try reference.entry(name)
            let count = shape.reduce(1, *)
            report.tensorCount += 1
            report.elementCount += count
            report.bytesWritten += count * dtype.byteCount
            defer { for model in all { model.release(name) } ; for source in sources { source?.release(name) } ; baseImportance?.release(name) }
            guard dtype.isFloatingPoint else {
                do { try reference.copy(name, to: writer) } catch { throw ApplicationError(application: "output", cause: error) }
                report.copiedTensors.append(name)
                return
            }
            let covered = sources.allSatisfy { $0?.covers(name) == true }
            if case .fisher = method, !covered { report.averagedTensors.append(name) }
            var merged = [Float]()
            merged.reserveCapacity(count)
            for range in CheckpointLayoutWriter.chunks(count) {
                let chunkShape = [range.count]
                func chunk(_ model: CheckpointModel) throws(ApplicationError) -> NamedTensors {
                    var tensors = NamedTensors()
                    tensors[name] = Tensor(uncheckedShape: chunkShape, scalars: try model.floats(name, range: range))
                    return tensors
                }
                func importance(_ source: CheckpointImportance?) throws(ApplicationError) -> Importance? {
                    guard let source, source.covers(name) else { return nil }
                    var tensors = NamedTensors()
                    tensors[name] = Tensor(uncheckedShape: chunkShape, scalars: try source.floats(name, range: range))
                    return Importance(unchecked: tensors, estimator: source.path)
                }
                let result: NamedTensors
                do throws(ApplicationError) {
                    switch method {
                    case .average:
                        var chunks: [NamedTensors] = []
                        for model in models { chunks.append(try chunk(model)) }
                        result = try ParameterAveraging.merge(models: chunks, weights: lambdas)
                    case .fisher:
                        var chunks: [NamedTensors] = []
                        var fishers: [Importance?] = []
                        for (model, source) in zip(models, sources) {
                            chunks.append(try chunk(model))
                            fishers.append(covered ? try importance(source) : nil)
                        }
                        result = try fisherRule!.merge(models: chunks, importances: fishers, weights: lambdas).parameters
                    case .ubgm(let rule):
                        var chunks: [NamedTensors] = []
                        var fishers: [Importance] = []
                        for (t, (model, source)) in zip(models, sources).enumerated() {
                            chunks.append(try chunk(model))
                            guard let fisher = try importance(source) else {
                                throw fail("UBGM: task model \(t) (\(model.path)) has no importance for '\(name)'")
                            }
                            fishers.append(fisher)
                        }
                        result = try rule.merge(base: try chunk(reference), baseImportance: try importance(baseImportance), tasks: chunks, taskImportances: fishers, scales: lambdas)
                    }
                } catch {
                    throw ApplicationError(application: error.application, problem: "tensor '\(name)' elements \(range): \(error.problem)")
                }
                let values = result[name]!.scalars
                if let bad = values.firstIndex(where: { !$0.isFinite }) {
                    throw fail("tensor '\(name)' element \(range.lowerBound + bad) merged to \(values[bad]); check the inputs and importances")
                }
                merged.append(contentsOf: values)
            }
            do {
                try merged.withUnsafeBufferPointer { (buffer: UnsafeBufferPointer<Float>) throws(SafeTensorsError) in try writer.write(name, scalars: buffer) }
            } catch { throw ApplicationError(application: "output", cause: error) }
        }
        try output.commit()
        return report
    }
}
