import Dispatch
import Foundation
import SquisherCheckpointIO
import SquisherCheckpoints
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
            let totals = try Self.importanceTotals(sources, reference: reference, importanceName: importanceName)
            (report.floors, coefficients) = rule.resolve(totals, weights: lambdas)
            fisherRule = rule
        }
        if let base {
            let referenceNames = Set(reference.names)
            report.tensorsWithoutBase = reference.names.filter { !base.has($0) }
            report.baseOnlyTensors = base.names.filter { !referenceNames.contains($0) }
        }
        var floored = [Int](repeating: 0, count: models.count)
        var flooredTotal = 0
        let order = CheckpointLayoutWriter.files(of: reference).flatMap(\.tensors)
        let following = Dictionary(zip(order, order.dropFirst()), uniquingKeysWith: { first, _ in first })
        let prefetch = { (name: String) in
            for model in models { model.prefetch(name) }
            for source in sources { source?.prefetch(importanceName(name)) }
        }
        if let first = order.first { prefetch(first) }
        let encodedTensor = EncodedTensorBuffer()
        try CheckpointLayoutWriter.write(like: reference, into: output.staging, failure: outputFailure) { (name: String, writer: SafeTensorsStreamWriter) throws(ApplicationError) in
            let (dtype, shape) = try checkpoint { () throws(CheckpointError) in try reference.entry(name) }
            let count = shape.reduce(1, *)
            report.tensorCount += 1
            report.elementCount += count
            report.bytesWritten += count * dtype.byteCount
            let sourceName = importanceName(name)
            if let next = following[name] { prefetch(next) }  // read ahead while this one is merged
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
            switch method {
            case .average, .fisher:
                let encoded = encodedTensor.reserve(count * dtype.byteCount)
                let counts = try Self.mergeTensor(
                    name, importanceName: sourceName, models: models, importances: covered && fisherRule != nil ? sources.map { $0! } : nil,
                    coefficients: coefficients, floors: fisherRule != nil ? report.floors : Array(repeating: 1, count: models.count),
                    encodingAs: dtype, into: encoded)
                if covered, fisherRule != nil {
                    for i in models.indices { floored[i] += counts[i] }
                    flooredTotal += count
                }
                do { try writer.writeRaw(name, bytes: UnsafeRawBufferPointer(encoded)) } catch { throw ApplicationError(application: "output", cause: error) }
            case .ubgm(let rule):
                let merged = try Self.mergeUBGMTensor(rule, name: name, importanceName: sourceName, count: count, models: models, sources: sources,
                                                      base: base!, baseImportance: baseImportance, scales: lambdas)
                try Self.write(merged, name: name, to: writer)
            }
        }
        if fisherRule != nil { report.flooredFractions = floored.map { flooredTotal > 0 ? Double($0) / Double(flooredTotal) : 0 } }
        try checkpoint("output") { () throws(CheckpointError) in try output.commit() }
        return report
    }
}

extension CheckpointMerge {
    static func fail(_ problem: String) -> ApplicationError { ApplicationError(application: "merge", problem: problem) }

    /// Elements merged per work item: each thread decodes this many elements of every model (and
    /// importance) into its own buffers, merges them and moves on to its next item.
    static let elementsPerItem = 1 << 16

