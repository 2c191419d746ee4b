import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Runs `body` on its own thread and records a test issue if it has not returned within `seconds`:
/// a read of a FIFO (by a reader or a whole command) must not block. On a timeout the FIFO at
/// `unblocking` is opened for writing and closed, which releases the stuck reader, so the test run
/// itself never hangs.
public func withoutHanging(
    seconds: Double = 10, unblocking fifo: URL, _ body: @escaping @Sendable () -> Void,
    sourceLocation: SourceLocation = #_sourceLocation
) {
    let done = DispatchSemaphore(value: 0)
    let thread = Thread { body(); done.signal() }
    thread.start()
    if done.wait(timeout: .now() + seconds) == .timedOut {
        Issue.record("blocked for more than \(seconds) s on the FIFO \(fifo.path)", sourceLocation: sourceLocation)
        let fd = open(fifo.path, O_RDWR | O_NONBLOCK)
        if fd >= 0 { close(fd) }
        _ = done.wait(timeout: .now() + seconds)
    }
}
