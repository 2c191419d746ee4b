import SquisherTensor

/// An error about one file: which file (`path`), what is wrong with it (`problem`, naming the
/// tensor, entry or key concerned) and the error it wraps (`cause`).
///
/// A conforming type declares the three properties and `init(path:problem:cause:)`; it gets its
/// one-line description, equality on the path and problem (the cause is not compared), and an
/// initializer wrapping a file that cannot be read.
public protocol FileProblemError: SquisherError, Equatable, Sendable {
    /// The file the problem is in (empty for an error that wraps one already naming its file).
    var path: String { get }
    /// What is wrong and what was expected.
    var problem: String { get }
    /// An error about `path` describing `problem`, wrapping `cause` (or nil).
    init(path: String, problem: String, cause: (any Error)?)
}

extension FileProblemError {
    /// `"<path>: <problem>"`, or the problem alone when there is no path.
    public var description: String { path.isEmpty ? problem : "\(path): \(problem)" }

    /// Equal when the path and the problem are (the cause is not compared).
    public static func == (a: Self, b: Self) -> Bool { a.path == b.path && a.problem == b.problem }

    /// Wraps a file that cannot be read: its path, and why as the problem.
    public init(_ cause: FileAccessError) {
        self.init(path: cause.path, problem: cause.reason.description, cause: cause)
    }
}