    /// Merges tensor `name` of `models` with ``FisherMerging/mergeElements(parameters:importances:coefficients:floors:into:flooredEntries:)``
    /// (the in-memory arithmetic) and encodes the result as `dtype` into `out`
    /// (`count × dtype.byteCount` bytes), ``elementsPerItem`` elements at a time, items spread over
    /// ``GEMMConfiguration/maximumThreads`` threads: each thread decodes, merges, checks and encodes
    /// its own items, so only the file write is left to the caller. `importances` nil for the plain
    /// average.
    /// - Returns: per model, the entries below its floor.
    /// - Throws: ``ApplicationError`` naming the tensor: an input that cannot be read, a merged value
    ///   that is not finite (the first such element), or one that does not fit `dtype`.
    static func mergeTensor(
        _ name: String, importanceName: String, models: [CheckpointModel], importances: [CheckpointImportance]?,
        coefficients: [Double], floors: [Float], encodingAs dtype: SafeTensorsDType, into out: UnsafeMutableRawBufferPointer
    ) throws(ApplicationError) -> [Int] {
        let count = out.count / dtype.byteCount
        let items = (count + elementsPerItem - 1) / elementsPerItem
        let threads = max(1, min(GEMMConfiguration.current.maximumThreads, items))
        guard let base = out.baseAddress, count > 0 else { return Array(repeating: 0, count: models.count) }
        let target = SendablePointer(base.assumingMemoryBound(to: UInt8.self))
        let outcomes = ThreadOutcomes<ItemOutcome>(threads)
        DispatchQueue.concurrentPerform(iterations: threads) { thread in
            let m = models.count, width = elementsPerItem
            let buffer = UnsafeMutableBufferPointer<Float>.allocate(capacity: (2 * m + 1) * width)
            defer { buffer.deallocate() }
            var floored = [Int](repeating: 0, count: m)
            do throws(CheckpointError) {
                for item in stride(from: thread, to: items, by: threads) {
                    let range = item * width..<min(count, (item + 1) * width)
                    let views = (0...2 * m).map { UnsafeMutableBufferPointer(rebasing: buffer[$0 * width..<$0 * width + range.count]) }
                    for i in 0..<m { try models[i].decode(name, range: range, into: views[i]) }
                    if let importances { for i in 0..<m { try importances[i].decode(importanceName, range: range, into: views[m + i]) } }
                    let merged = views[2 * m]
                    FisherMerging.mergeElements(
                        parameters: views[..<m].map(UnsafeBufferPointer.init), importances: importances == nil ? nil : views[m..<2 * m].map(UnsafeBufferPointer.init),
                        coefficients: coefficients, floors: floors, into: merged, flooredEntries: &floored)
                    if let rejection = Self.encode(merged, name: name, firstElement: range.lowerBound, as: dtype,
                                                   into: UnsafeMutableRawPointer(target.pointer + range.lowerBound * dtype.byteCount)) {
                        outcomes.set(thread, .success(rejection))
                        return
                    }
                }
                outcomes.set(thread, .success(.merged(floored: floored)))
            } catch {
                outcomes.set(thread, .failure(error))
            }
        }
        var total = [Int](repeating: 0, count: models.count)
        var firstRejection: (element: Int, error: ApplicationError)? = nil
        for thread in 0..<threads {
            switch outcomes.get(thread) {
            case .success(.merged(let floored)): for i in total.indices { total[i] += floored[i] }
            case .success(.rejected(let element, let error)):
                if firstRejection == nil || element < firstRejection!.element { firstRejection = (element, error) }
            case .failure(let error): throw ApplicationError(application: "merge", problem: "tensor '\(name)': \(error)", cause: error)
            }
        }
        if let firstRejection { throw firstRejection.error }
        return total
    }

    /// What one thread of ``mergeTensor(_:importanceName:models:importances:coefficients:floors:encodingAs:into:)``
    /// did: merged all its items (with per-model floored counts), or stopped at a value it could not
    /// write (its element index in the tensor and the error).
    enum ItemOutcome: Sendable {
        case merged(floored: [Int])
        case rejected(element: Int, error: ApplicationError)
    }

    /// Checks that the merged values of one item are finite and encodes them as `dtype` at `out`;
    /// returns why not, or nil when written.
    static func encode(
        _ merged: UnsafeMutableBufferPointer<Float>, name: String, firstElement: Int, as dtype: SafeTensorsDType, into out: UnsafeMutableRawPointer
    ) -> ItemOutcome? {
        if let bad = FloatScan.firstNonFinite(UnsafeBufferPointer(merged)) {
            return .rejected(element: firstElement + bad, error: fail(
                "tensor '\(name)' element \(firstElement + bad) merged to \(merged[bad]); check the inputs and importances"))
        }
        do throws(SafeTensorsDType.EncodingFailure) { try dtype.encode(UnsafeBufferPointer(merged), into: out) } catch {
            return .rejected(element: firstElement + error.index, error: ApplicationError(
                application: "output", problem: "tensor '\(name)' element \(firstElement + error.index): \(error.reason)"))
        }
        return nil
    }

