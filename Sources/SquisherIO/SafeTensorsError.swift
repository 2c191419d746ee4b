import SquisherTensor

/// Errors reading or writing safetensors files; each names the file (and tensor) and what was expected.
public struct SafeTensorsError: FileProblemError {
    /// The file involved.
    public var path: String
    /// What was wrong, e.g. "header length 9999 exceeds the file size 120".
    public var problem: String
    /// The error this one wraps (a ``FileAccessError`` for a file that cannot be read), or nil.
    public var cause: (any Error)?

    /// Creates an error about the file at `path`.
    public init(path: String, problem: String, cause: (any Error)? = nil) {
        self.path = path
        self.problem = problem
        self.cause = cause
    }
}
