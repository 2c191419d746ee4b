import Foundation
import SquisherIO
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A file mapped read-only with `mmap(2)` by this module, exposed as a `Data` that does not copy it,
/// so that pages already consumed can be handed back to the kernel (``release(_:)``): reading an
/// optimizer state tensor by tensor then keeps resident memory near one tensor, not the file size.
/// (Foundation's `.alwaysMapped` reading gives no such control and may fall back to a heap copy, on
/// which `MADV_DONTNEED` would destroy data; this mapping is always a file mapping.)
public final class MappedFile: @unchecked Sendable {
    /// The whole file; valid as long as this object (or a `Data` derived from it) is alive.
    public let data: Data
    private let base: UnsafeMutableRawPointer?
    private let length: Int

    /// Maps `url` read-only.
    /// - Throws: ``CheckpointError`` naming the file when it cannot be opened or mapped.
    public init(_ url: URL) throws(CheckpointError) {
        let path = url.path
        // A FIFO or device is refused before any open (which would block on a FIFO).
        do { try InputFile.requireRegularFile(url) } catch { throw CheckpointError(error) }
        let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { throw CheckpointError(path: path, problem: "cannot read file (\(String(cString: strerror(errno))))") }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else {
            throw CheckpointError(path: path, problem: "cannot read file (not a regular file)")
        }
        length = Int(info.st_size)
        guard length > 0 else {
            base = nil
            data = Data()
            return
        }
        guard let pointer = mmap(nil, length, PROT_READ, MAP_SHARED, fd, 0), pointer != MAP_FAILED else {
            throw CheckpointError(path: path, problem: "cannot memory-map \(length) bytes (\(String(cString: strerror(errno))))")
        }
        base = pointer
        let size = length
        // The Data owns the mapping: it is unmapped when the last Data (or slice) referring to it goes away.
        data = Data(bytesNoCopy: pointer, count: size, deallocator: .custom { pointer, _ in munmap(pointer, size) })
    }

    /// Asks the kernel to read the pages of `bytes` ahead, asynchronously (`MADV_WILLNEED`): a
    /// streaming pass prefetches the next tensor while it computes on the current one, so reading
    /// runs at the disk's sequential speed instead of one page fault at a time. Does nothing for
    /// memory outside this mapping.
    public func prefetch(_ bytes: UnsafeRawBufferPointer) {
        guard let base, let start = bytes.baseAddress, bytes.count > 0 else { return }
        let lowest = Int(bitPattern: base), highest = lowest + length
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let lower = max(lowest, Int(bitPattern: start) / page * page)
        let upper = min(highest, Int(bitPattern: start) + bytes.count)
        guard upper > lower, let pointer = UnsafeMutableRawPointer(bitPattern: lower) else { return }
        _ = madvise(pointer, upper - lower, Int32(MADV_WILLNEED))
    }

    /// Drops the resident pages lying entirely inside `bytes` (they are re-read from the page cache if
    /// touched again). Does nothing for memory outside this mapping.
    public func release(_ bytes: UnsafeRawBufferPointer) {
        guard let base, let start = bytes.baseAddress, bytes.count > 0 else { return }
        let lowest = Int(bitPattern: base), highest = lowest + length
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let lower = max(lowest, (Int(bitPattern: start) + page - 1) / page * page)
        let upper = min(highest, (Int(bitPattern: start) + bytes.count) / page * page)
        guard Int(bitPattern: start) >= lowest, Int(bitPattern: start) + bytes.count <= highest,
              upper > lower, let pointer = UnsafeMutableRawPointer(bitPattern: lower) else { return }
        _ = madvise(pointer, upper - lower, Int32(MADV_DONTNEED))
    }
}
