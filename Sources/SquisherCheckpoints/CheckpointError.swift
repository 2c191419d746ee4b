import SquisherIO
import SquisherTensor

/// An error reading a PyTorch checkpoint: the file (or archive entry) and what was wrong with it.
///
/// Every problem the checkpoint readers detect (a malformed zip container, a pickle opcode or global that
/// is not allowed, a limit exceeded, a tensor that reads outside its storage, an optimizer index that
/// cannot be mapped to a parameter name) is reported as a `CheckpointError`; loading never traps on
/// user-supplied bytes.
public struct CheckpointError: FileProblemError {
    /// The file the problem is in (or a descriptive label for in-memory data).
    public var path: String
    /// What is wrong, naming the entry, opcode, global, tensor or index concerned.
    public var problem: String
    /// The error this one wraps (a `FileAccessError` for an unreadable file), or nil.
    public var cause: (any Error)?

    /// Creates an error for `path` describing `problem`.
    public init(path: String, problem: String, cause: (any Error)? = nil) {
        self.path = path
        self.problem = problem
        self.cause = cause
    }

    /// Wraps an error that already names its file (a `SafeTensorsError`, an `OutputError`, ...):
    /// its description becomes the problem, ``path`` stays empty.
    public init(wrapping cause: any Error) {
        self.init(path: "", problem: "\(cause)", cause: cause)
    }
}