    /// Reads one chunk of one tensor (and of its importance, under the tied partner's name) as
    /// one-tensor models, so that the in-memory formulas run on it unchanged (UBGM).
    struct ChunkReader {
        var name: String
        var importanceName: String
        var range: Range<Int>

        func tensors(_ model: CheckpointModel) throws(ApplicationError) -> NamedTensors {
            var tensors = NamedTensors()
            tensors[name] = Tensor(uncheckedShape: [range.count], scalars: try checkpoint { () throws(CheckpointError) in try model.floats(name, range: range) })
            return tensors
        }

        func importance(_ source: CheckpointImportance?) throws(ApplicationError) -> Importance? {
            guard let source, source.covers(importanceName) else { return nil }
            var tensors = NamedTensors()
            tensors[name] = Tensor(uncheckedShape: [range.count], scalars: try checkpoint("importance") { () throws(CheckpointError) in try source.floats(importanceName, range: range) })
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
                let (a, b) = (try checkpoint { () throws(CheckpointError) in try reference.entry(name) }, try checkpoint { () throws(CheckpointError) in try model.entry(name) })
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
                let shape = try checkpoint { () throws(CheckpointError) in try reference.entry(name) }.shape
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
            let (dtype, shape) = try checkpoint { () throws(CheckpointError) in try reference.entry(name) }
            guard dtype.isFloatingPoint else { continue }
            for partner in reference.names where partner != name && coveredByAll(partner) {
                let partnerEntry = try checkpoint { () throws(CheckpointError) in try reference.entry(partner) }
                guard partnerEntry == (dtype, shape) else { continue }
                var equalEverywhere = true
                for model in models where equalEverywhere { equalEverywhere = try checkpoint { () throws(CheckpointError) in try model.bitwiseEqual(name, partner) } }
                if equalEverywhere {
                    tied[name] = partner
                    break
                }
            }
        }
        return tied
    }

    /// Per model: the totals (``FisherMerging/ImportanceTotals``) of its importance entries over the
    /// tensors every model has an importance for (for the floor and the per-model normalization),
    /// folded in element order chunk by chunk, whatever the thread count.
    static func importanceTotals(
        _ sources: [CheckpointImportance?], reference: CheckpointModel, importanceName: (String) -> String
    ) throws(ApplicationError) -> [FisherMerging.ImportanceTotals] {
        var totals = Array(repeating: FisherMerging.ImportanceTotals(), count: sources.count)
        var merged: [(name: String, count: Int)] = []
        for name in reference.names {
            let (dtype, shape) = try checkpoint { () throws(CheckpointError) in try reference.entry(name) }
            let sourceName = importanceName(name)
            if dtype.isFloatingPoint, sources.allSatisfy({ $0?.covers(sourceName) == true }) { merged.append((sourceName, shape.reduce(1, *))) }
        }
        for (k, tensor) in merged.enumerated() {
            if k + 1 < merged.count { for source in sources { source!.prefetch(merged[k + 1].name) } }  // read ahead
            for (i, source) in sources.enumerated() {
                totals[i].add(try tensorTotals(source!, name: tensor.name, count: tensor.count))
                source!.release(tensor.name)
            }
        }
        return totals
    }

