import SquisherTensor

/// An output that cannot be written or committed: it would overwrite or lie inside an input, it
/// appeared while the command ran, or its folder cannot be written.
public struct OutputError: FileProblemError {
    /// The output path concerned.
    public var path: String
    /// What is wrong and what was expected.
    public var problem: String
    /// The error this one wraps (a ``FileAccessError``), or nil.
    public var cause: (any Error)?

    /// An error about the output `path`.
    public init(path: String, problem: String, cause: (any Error)? = nil) {
        self.path = path
        self.problem = problem
        self.cause = cause
    }
}
