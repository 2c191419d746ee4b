/// How a loss combines per-sample terms. State it everywhere: a Fisher computed from a
/// mean-reduced loss is 1/N² (squared per-sample grads) or 1/N of the sum-reduced one.
public enum Reduction: String, Sendable, Hashable, CaseIterable {
    /// `L = sum_n l_n`.
    case sum
    /// `L = (1/N) sum_n l_n` (PyTorch's default).
    case mean
}
