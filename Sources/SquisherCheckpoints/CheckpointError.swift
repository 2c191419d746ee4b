/// An error reading a PyTorch checkpoint: the file (or archive entry) and what was wrong with it.
///
/// Every problem the checkpoint readers detect (a malformed zip container, a pickle opcode or global that
/// is not allowed, a limit exceeded, a tensor that reads outside its storage, an optimizer index that
/// cannot be mapped to a parameter name) is reported as a `CheckpointError`; loading never traps on
/// user-supplied bytes.
public struct CheckpointError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The file the problem is in (or a descriptive label for in-memory data).
    public var path: String
    /// What is wrong, naming the entry, opcode, global, tensor or index concerned.
    public var problem: String

    /// Creates an error for `path` describing `problem`.
    public init(path: String, problem: String) {
        self.path = path
        self.problem = problem
    }

    /// `"<path>: <problem>"`.
    public var description: String { "\(path): \(problem)" }
}
