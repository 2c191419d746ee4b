import SquisherTensor

/// Errors raised by the applications; each names the application and the parameter, model or
/// argument at fault and what was expected, and keeps the error it wraps as ``cause`` (a
/// `SafeTensorsError`, `CheckpointError`, `OutputError`, ...), so a caller can match on it.
public struct ApplicationError: SquisherError, Sendable, Hashable {
    /// The application (`"fisher-merging"`, `"pruning"`, `"checkpoint"`, `"output"`, ...).
    public var application: String
    /// What went wrong (the wrapped error's description when it says it all).
    public var problem: String
    /// The error this one wraps, or nil.
    public var cause: (any Error)?

    /// An error of `application` describing `problem`.
    public init(application: String, problem: String, cause: (any Error)? = nil) {
        self.application = application
        self.problem = problem
        self.cause = cause
    }

    /// Wraps `cause`, whose description (naming the file or tensor) becomes the problem.
    public init(application: String, cause: any Error) {
        self.init(application: application, problem: "\(cause)", cause: cause)
    }

    /// `application: problem`, one line.
    public var description: String { "\(application): \(problem)" }

    /// Equal when the application and the problem are (the cause is not compared).
    public static func == (a: Self, b: Self) -> Bool { a.application == b.application && a.problem == b.problem }
    /// Hashes the application and the problem (as `==` compares them).
    public func hash(into hasher: inout Hasher) {
        hasher.combine(application)
        hasher.combine(problem)
    }
}
