import Foundation
import SquisherTensor
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Reading user-supplied files at the edge: only regular files are opened.
///
/// A FIFO given as a model file would block `open(2)` forever, a device would be read without end,
/// and a folder fails deep inside Foundation with an opaque message. Every reader in the package
/// calls ``requireRegularFile(_:)`` (a `stat(2)`, which follows symlinks and never blocks) before
/// it opens anything, and ``read(_:mapped:)`` opens with `O_NONBLOCK` and checks the opened
/// descriptor again, so a file swapped for a FIFO in between cannot block either.
public enum InputFile {
    /// The kind of a `stat` mode, for messages.
    static func kind(of mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFDIR: "a folder"
        case S_IFIFO: "a FIFO (named pipe)"
        case S_IFCHR: "a character device"
        case S_IFBLK: "a block device"
        case S_IFSOCK: "a socket"
        default: "not a regular file"
        }
    }

    /// Checks that `url` names a regular file (after following symlinks), without opening it.
    /// - Returns: the file size in bytes.
    /// - Throws: ``FileAccessError`` naming the path: missing, a folder, FIFO, device or socket.
    @discardableResult
    public static func requireRegularFile(_ url: URL) throws(FileAccessError) -> Int {
        var info = stat()
        guard stat(url.path, &info) == 0 else { throw FileAccessError(path: url.path, reason: FileAccessError.reason(errno: errno)) }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw FileAccessError(path: url.path, reason: .notRegularFile(kind: kind(of: info.st_mode)))
        }
        return Int(info.st_size)
    }

    /// Whether `url` names a regular file (after following symlinks).
    public static func isRegularFile(_ url: URL) -> Bool { (try? requireRegularFile(url)) != nil }

    /// Whether `url` names a folder (after following symlinks).
    public static func isFolder(_ url: URL) -> Bool {
        var info = stat()
        return stat(url.path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
    }

    /// The contents of the regular file `url`; `mapped` maps it read-only instead of copying (for
    /// large tensor files).
    /// - Throws: ``FileAccessError`` naming the path when it is not a readable regular file.
    public static func read(_ url: URL, mapped: Bool = false) throws(FileAccessError) -> Data {
        try requireRegularFile(url)
        let fd = open(url.path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { throw FileAccessError(path: url.path, reason: FileAccessError.reason(errno: errno)) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw FileAccessError(path: url.path, reason: FileAccessError.reason(errno: errno)) }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw FileAccessError(path: url.path, reason: .notRegularFile(kind: kind(of: info.st_mode)))
        }
        if mapped {
            // The path was a regular file an instant ago and Foundation maps it without blocking.
            do { return try Data(contentsOf: url, options: .alwaysMapped) } catch {
                throw FileAccessError(path: url.path, reason: .system(code: EIO, message: error.localizedDescription))
            }
        }
        var data = Data(count: Int(info.st_size))
        var done = 0
        let failure: Int32? = data.withUnsafeMutableBytes { buffer -> Int32? in
            while done < buffer.count {
                let n = Foundation.read(fd, buffer.baseAddress! + done, buffer.count - done)
                if n < 0 { if errno == EINTR || errno == EAGAIN { continue }; return errno }
                if n == 0 { break }
                done += n
            }
            return nil
        }
        if let failure { throw FileAccessError(path: url.path, reason: FileAccessError.reason(errno: failure)) }
        return done == data.count ? data : data.prefix(done)
    }
}
