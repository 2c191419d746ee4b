import SquisherCheckpointIO
import SquisherCheckpoints
import Foundation
import SquisherEstimators
import SquisherIO
import SquisherTensor

/// Fisher pruning of a checkpoint of any size (saliency `θ² F / 2`, see ``FisherPruning``) [1],
/// writing the pruned model in the input's layout and dtypes plus `mask.safetensors` (1 = kept).
///
/// The saliencies are computed chunk by chunk with ``FisherPruning/saliency(parameters:importance:)``
/// and never stored: the global top-k threshold is found exactly by a two-pass histogram selection
/// (see ``StreamingTopK``), and a third pass writes. Scopes as ``FisherPruning/Scope``: global,
/// global after dividing each tensor's scores by their L2 norm (one extra pass for the norms), or
/// per tensor. Which tensors are pruned: floating-point tensors of rank ≥ 2 when
/// ``FisherPruning/weightsOnly`` (biases and norms stay dense), that have an importance; tensors
/// without importance (frozen, never updated) are left dense and listed in the report. The result
/// equals ``FisherPruning/mask(parameters:importance:sparsity:)`` on the same tensors.
///
/// [1]: Theis et al. 2018; Li, Dangel, Tam, Raffel 2025, Fishers for Free?
public struct CheckpointPruning: Sendable {
    /// Scope and which tensors are pruned.
    public var pruning: FisherPruning
    /// The fraction of the pruned tensors' entries set to zero, in [0, 1).
    public var sparsity: Double
    /// The element type of the mask file (U8 by default; F32 also works).
    public var maskDType: SafeTensorsDType

    /// A pruning of `sparsity` with the given rule.
    public init(pruning: FisherPruning = FisherPruning(), sparsity: Double, maskDType: SafeTensorsDType = .uint8) {
        self.pruning = pruning
        self.sparsity = sparsity
        self.maskDType = maskDType
    }

    /// What a pruning did.
    public struct Report: Sendable {
        /// Tensors pruned (and in the mask file).
        public var prunedTensors: [String]
        /// Floating-point tensors left dense because they have no importance.
        public var withoutImportance: [String]
        /// Entries kept over the pruned tensors.
        public var keptCount: Int
        /// Entries of the pruned tensors.
        public var totalCount: Int
        /// The realized sparsity `1 − kept/total`.
        public var realizedSparsity: Double { totalCount == 0 ? 0 : 1 - Double(keptCount) / Double(totalCount) }
    }

