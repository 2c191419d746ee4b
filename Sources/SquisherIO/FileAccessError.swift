import SquisherTensor
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A file that cannot be opened for reading or writing: the path and why, as a type a caller can
/// match on (a missing file is not a malformed one).
public struct FileAccessError: SquisherError, Equatable, Sendable {
    /// Why the file cannot be used.
    public enum Reason: Equatable, Sendable, CustomStringConvertible {
        /// Nothing exists at the path.
        case missing
        /// Something exists but it is not a regular file: `kind` is "a folder", "a FIFO (named
        /// pipe)", "a character device", "a block device" or "a socket".
        case notRegularFile(kind: String)
        /// The file exists but may not be read (or its folder not written).
        case permissionDenied
        /// Another system error (`errno` and its text).
        case system(code: Int32, message: String)

        /// The reason as a phrase to follow a path ("is a FIFO (named pipe), expected a regular file").
        public var description: String {
            switch self {
            case .missing: "no such file"
            case .notRegularFile(let kind): "is \(kind), expected a regular file"
            case .permissionDenied: "permission denied"
            case .system(let code, let message): "\(message) (errno \(code))"
            }
        }
    }

    /// The path concerned.
    public var path: String
    /// Why it cannot be used.
    public var reason: Reason

    /// An error about `path`.
    public init(path: String, reason: Reason) {
        self.path = path
        self.reason = reason
    }

    /// The reason for `errno` value `code`.
    public static func reason(errno code: Int32) -> Reason {
        switch code {
        case ENOENT, ENOTDIR: .missing
        case EACCES, EPERM: .permissionDenied
        case EISDIR: .notRegularFile(kind: "a folder")
        default: .system(code: code, message: String(cString: strerror(code)))
        }
    }

    /// File access errors are the origin of a failure.
    public var cause: (any Error)? { nil }

    /// `path: reason`.
    public var description: String { "\(path): \(reason)" }
}
