import Dispatch
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Temporary files and folders beside an output, and their cleanup.
///
/// Every output is first written under a hidden staging name beside its target,
/// `.<target name>.<role>-<pid>-<8 hex digits>` (roles `tmp` and `scratch`), then renamed into place.
/// What is never left behind:
/// - on an error or an unfinished write, the owner removes its staging;
/// - on SIGINT, SIGTERM or SIGHUP, ``installSignalCleanup()`` (called by the command-line tool)
///   removes every registered staging path before the process ends with the signal;
/// - after `kill -9` or a crash nothing can run, so the next run for the same target removes the
///   staging of processes that no longer exist (``removeStale(beside:)``): the pid is in the name.
public enum OutputStaging {
    /// A fresh staging path beside `target` for this process.
    public static func stagingURL(for target: URL, role: String = "tmp") -> URL {
        let random = String(UInt32.random(in: 0...UInt32.max), radix: 16)
        let hex = String(repeating: "0", count: 8 - random.count) + random
        return target.deletingLastPathComponent().appendingPathComponent(".\(target.lastPathComponent).\(role)-\(getpid())-\(hex)")
    }

    /// The pid in a staging name of `target`, or nil when `name` is not one.
    static func stagingPID(_ name: String, target: String) -> Int32? {
        let prefix = ".\(target)."
        guard name.hasPrefix(prefix) else { return nil }
        let parts = name.dropFirst(prefix.count).split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == "tmp" || parts[0] == "scratch",
              let pid = Int32(parts[1]), pid > 0,
              parts[2].count == 8, parts[2].allSatisfy(\.isHexDigit) else { return nil }
        return pid
    }

    /// Whether process `pid` exists (signal 0 probes without sending anything).
    static func isAlive(_ pid: Int32) -> Bool { kill(pid, 0) == 0 || errno == EPERM }

    /// Removes the staging files and folders beside `target` whose process no longer exists; returns
    /// their paths. Only names of the exact staging pattern for this target are touched.
    @discardableResult
    public static func removeStale(beside target: URL) -> [String] {
        let folder = target.deletingLastPathComponent()
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
        var removed: [String] = []
        for name in names {
            guard let pid = stagingPID(name, target: target.lastPathComponent), pid != getpid(), !isAlive(pid) else { continue }
            let path = folder.appendingPathComponent(name).path
            if (try? FileManager.default.removeItem(atPath: path)) != nil { removed.append(path) }
        }
        return removed
    }

    // MARK: Registry for signal cleanup

    private final class Registry: @unchecked Sendable {
        let lock = NSLock()
        var paths: Set<String> = []
        var sources: [any DispatchSourceSignal] = []
    }
    private static let registry = Registry()

    /// Records `path` as staging to remove if the process is interrupted.
    public static func register(_ path: String) { registry.lock.withLock { _ = registry.paths.insert(path) } }

    /// Forgets `path` (it was committed or removed).
    public static func unregister(_ path: String) { registry.lock.withLock { _ = registry.paths.remove(path) } }

    /// Runs `body` (a commit) so that a signal's cleanup cannot run in the middle of it: the cleanup
    /// waits until `body` has renamed (and unregistered) its staging.
    public static func withCleanupBlocked<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        registry.lock.lock()
        defer { registry.lock.unlock() }
        return try body()
    }

    /// Removes every registered path now (the signal handler's job; also useful in tests).
    static func removeRegisteredLocked() {
        for path in registry.paths.sorted(by: >) {
            // A few attempts: the interrupted thread may still be creating files in the folder.
            var attempts = 0
            while attempts < 3, FileManager.default.fileExists(atPath: path) {
                try? FileManager.default.removeItem(atPath: path)
                attempts += 1
            }
        }
        registry.paths.removeAll()
    }

    /// Installs handlers for SIGINT, SIGTERM and SIGHUP that remove every registered staging path,
    /// then end the process with the same signal (exit status 128 + signal in a shell). For
    /// executables; call once, early in `main`.
    public static func installSignalCleanup() {
        registry.lock.withLock {
            guard registry.sources.isEmpty else { return }
            for sig in [SIGINT, SIGTERM, SIGHUP] {
                signal(sig, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
                source.setEventHandler {
                    registry.lock.lock()  // held until the process ends: no commit can start meanwhile
                    removeRegisteredLocked()
                    signal(sig, SIG_DFL)
                    // Dispatch reads signals through a signalfd with them blocked: unblock here so
                    // that the re-raised signal ends the process with its default action.
                    var set = sigset_t()
                    sigemptyset(&set)
                    sigaddset(&set, sig)
                    pthread_sigmask(SIG_UNBLOCK, &set, nil)
                    raise(sig)
                    _exit(128 + sig)  // only if the signal could not end the process
                }
                source.resume()
                registry.sources.append(source)
            }
        }
    }

    // MARK: Commit

    #if canImport(Glibc) || canImport(Musl)
    private typealias RenameAt2 = @convention(c) (Int32, UnsafePointer<CChar>, Int32, UnsafePointer<CChar>, UInt32) -> Int32
    /// glibc's `renameat2(2)` (not exported to Swift by the Glibc module), looked up once.
    private static let renameat2: RenameAt2? = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "renameat2")
        .map { unsafeBitCast($0, to: RenameAt2.self) }
    #endif

    /// Renames `source` to `target` atomically unless something exists at `target`, which is then
    /// left untouched: `renameat2(RENAME_NOREPLACE)` on Linux, `renamex_np(RENAME_EXCL)` on Darwin.
    /// Where the file system offers neither, a file is committed with `link(2)` (which never
    /// replaces) and a folder with `rename(2)` after checking that the target is absent.
    /// - Returns: 0 on success, else the `errno` (`EEXIST` when the target exists).
    public static func renameNoReplace(_ source: URL, to target: URL) -> Int32 {
        #if canImport(Darwin)
        if renamex_np(source.path, target.path, UInt32(RENAME_EXCL)) == 0 { return 0 }
        if errno != ENOTSUP { return errno }
        #else
        if let renameat2 {
            if renameat2(AT_FDCWD, source.path, AT_FDCWD, target.path, 1 /* RENAME_NOREPLACE */) == 0 { return 0 }
            if errno != EINVAL && errno != ENOSYS { return errno }
        }
        #endif
        var info = stat()
        guard lstat(source.path, &info) == 0 else { return errno }
        if (info.st_mode & S_IFMT) != S_IFDIR {
            guard link(source.path, target.path) == 0 else { return errno }
            unlink(source.path)
            return 0
        }
        var existing = stat()
        if lstat(target.path, &existing) == 0 { return EEXIST }
        return rename(source.path, target.path) == 0 ? 0 : errno
    }

    /// Flushes the folder holding `url` (so a rename into it survives a power cut); errors ignored.
    public static func syncFolder(of url: URL) {
        let fd = open(url.deletingLastPathComponent().path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return }
        fsync(fd)
        close(fd)
    }
}
