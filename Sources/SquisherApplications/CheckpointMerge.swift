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
        /// Integer tensors copied from the first model.
        public var copiedTensors: [String]
        /// Tied tensors: a tensor without importance that is, in every model, a bit-for-bit copy of
        /// a tensor with importance (GPT-2's `lm_head.weight` and `transformer.wte.weight`, whose
        /// optimizer state is one) is merged with its partner's importance, so both stay equal.
        /// Tensor name → the partner whose importance it shares.
        public var tiedTensors: [String: String]
        /// Fisher merging: the absolute floor `ε_i` of each model (see ``FisherMerging/Floor``).
        public var floors: [Float]
        /// Fisher merging: the fraction of each model's merged importance entries below its floor.
        public var flooredFractions: [Double]
        /// UBGM: task tensors the base lacks (merged without a base term, see ``UBGMMerging/Result``).
        public var tensorsWithoutBase: [String]
        /// UBGM: base tensors no task model has (not written).
        public var baseOnlyTensors: [String]
    }

    /// Merges `models` into `output` (a folder; see the type's documentation).
    /// - Parameters:
    ///   - importances: one per model (`nil` entries allowed for Fisher merging: those models count as
    ///     having no importance); ignored for ``Method/average``.
    ///   - base: the base model `θ₀` for UBGM (required there, ignored otherwise). The output has the
    ///     task models' layout; the base may lack some of their tensors or have extra ones (reported).
    ///   - baseImportance: `F₀` for UBGM, or nil for only the prior precision `δ₀`.
    /// - Throws: ``ApplicationError`` naming the checkpoint and tensor: differing names, shapes or
    ///   float/integer kinds across models, bad importances, weights of the wrong count, an output
    ///   that exists, a write failure. Nothing is left under `output` on error.
    @discardableResult
    public func merge(
        models: [CheckpointModel], importances: [CheckpointImportance?] = [], base: CheckpointModel? = nil,
        baseImportance: CheckpointImportance? = nil, output: CheckpointOutputFolder
    ) throws(ApplicationError) -> Report {
        guard !models.isEmpty else { throw Self.fail("needs at least one model") }
        if case .ubgm = method, base == nil { throw Self.fail("UBGM needs a base model (--base)") }
        try Self.checkLayouts(models)
        let reference = models[0]
        let lambdas = weights ?? Array(repeating: 1, count: models.count)
        guard lambdas.count == models.count else { throw Self.fail("got \(lambdas.count) weights for \(models.count) models") }
        let sources: [CheckpointImportance?]
        switch method {
        case .average: sources = Array(repeating: nil, count: models.count)
        case .fisher, .ubgm:
            guard importances.count == models.count else { throw Self.fail("got \(importances.count) importances for \(models.count) models") }
            sources = importances
        }
        try Self.checkImportanceShapes(sources, reference: reference)
        var report = Report(
            tensorCount: 0, elementCount: 0, bytesWritten: 0, averagedTensors: [], copiedTensors: [],
            tiedTensors: try Self.tiedTensors(models: models, sources: sources), floors: [], flooredFractions: [],
            tensorsWithoutBase: [], baseOnlyTensors: [])
        let importanceName = { (name: String) in report.tiedTensors[name] ?? name }
        var fisherRule: FisherMerging? = nil
        var coefficients = lambdas
        if case .fisher(let rule) = method {
            let statistics = try Self.importanceStatistics(sources, reference: reference, importanceName: importanceName)
            report.floors = statistics.map { rule.floor.resolved(sum: $0.sum, count: $0.count) }
            if rule.normalizePerModel { coefficients = zip(lambdas, statistics).map { $1.squares > 0 ? $0 / $1.squares.squareRoot() : $0 } }
            fisherRule = rule
        }
        if let base {
            let referenceNames = Set(reference.names)
            report.tensorsWithoutBase = reference.names.filter { !base.has($0) }
            report.baseOnlyTensors = base.names.filter { !referenceNames.contains($0) }
        }
        var floored = [Int](repeating: 0, count: models.count)
        var flooredTotal = 0
        try CheckpointLayoutWriter.write(like: reference, into: output.staging) { (name: String, writer: SafeTensorsStreamWriter) throws(ApplicationError) in
            let (dtype, shape) = try reference.entry(name)
            let count = shape.reduce(1, *)
            report.tensorCount += 1
            report.elementCount += count
            report.bytesWritten += count * dtype.byteCount
            let sourceName = importanceName(name)
            defer {
                for model in models { model.release(name) }
                base?.release(name)
                for source in sources { source?.release(sourceName) }
                baseImportance?.release(name)
            }
            guard dtype.isFloatingPoint else {
                do { try reference.copy(name, to: writer) } catch { throw ApplicationError(application: "output", cause: error) }
                report.copiedTensors.append(name)
                return
            }
            let covered = sources.allSatisfy { $0?.covers(sourceName) == true }
            if case .fisher = method, !covered { report.averagedTensors.append(name) }
            var merged = [Float]()
            merged.reserveCapacity(count)
            for range in CheckpointLayoutWriter.chunks(count) {
                let chunk = ChunkReader(name: name, importanceName: sourceName, range: range)
                let values: [Float]
                do throws(ApplicationError) {
                    switch method {
                    case .average:
                        values = try ParameterAveraging.merge(models: models.map(chunk.tensors), weights: lambdas)[name]!.scalars
                    case .fisher:
                        let fishers = covered ? try sources.map(chunk.importance) : Array(repeating: nil, count: models.count)
                        let result = try fisherRule!.merge(models: try models.map(chunk.tensors), importances: fishers, coefficients: coefficients, floors: report.floors)
                        if covered { for i in models.indices { floored[i] += result.flooredEntries[i] }; flooredTotal += range.count }
                        values = result.parameters[name]!.scalars
                    case .ubgm(let rule):
                        values = try Self.mergeUBGMChunk(rule, chunk: chunk, models: models, sources: sources, base: base!, baseImportance: baseImportance, scales: lambdas)
                    }
                } catch {
                    throw ApplicationError(application: error.application, problem: "tensor '\(name)' elements \(range): \(error.problem)")
                }
                if let bad = values.firstIndex(where: { !$0.isFinite }) {
                    throw Self.fail("tensor '\(name)' element \(range.lowerBound + bad) merged to \(values[bad]); check the inputs and importances")
                }
                merged.append(contentsOf: values)
            }
            do {
                try merged.withUnsafeBufferPointer { (buffer: UnsafeBufferPointer<Float>) throws(SafeTensorsError) in try writer.write(name, scalars: buffer) }
            } catch { throw ApplicationError(application: "output", cause: error) }
        }
        if fisherRule != nil { report.flooredFractions = floored.map { flooredTotal > 0 ? Double($0) / Double(flooredTotal) : 0 } }
        try output.commit()
        return report
    }
}

