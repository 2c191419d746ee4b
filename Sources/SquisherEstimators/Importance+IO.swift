import Foundation
import SquisherIO
import SquisherTensor

extension Importance {
    /// Writes the values as a safetensors file keyed by parameter name (the model's own layout,
    /// as UBGM's reference code stores Fishers), with the estimator, conventions and cost in the
    /// header's `__metadata__`, but not the wall-clock time (``EstimationCost/seconds``), so that
    /// the same estimate gives the same bytes. Written atomically.
    public func save(to url: URL) throws(SafeTensorsError) {
        var metadata = conventions
        metadata["estimator"] = estimator
        metadata["cost.forward_passes"] = "\(cost.forwardPasses)"
        metadata["cost.backward_passes"] = "\(cost.backwardPasses)"
        metadata["cost.samples"] = "\(cost.samplesTouched)"
        metadata["cost.peak_extra_bytes"] = "\(cost.peakExtraBytes)"
        try SafeTensorsWriter.write(values, metadata: metadata, to: url)
    }

    /// Reads an importance written by ``save(to:)`` (or any safetensors file of non-negative
    /// tensors keyed by parameter name).
    /// - Throws: ``SafeTensorsError`` naming the file for format errors or negative/NaN values.
    public static func load(from url: URL) throws(SafeTensorsError) -> Importance {
        let file = try SafeTensorsFile(contentsOf: url)
        var metadata = file.metadata
        let estimator = metadata.removeValue(forKey: "estimator") ?? "unknown"
        var cost = EstimationCost()
        cost.forwardPasses = Int(metadata.removeValue(forKey: "cost.forward_passes") ?? "") ?? 0
        cost.backwardPasses = Int(metadata.removeValue(forKey: "cost.backward_passes") ?? "") ?? 0
        cost.samplesTouched = Int(metadata.removeValue(forKey: "cost.samples") ?? "") ?? 0
        cost.seconds = Double(metadata.removeValue(forKey: "cost.seconds") ?? "") ?? 0
        cost.peakExtraBytes = Int(metadata.removeValue(forKey: "cost.peak_extra_bytes") ?? "") ?? 0
        do {
            return try Importance(values: file.allTensors(), estimator: estimator, conventions: metadata, cost: cost)
        } catch {
            throw SafeTensorsError(path: url.path, problem: "\(error)", cause: error)
        }
    }
}
