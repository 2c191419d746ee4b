import SquisherTensor

/// Errors reading or writing safetensors files; each names the file (and tensor) and what was expected.
public struct SafeTensorsError: SquisherError, Equatable, Sendable {
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

    /// Wraps `cause` (whose description already names the file).
    public init(_ cause: FileAccessError) {
        self.init(path: cause.path, problem: cause.reason.description, cause: cause)
    }

    /// `path: problem`.
    public var description: String { "\(path): \(problem)" }

    /// Equal when the path and the problem are (the cause is not compared).
    public static func == (a: Self, b: Self) -> Bool { a.path == b.path && a.problem == b.problem }
}
