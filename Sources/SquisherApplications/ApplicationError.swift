/// Errors raised by the applications; each names the application and the parameter, model or
/// argument at fault and what was expected.
public struct ApplicationError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The application (`"fisher-merging"`, `"pruning"`, ...).
    public var application: String
    /// What went wrong.
    public var problem: String

    public init(application: String, problem: String) {
        self.application = application
        self.problem = problem
    }

    public var description: String { "\(application): \(problem)" }
}