    /// Prunes `model` into `output` (committed on success) with `mask.safetensors` beside the model files.
    /// - Throws: ``ApplicationError`` for a sparsity outside [0, 1), bad importances (negative,
    ///   non-finite, wrong shape), non-finite saliencies, or write failures.
    @discardableResult
    public func prune(model: CheckpointModel, importance: CheckpointImportance, output: CheckpointOutputFolder, maskFileName: String = "mask.safetensors") throws(ApplicationError) -> Report {
        guard sparsity.isFinite, sparsity >= 0, sparsity < 1 else {
            throw ApplicationError(application: "pruning", problem: "sparsity must be in [0, 1), got \(sparsity)")
        }
        var pruned: [String] = []
        var without: [String] = []
        for name in model.names {
            let (dtype, shape) = try checkpoint { () throws(CheckpointError) in try model.entry(name) }
            guard dtype.isFloatingPoint, !pruning.weightsOnly || shape.count >= 2 else { continue }
            guard importance.covers(name) else { without.append(name); continue }
            guard importance.shape(name) == shape else {
                throw ApplicationError(application: "pruning", problem: "importance of '\(name)' in \(importance.path) has shape \(importance.shape(name)!), the parameter has \(shape)")
            }
            pruned.append(name)
        }
        let prunedSet = Set(pruned)
        let saliencyRule = FisherPruning(scope: .global, weightsOnly: false)

        // Scores of tensor `name`, chunk by chunk, divided by `norms[name]` when normalizing.
        var norms: [String: Float] = [:]
        func scores(_ name: String, _ body: (UnsafeBufferPointer<Float>, [Float], Range<Int>) throws(ApplicationError) -> Void) throws(ApplicationError) {
            let count = try checkpoint { () throws(CheckpointError) in try model.entry(name) }.shape.reduce(1, *)
            defer { model.release(name); importance.release(name) }
            for range in CheckpointLayoutWriter.chunks(count) {
                let theta = try checkpoint { () throws(CheckpointError) in try model.floats(name, range: range) }
                var parameters = NamedTensors()
                parameters[name] = Tensor(uncheckedShape: [range.count], scalars: theta)
                var values = NamedTensors()
                values[name] = Tensor(uncheckedShape: [range.count], scalars: try checkpoint("importance") { () throws(CheckpointError) in try importance.floats(name, range: range) })
                var chunk = try saliencyRule.saliency(parameters: parameters, importance: Importance(unchecked: values, estimator: importance.path))[name]!.scalars
                if let norm = norms[name], norm > 0 { for i in chunk.indices { chunk[i] = chunk[i] / norm } }
                if let bad = chunk.firstIndex(where: { !$0.isFinite }) {
                    throw ApplicationError(application: "pruning", problem: "saliency of '\(name)' element \(range.lowerBound + bad) is \(chunk[bad]) (parameter \(theta[bad])); the model holds non-finite or huge values")
                }
                try chunk.withUnsafeBufferPointer { (buffer: UnsafeBufferPointer<Float>) throws(ApplicationError) in try body(buffer, theta, range) }
            }
        }
        if pruning.scope == .globalNormalized {
            for name in pruned {
                var sum = 0.0
                try scores(name) { chunk, _, _ in for s in chunk { sum += Double(s) * Double(s) } }
                norms[name] = Float(sum.squareRoot())
            }
        }
        func keepCount(_ total: Int) -> Int { total - Int((Double(total) * sparsity).rounded()) }
        let total = model.elementCount(of: pruned)
        var globalSelector: StreamingTopK? = nil
        if pruning.scope != .perTensor {
            globalSelector = try StreamingTopK(keep: keepCount(total), total: total) { (feed: (UnsafeBufferPointer<Float>) -> Void) throws(ApplicationError) in
                for name in pruned { try scores(name) { chunk, _, _ in feed(chunk) } }
            }
        }

        let maskSpecs = try pruned.map { (name: String) throws(ApplicationError) in
            SafeTensorsStreamWriter.TensorSpec(name: name, dtype: maskDType, shape: try checkpoint { () throws(CheckpointError) in try model.entry(name) }.shape)
        }
        let maskWriter: SafeTensorsStreamWriter
        do {
            maskWriter = try SafeTensorsStreamWriter(
                to: output.staging.appendingPathComponent(maskFileName), tensors: maskSpecs,
                metadata: ["application": "fisher-pruning", "saliency": "theta^2 F / 2", "scope": pruning.scope.rawValue,
                           "sparsity": "\(sparsity)", "importance": importance.path, "weights_only": "\(pruning.weightsOnly)"])
        } catch { throw ApplicationError(application: "output", cause: error) }
        var kept = 0
        try CheckpointLayoutWriter.write(like: model, into: output.staging, failure: outputFailure) { (name: String, writer: SafeTensorsStreamWriter) throws(ApplicationError) in
            guard prunedSet.contains(name) else {
                do { try model.copy(name, to: writer) } catch { throw ApplicationError(application: "output", cause: error) }
                model.release(name)
                return
            }
            let count = try checkpoint { () throws(CheckpointError) in try model.entry(name) }.shape.reduce(1, *)
            var selector: StreamingTopK
            if let globalSelector { selector = globalSelector } else {
                selector = try StreamingTopK(keep: keepCount(count), total: count) { (feed: (UnsafeBufferPointer<Float>) -> Void) throws(ApplicationError) in
                    try scores(name) { chunk, _, _ in feed(chunk) }
                }
            }
            var values = [Float]()
            var mask = [Float]()
            values.reserveCapacity(count)
            mask.reserveCapacity(count)
            try scores(name) { chunk, theta, _ in
                for (s, t) in zip(chunk, theta) {
                    let m: Float = selector.keeps(s) ? 1 : 0
                    mask.append(m)
                    values.append(t * m)
                }
            }
            if globalSelector != nil { globalSelector = selector }  // carries the count of ties kept
            kept += mask.reduce(0) { $0 + ($1 != 0 ? 1 : 0) }
            do {
                try values.withUnsafeBufferPointer { (b: UnsafeBufferPointer<Float>) throws(SafeTensorsError) in try writer.write(name, scalars: b) }
                try mask.withUnsafeBufferPointer { (b: UnsafeBufferPointer<Float>) throws(SafeTensorsError) in try maskWriter.write(name, scalars: b) }
            } catch { throw ApplicationError(application: "output", cause: error) }
        }
        do { try maskWriter.finish() } catch { throw ApplicationError(application: "output", cause: error) }
        try checkpoint("output") { () throws(CheckpointError) in try output.commit() }
        return Report(prunedTensors: pruned, withoutImportance: without, keptCount: kept, totalCount: total)
    }
}

/// The FISH mask of a checkpoint (see ``FishMask``) [1], in bounded memory: one exact streaming
/// top-k (``StreamingTopK``) of the importances over all non-classifier floating-point tensors,
/// `k = keepFraction · (all floating-point entries) − (classifier entries)`; classifier tensors
/// are all ones; tensors without importance (frozen) are all zeros and listed. Written as one
/// safetensors file of 0/1 values (U8 by default), atomically. Equals ``FishMask/mask(parameters:importance:)``
/// when every tensor has an importance.
///
/// [1]: Sung, Nair, Raffel 2021, Training Neural Networks with Fixed Sparse Masks.
public struct CheckpointFishMask: Sendable {
    /// The keep fraction and the classifier tensors.
    public var fishMask: FishMask
    /// The mask file's element type.
    public var maskDType: SafeTensorsDType

