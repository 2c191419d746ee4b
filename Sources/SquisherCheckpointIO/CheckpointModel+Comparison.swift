import SquisherCheckpoints
/// Queries over a checkpoint's tensors that the applications share.
extension CheckpointModel {
    /// Whether the checkpoint has a tensor called `name`.
    public func has(_ name: String) -> Bool { (try? entry(name)) != nil }

    /// Whether tensors `a` and `b` have the same dtype and shape and the same value bits in every
    /// element (tied weights saved twice, such as GPT-2's `lm_head.weight` and
    /// `transformer.wte.weight`). Reads both in chunks and releases their pages.
    /// - Throws: ``CheckpointError`` when either tensor is missing or cannot be read.
    public func bitwiseEqual(_ a: String, _ b: String) throws(CheckpointError) -> Bool {
        let (first, second) = (try entry(a), try entry(b))
        guard first.dtype == second.dtype, first.shape == second.shape else { return false }
        defer { release(a); release(b) }
        guard first.dtype.isFloatingPoint else { return false }
        for range in CheckpointLayoutWriter.chunks(first.shape.reduce(1, *)) {
            let (x, y) = (try floats(a, range: range), try floats(b, range: range))
            for i in x.indices where x[i].bitPattern != y[i].bitPattern { return false }
        }
        return true
    }
}
