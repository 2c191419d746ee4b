/// The error model shared by every Squisher module.
///
/// Each module throws its own error type (``TensorError``, `SafeTensorsError`, `CheckpointError`,
/// `ApplicationError`, ...); every one of them conforms to this protocol: its `description` is one
/// line naming the file, tensor or argument at fault and what was expected, and ``cause`` keeps the
/// error it wraps (an unreadable file inside a checkpoint error, say) instead of flattening it into
/// a string. A caller matches on the chain with ``Swift/Error/firstCause(ofType:)``, so it can tell a
/// missing file from a malformed one, while the command-line tool prints `description` as is.
public protocol SquisherError: Error, CustomStringConvertible {
    /// The error this one wraps, or nil when this error is the origin.
    var cause: (any Error)? { get }
}

extension Error {
    /// `self` followed by its causes, outermost first (stops after 32 links, against cycles).
    public var causeChain: [any Error] {
        var chain: [any Error] = [self]
        while chain.count < 32, let next = (chain.last as? any SquisherError)?.cause { chain.append(next) }
        return chain
    }

    /// The innermost error of the chain: the origin of the failure.
    public var rootCause: any Error { causeChain.last! }

    /// The first error of type `T` in the chain (`self` included), or nil.
    public func firstCause<T: Error>(ofType type: T.Type) -> T? {
        for error in causeChain { if let match = error as? T { return match } }
        return nil
    }
}

extension TensorError: SquisherError {
    /// Tensor errors are always the origin of a failure.
    public var cause: (any Error)? { nil }
}
