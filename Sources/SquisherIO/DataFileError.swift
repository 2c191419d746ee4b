import SquisherTensor

/// Errors reading data files (CSV, IDX): each names the file and, where it applies, the line and
/// column (both 1-based, as an editor shows them) and what was expected.
public struct DataFileError: SquisherError, Equatable, Sendable {
    /// The file involved.
    public var path: String
    /// The 1-based line number (CSV), or nil.
    public var line: Int?
    /// The 1-based column number (CSV field), or nil.
    public var column: Int?
    /// What was wrong and what was expected, e.g. "expected a number, found 'abc'".
    public var problem: String
    /// The error this one wraps (a ``FileAccessError`` for an unreadable file), or nil.
    public var cause: (any Error)?

    /// Creates an error.
    public init(path: String, line: Int? = nil, column: Int? = nil, problem: String, cause: (any Error)? = nil) {
        self.path = path
        self.line = line
        self.column = column
        self.problem = problem
        self.cause = cause
    }

    /// Wraps a file that cannot be read.
    public init(_ cause: FileAccessError) {
        self.init(path: cause.path, problem: cause.reason.description, cause: cause)
    }

    /// Equal when everything but the cause is.
    public static func == (a: Self, b: Self) -> Bool { a.path == b.path && a.line == b.line && a.column == b.column && a.problem == b.problem }

    /// `path:line:column: problem` (the parts that are known).
    public var description: String {
        var location = path
        if let line { location += ":\(line)" }
        if let column { location += ":\(column)" }
        return "\(location): \(problem)"
    }
}