    /// A mask rule.
    public init(fishMask: FishMask, maskDType: SafeTensorsDType = .uint8) {
        self.fishMask = fishMask
        self.maskDType = maskDType
    }

    /// What the mask holds.
    public struct Report: Sendable {
        /// Entries kept (ones), classifier included.
        public var keptCount: Int
        /// Entries covered by the mask.
        public var totalCount: Int
        /// Floating-point tensors without importance (all zeros in the mask).
        public var withoutImportance: [String]
    }

    /// Writes the mask of `model` from `importance` to `url`.
    /// - Throws: ``ApplicationError`` for a fraction outside (0, 1], an unknown classifier tensor,
    ///   bad importances, or write failures.
    @discardableResult
    public func write(model: CheckpointModel, importance: CheckpointImportance, to url: URL) throws(ApplicationError) -> Report {
        let keepFraction = fishMask.keepFraction
        guard keepFraction > 0, keepFraction <= 1, keepFraction.isFinite else {
            throw ApplicationError(application: "fish-mask", problem: "keep fraction must be in (0, 1], got \(keepFraction)")
        }
        var names: [String] = []
        for name in model.names where try checkpoint("checkpoint", { () throws(CheckpointError) in try model.entry(name) }).dtype.isFloatingPoint { names.append(name) }
        if let unknown = fishMask.classifierParameters.sorted().first(where: { !names.contains($0) }) {
            throw ApplicationError(application: "fish-mask", problem: "classifier tensor '\(unknown)' is not a floating-point tensor of \(model.path)")
        }
        var total = 0, classifierSize = 0
        var ranked: [String] = []
        var without: [String] = []
        for name in names {
            let shape = try checkpoint { () throws(CheckpointError) in try model.entry(name) }.shape
            total += shape.reduce(1, *)
            if fishMask.classifierParameters.contains(name) { classifierSize += shape.reduce(1, *); continue }
            guard importance.covers(name) else { without.append(name); continue }
            guard importance.shape(name) == shape else {
                throw ApplicationError(application: "fish-mask", problem: "importance of '\(name)' in \(importance.path) has shape \(importance.shape(name)!), the parameter has \(shape)")
            }
            ranked.append(name)
        }
        let rankedTotal = model.elementCount(of: ranked)
        func scan(_ name: String, _ body: (UnsafeBufferPointer<Float>) -> Void) throws(ApplicationError) {
            for range in CheckpointLayoutWriter.chunks(try checkpoint { () throws(CheckpointError) in try model.entry(name) }.shape.reduce(1, *)) {
                try checkpoint("importance") { () throws(CheckpointError) in try importance.floats(name, range: range) }.withUnsafeBufferPointer(body)
            }
            importance.release(name)
        }
        let keep = max(0, Int((keepFraction * Double(total)).rounded()) - classifierSize)
        var selector = try StreamingTopK(keep: keep, total: rankedTotal) { (feed: (UnsafeBufferPointer<Float>) -> Void) throws(ApplicationError) in
            for name in ranked { try scan(name, feed) }
        }
        let rankedSet = Set(ranked)
        let specs = try names.map { (name: String) throws(ApplicationError) in
            SafeTensorsStreamWriter.TensorSpec(name: name, dtype: maskDType, shape: try checkpoint { () throws(CheckpointError) in try model.entry(name) }.shape)
        }
        var kept = 0
        do {
            let writer = try SafeTensorsStreamWriter(to: url, tensors: specs, metadata: [
                "application": "fish-mask", "keep_fraction": "\(keepFraction)", "importance": importance.path,
                "classifier": fishMask.classifierParameters.sorted().joined(separator: ","),
            ])
            for name in names {
                let count = try checkpoint { () throws(CheckpointError) in try model.entry(name) }.shape.reduce(1, *)
                var mask = [Float]()
                mask.reserveCapacity(count)
                if rankedSet.contains(name) {
                    try scan(name) { chunk in for s in chunk { mask.append(selector.keeps(s) ? 1 : 0) } }
                } else {
                    mask = [Float](repeating: fishMask.classifierParameters.contains(name) ? 1 : 0, count: count)
                }
                kept += mask.reduce(0) { $0 + ($1 != 0 ? 1 : 0) }
                try mask.withUnsafeBufferPointer { (b: UnsafeBufferPointer<Float>) throws(SafeTensorsError) in try writer.write(name, scalars: b) }
            }
            try writer.finish()
        } catch let error as ApplicationError { throw error } catch { throw ApplicationError(application: "output", cause: error) }
        return Report(keptCount: kept, totalCount: total, withoutImportance: without)
    }
}