extension CheckpointMerge {
    static func fail(_ problem: String) -> ApplicationError { ApplicationError(application: "merge", problem: problem) }

    /// Reads one chunk of one tensor (and of its importance, under the tied partner's name) as
    /// one-tensor models, so that the in-memory formulas run on it unchanged.
    struct ChunkReader {
        var name: String
        var importanceName: String
        var range: Range<Int>

        func tensors(_ model: CheckpointModel) throws(ApplicationError) -> NamedTensors {
            var tensors = NamedTensors()
            tensors[name] = Tensor(uncheckedShape: [range.count], scalars: try model.floats(name, range: range))
            return tensors
        }

        func importance(_ source: CheckpointImportance?) throws(ApplicationError) -> Importance? {
            guard let source, source.covers(importanceName) else { return nil }
            var tensors = NamedTensors()
            tensors[name] = Tensor(uncheckedShape: [range.count], scalars: try source.floats(importanceName, range: range))
            return Importance(unchecked: tensors, estimator: source.path)
        }
    }

    /// Every model must have the first model's tensor names, shapes and float/integer kinds.
    static func checkLayouts(_ models: [CheckpointModel]) throws(ApplicationError) {
        let reference = models[0]
        let referenceNames = Set(reference.names)
        func label(_ i: Int) -> String { "model \(i) (\(models[i].path))" }
        for (i, model) in models.enumerated().dropFirst() {
            if let missing = reference.names.first(where: { !model.has($0) }) {
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
    }

    /// Importance shapes must match the model's.
    static func checkImportanceShapes(_ sources: [CheckpointImportance?], reference: CheckpointModel) throws(ApplicationError) {
        for (i, source) in sources.enumerated() {
            guard let source else { continue }
            for name in reference.names where source.covers(name) {
                let shape = try reference.entry(name).shape
                guard source.shape(name) == shape else {
                    throw fail("importance of '\(name)' in \(source.path) has shape \(source.shape(name)!), the parameter has \(shape) (model \(i))")
                }
            }
        }
    }

    /// Floating-point tensors that some importance lacks and that are, in every model, bit-for-bit
    /// copies of a same-shaped tensor that every importance covers (tied weights). Name → partner.
    static func tiedTensors(models: [CheckpointModel], sources: [CheckpointImportance?]) throws(ApplicationError) -> [String: String] {
        let present = sources.compactMap { $0 }
        guard !present.isEmpty else { return [:] }
        let reference = models[0]
        let coveredByAll = { (name: String) in present.allSatisfy { $0.covers(name) } }
        var tied: [String: String] = [:]
        for name in reference.names where !coveredByAll(name) {
            let (dtype, shape) = try reference.entry(name)
            guard dtype.isFloatingPoint else { continue }
            for partner in reference.names where partner != name && coveredByAll(partner) {
                guard try reference.entry(partner) == (dtype, shape) else { continue }
                var equalEverywhere = true
                for model in models where equalEverywhere { equalEverywhere = try model.bitwiseEqual(name, partner) }
                if equalEverywhere {
                    tied[name] = partner
                    break
                }
            }
        }
        return tied
    }

    /// Per model: the sum, sum of squares and count of its importance entries over the tensors
    /// every model has an importance for (for the floor and the per-model normalization).
    static func importanceStatistics(
        _ sources: [CheckpointImportance?], reference: CheckpointModel, importanceName: (String) -> String
    ) throws(ApplicationError) -> [(sum: Double, squares: Double, count: Int)] {
        var statistics = Array(repeating: (sum: 0.0, squares: 0.0, count: 0), count: sources.count)
        for name in reference.names where try reference.entry(name).dtype.isFloatingPoint {
            let sourceName = importanceName(name)
            guard sources.allSatisfy({ $0?.covers(sourceName) == true }) else { continue }
            let count = try reference.entry(name).shape.reduce(1, *)
            for (i, source) in sources.enumerated() {
                for range in CheckpointLayoutWriter.chunks(count) {
                    for x in try source!.floats(sourceName, range: range) {
                        statistics[i].sum += Double(x)
                        statistics[i].squares += Double(x) * Double(x)
                    }
                }
                statistics[i].count += count
                source!.release(sourceName)
            }
        }
        return statistics
    }

    /// One chunk of a UBGM merge: the tasks' layout, the base's tensor when it has one.
    static func mergeUBGMChunk(
        _ rule: UBGMMerging, chunk: ChunkReader, models: [CheckpointModel], sources: [CheckpointImportance?],
        base: CheckpointModel, baseImportance: CheckpointImportance?, scales: [Double]
    ) throws(ApplicationError) -> [Float] {
        var fishers: [Importance] = []
        for (t, (model, source)) in zip(models, sources).enumerated() {
            guard let fisher = try chunk.importance(source) else {
                throw fail("UBGM: task model \(t) (\(model.path)) has no importance for '\(chunk.name)'")
            }
            fishers.append(fisher)
        }
        if base.has(chunk.name), try base.entry(chunk.name).shape != models[0].entry(chunk.name).shape {
            throw fail("tensor '\(chunk.name)' has shape \(try base.entry(chunk.name).shape) in the base \(base.path) but \(try models[0].entry(chunk.name).shape) in the task models")
        }
        let baseChunk = base.has(chunk.name) ? try chunk.tensors(base) : NamedTensors()
        let baseFisher = base.has(chunk.name) ? try chunk.importance(baseImportance) : nil
        return try rule.merge(base: baseChunk, baseImportance: baseFisher, tasks: try models.map(chunk.tensors), taskImportances: fishers, scales: scales)[chunk.name]!.scalars
    }
}
