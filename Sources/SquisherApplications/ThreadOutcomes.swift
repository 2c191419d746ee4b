import SquisherCheckpoints
import Synchronization

/// One result slot per work item of a `concurrentPerform` loop: each item writes its own slot
/// once, the caller reads them all afterwards in item order (deterministic, whatever the thread
/// interleaving).
final class ThreadOutcomes<Value: Sendable>: Sendable {
    private let slots: Mutex<[Result<Value, CheckpointError>?]>

    /// `count` empty slots.
    init(_ count: Int) { slots = Mutex(Array(repeating: nil, count: count)) }

    /// Stores slot `index`'s outcome.
    func set(_ index: Int, _ outcome: Result<Value, CheckpointError>) { slots.withLock { $0[index] = outcome } }

    /// Slot `index`'s outcome (a failure if the item never ran).
    func get(_ index: Int) -> Result<Value, CheckpointError> {
        slots.withLock { $0[index] } ?? .failure(CheckpointError(path: "", problem: "work item \(index) did not run"))
    }
}
