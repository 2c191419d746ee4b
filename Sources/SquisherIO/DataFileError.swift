/// Errors reading data files (CSV, IDX): each names the file and, where it applies, the line and
/// column (both 1-based, as an editor shows them) and what was expected.
public struct DataFileError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The file involved.
    public var path: String
    /// The 1-based line number (CSV), or nil.
    public var line: Int?
    /// The 1-based column number (CSV field), or nil.
    public var column: Int?
    /// What was wrong and what was expected, e.g. "expected a number, found 'abc'".
    public var problem: String

    /// Creates an error.
    public init(path: String, line: Int? = nil, column: Int? = nil, problem: String) {
        self.path = path
        self.line = line
        self.column = column
        self.problem = problem
    }

    /// `path:line:column: problem` (the parts that are known).
    public var description: String {
        var location = path
        if let line { location += ":\(line)" }
        if let column { location += ":\(column)" }
        return "\(location): \(problem)"
    }
}
