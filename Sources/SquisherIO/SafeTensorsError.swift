/// Errors reading or writing safetensors files; each names the file (and tensor) and what was expected.
public struct SafeTensorsError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The file involved.
    public var path: String
    /// What was wrong, e.g. "header length 9999 exceeds the file size 120".
    public var problem: String

    /// Creates an error about the file at `path`.
    public init(path: String, problem: String) {
        self.path = path
        self.problem = problem
    }

    /// `path: problem`.
    public var description: String { "\(path): \(problem)" }
}