    /// The totals of one importance tensor, ``elementsPerItem`` elements per work item over the
    /// threads, folded in item order.
    static func tensorTotals(_ source: CheckpointImportance, name: String, count: Int) throws(ApplicationError) -> FisherMerging.ImportanceTotals {
        let items = (count + elementsPerItem - 1) / elementsPerItem
        let threads = max(1, min(GEMMConfiguration.current.maximumThreads, items))
        let perItem = ThreadOutcomes<FisherMerging.ImportanceTotals>(items)
        DispatchQueue.concurrentPerform(iterations: threads) { thread in
            let buffer = UnsafeMutableBufferPointer<Float>.allocate(capacity: elementsPerItem)
            defer { buffer.deallocate() }
            for item in stride(from: thread, to: items, by: threads) {
                let range = item * elementsPerItem..<min(count, (item + 1) * elementsPerItem)
                let view = UnsafeMutableBufferPointer(rebasing: buffer[0..<range.count])
                do throws(CheckpointError) {
                    try source.decode(name, range: range, into: view)
                    var totals = FisherMerging.ImportanceTotals()
                    totals.add(UnsafeBufferPointer(view))
                    perItem.set(item, .success(totals))
                } catch {
                    perItem.set(item, .failure(error))
                }
            }
        }
        var totals = FisherMerging.ImportanceTotals()
        for item in 0..<items {
            switch perItem.get(item) {
            case .success(let part): totals.add(part)
            case .failure(let error): throw ApplicationError(application: "importance", cause: error)
            }
        }
        return totals
    }

    /// Writes a merged tensor after checking that every value is finite.
    static func write(_ merged: [Float], name: String, to writer: SafeTensorsStreamWriter) throws(ApplicationError) {
        if let bad = merged.withUnsafeBufferPointer(FloatScan.firstNonFinite) {
            throw fail("tensor '\(name)' element \(bad) merged to \(merged[bad]); check the inputs and importances")
        }
        do {
            try merged.withUnsafeBufferPointer { (buffer: UnsafeBufferPointer<Float>) throws(SafeTensorsError) in try writer.write(name, scalars: buffer) }
        } catch { throw ApplicationError(application: "output", cause: error) }
    }

    /// Tensor `name` merged by UBGM, chunk by chunk (errors name the tensor and the chunk).
    static func mergeUBGMTensor(
        _ rule: UBGMMerging, name: String, importanceName: String, count: Int, models: [CheckpointModel], sources: [CheckpointImportance?],
        base: CheckpointModel, baseImportance: CheckpointImportance?, scales: [Double]
    ) throws(ApplicationError) -> [Float] {
        var merged = [Float]()
        merged.reserveCapacity(count)
        for range in CheckpointLayoutWriter.chunks(count) {
            let chunk = ChunkReader(name: name, importanceName: importanceName, range: range)
            do throws(ApplicationError) {
                merged += try mergeUBGMChunk(rule, chunk: chunk, models: models, sources: sources, base: base, baseImportance: baseImportance, scales: scales)
            } catch {
                throw ApplicationError(application: error.application, problem: "tensor '\(name)' elements \(range): \(error.problem)")
            }
        }
        return merged
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
        let taskShape = try checkpoint { () throws(CheckpointError) in try models[0].entry(chunk.name) }.shape
        if base.has(chunk.name) {
            let baseShape = try checkpoint { () throws(CheckpointError) in try base.entry(chunk.name) }.shape
            guard baseShape == taskShape else {
                throw fail("tensor '\(chunk.name)' has shape \(baseShape) in the base \(base.path) but \(taskShape) in the task models")
            }
        }
        let baseChunk = base.has(chunk.name) ? try chunk.tensors(base) : NamedTensors()
        let baseFisher = base.has(chunk.name) ? try chunk.importance(baseImportance) : nil
        return try rule.merge(base: baseChunk, baseImportance: baseFisher, tasks: try models.map(chunk.tensors), taskImportances: fishers, scales: scales)[chunk.name]!.scalars
    }
}

/// The encoded bytes of the tensor being merged, kept from tensor to tensor (grown when a larger one
/// comes) so that each tensor does not fault in freshly mapped memory.
final class EncodedTensorBuffer {
    private var storage = UnsafeMutableRawBufferPointer(start: nil, count: 0)

    /// A buffer of exactly `byteCount` bytes (contents undefined), valid until the next call.
    func reserve(_ byteCount: Int) -> UnsafeMutableRawBufferPointer {
        if storage.count < byteCount {
            storage.deallocate()
            storage = .allocate(byteCount: byteCount, alignment: 64)
        }
        return UnsafeMutableRawBufferPointer(rebasing: storage[0..<byteCount])
    }

    deinit { storage.deallocate() }
}
