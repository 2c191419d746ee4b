/// Errors raised by tensor operations on user-supplied shapes and values.
///
/// Every case names the operation (or layer, file, argument) that failed and what it expected,
/// so that a message can be shown to a user as is.
public enum TensorError: Error, Equatable, Sendable, CustomStringConvertible {
    /// An operand had the wrong shape: `operation` expected `expected`, got `actual`.
    case shapeMismatch(operation: String, expected: String, actual: [Int])
    /// An argument was out of its domain (`argument` names it, `reason` says what was expected).
    case invalidArgument(argument: String, reason: String)

    public var description: String {
        switch self {
        case let .shapeMismatch(operation, expected, actual):
            return "\(operation): expected \(expected), got shape \(actual)"
        case let .invalidArgument(argument, reason):
            return "invalid \(argument): \(reason)"
        }
    }
}
