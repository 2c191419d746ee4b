import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Whole-file writes that never leave a half-written file under the final name and never lose the
/// previous version: the bytes go to a staging file beside the target (see ``OutputStaging``),
/// are flushed to disk, and the staging file is renamed over the target with `rename(2)`, which
/// replaces it in one atomic step (the old file stays intact until then, and on any error).
public enum AtomicFile {
    /// Writes `data` to `url`, replacing a file already there.
    /// - Throws: ``SafeTensorsError`` naming `url` (with the ``FileAccessError`` as its cause) when
    ///   the folder is not writable or `url` is a folder.
    public static func write(_ data: Data, to url: URL) throws(SafeTensorsError) {
        try write([(url, data)])
    }

    /// Writes several files all or nothing (a report's Markdown, CSVs and plots): every file is
    /// staged and flushed first, and only when all are on disk are they renamed into place. A
    /// failure while staging (a full disk) removes the staged files and leaves every target as it
    /// was; renames need no space.
    /// - Throws: ``SafeTensorsError`` naming the file that could not be written.
    public static func write(_ files: [(url: URL, data: Data)]) throws(SafeTensorsError) {
        var staged: [(temporary: URL, url: URL)] = []
        defer { for (temporary, _) in staged { unlink(temporary.path); OutputStaging.unregister(temporary.path) } }
        for (url, data) in files {
            staged.append((try stage(data, for: url), url))
        }
        let failure: (Int32, URL)? = OutputStaging.withCleanupBlocked {
            for (temporary, url) in staged where rename(temporary.path, url.path) != 0 { return (errno, url) }
            return nil
        }
        if let (code, url) = failure { throw error(code, "rename the finished temporary file into place", url) }
        if let first = files.first { OutputStaging.syncFolder(of: first.url) }
    }

    static func error(_ code: Int32, _ what: String, _ url: URL) -> SafeTensorsError {
        SafeTensorsError(path: url.path, problem: "cannot \(what) (\(String(cString: strerror(code))))",
                         cause: FileAccessError(path: url.path, reason: FileAccessError.reason(errno: code)))
    }

    /// Writes and flushes `data` to a registered staging file beside `url`; returns its URL.
    static func stage(_ data: Data, for url: URL) throws(SafeTensorsError) -> URL {
        if InputFile.isFolder(url) {
            throw SafeTensorsError(FileAccessError(path: url.path, reason: .notRegularFile(kind: "a folder")))
        }
        OutputStaging.removeStale(beside: url)
        let temporary = OutputStaging.stagingURL(for: url)
        let fd = open(temporary.path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw error(errno, "create a temporary file beside it", url) }
        OutputStaging.register(temporary.path)
        var code: Int32 = 0
        data.withUnsafeBytes { buffer in
            var done = 0
            while done < buffer.count {
                let n = Foundation.write(fd, buffer.baseAddress! + done, buffer.count - done)
                if n < 0 { if errno == EINTR { continue }; code = errno; return }
                done += n
            }
        }
        if code == 0, fsync(fd) != 0 { code = errno }
        if close(fd) != 0, code == 0 { code = errno }
        guard code == 0 else {
            unlink(temporary.path)
            OutputStaging.unregister(temporary.path)
            throw error(code, "write", url)
        }
        return temporary
    }
}
