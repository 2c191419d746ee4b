import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// An output folder built under a staging name beside its destination and renamed into place only
/// when complete; the protocol every command that writes a folder follows.
///
/// - The destination may not be, contain or lie inside an input (after resolving symlinks), and
///   must not exist, or be an empty folder (which the commit then replaces).
/// - Staging (`.<name>.tmp-<pid>-<hex>`) and scratch (`.<name>.scratch-<pid>-<hex>`, for
///   intermediate files, always removed) are created beside the destination, after removing the
///   staging of dead processes for the same destination (see ``OutputStaging``), and are removed on
///   error, when released uncommitted, and on SIGINT/SIGTERM in the command-line tool.
/// - ``commit()`` renames the staging folder with a rename that never replaces: if anything other
///   than the empty folder seen at the start appeared at the destination meanwhile (a folder the
///   user created, a concurrent run's result), the commit refuses, naming it, and leaves it intact.
///   Of two concurrent runs to one destination, one succeeds and the other refuses.
public final class StagedOutputFolder: @unchecked Sendable {
    /// The final folder.
    public let destination: URL
    /// The staging folder being filled.
    public let staging: URL
    /// A second staging folder for intermediate files, always removed.
    public let scratch: URL
    /// The empty folder found at the destination at the start (device, inode), replaced by the commit.
    private let emptyFolderAtStart: (dev_t, ino_t)?
    private var committed = false

    /// Checks the destination and creates the staging and scratch folders.
    /// - Parameters:
    ///   - inputs: the files and folders the command reads; the destination may not overlap them.
    ///   - argument: how the user gave the destination (`"--output"`), for messages.
    /// - Throws: ``OutputError`` naming the destination: it overlaps an input, exists and is not
    ///   an empty folder, or its parent folder cannot be written.
    public init(destination: URL, inputs: [URL] = [], argument: String = "--output") throws(OutputError) {
        try OutputPaths.refuseOverlap(output: destination, inputs: inputs, argument: argument)
        var info = stat()
        if lstat(destination.path, &info) == 0 {
            let isEmptyFolder = (info.st_mode & S_IFMT) == S_IFDIR && ((try? FileManager.default.contentsOfDirectory(atPath: destination.path))?.isEmpty ?? false)
            guard isEmptyFolder else {
                throw OutputError(path: destination.path, problem: "already exists and is not an empty folder; choose a new output folder (nothing is ever overwritten)")
            }
            emptyFolderAtStart = (info.st_dev, info.st_ino)
        } else {
            emptyFolderAtStart = nil
        }
        self.destination = destination
        OutputStaging.removeStale(beside: destination)
        staging = OutputStaging.stagingURL(for: destination, role: "tmp")
        scratch = OutputStaging.stagingURL(for: destination, role: "scratch")
        for folder in [staging, scratch] {
            guard mkdir(folder.path, 0o755) == 0 else {
                let code = errno
                rmdir(staging.path)
                throw OutputError(path: destination.path, problem: "cannot create a staging folder beside it (\(String(cString: strerror(code))))",
                                  cause: FileAccessError(path: folder.deletingLastPathComponent().path, reason: FileAccessError.reason(errno: code)))
            }
            OutputStaging.register(folder.path)
        }
    }

    deinit {
        try? FileManager.default.removeItem(at: scratch)
        OutputStaging.unregister(scratch.path)
        if !committed { try? FileManager.default.removeItem(at: staging) }
        OutputStaging.unregister(staging.path)
    }

    /// Renames the staging folder to the destination without replacing anything but the empty
    /// folder seen at the start. The scratch folder is removed first.
    /// - Throws: ``OutputError`` naming the destination when something appeared there meanwhile
    ///   (it is left untouched) or the rename fails; the staging folder is then removed.
    public func commit() throws(OutputError) {
        try? FileManager.default.removeItem(at: scratch)
        let code: Int32 = OutputStaging.withCleanupBlocked {
            if let (device, inode) = emptyFolderAtStart {
                var info = stat()
                if lstat(destination.path, &info) == 0 {
                    // Only the very folder seen at the start, and only while it is empty (rmdir refuses otherwise).
                    guard info.st_dev == device, info.st_ino == inode, rmdir(destination.path) == 0 else { return EEXIST }
                }
            }
            return OutputStaging.renameNoReplace(staging, to: destination)
        }
        guard code == 0 else {
            try? FileManager.default.removeItem(at: staging)
            if code == EEXIST || code == ENOTEMPTY {
                throw OutputError(path: destination.path, problem: "appeared while this command ran (another run, or a folder created there); it was left untouched and this result discarded")
            }
            throw OutputError(path: destination.path, problem: "cannot rename the finished staging folder into place (\(String(cString: strerror(code))))",
                              cause: FileAccessError(path: destination.path, reason: FileAccessError.reason(errno: code)))
        }
        committed = true
        OutputStaging.syncFolder(of: destination)
    }
}
