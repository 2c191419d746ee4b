import SquisherTensor

/// What an optimizer step hook sees (PyTorch's `register_step_pre_hook`/`post_hook`, with the data
/// an estimator needs to recycle the step).
public struct StepEvent: Sendable {
    /// The 1-based index of this step (the optimizer's step count after the step completes).
    public let step: Int
    /// The number of samples in the mini-batch whose loss produced the gradients.
    public let batchSize: Int
    /// The gradients the update uses, by parameter name, for the loss and reduction the caller
    /// backpropagated (PyTorch's default is mean over the batch). A pre-step hook may modify them
    /// (clipping, masking); the post-step hook sees them as applied. They exclude the optimizer's
    /// own L2 weight-decay term.
    public var gradients: NamedTensors
    /// Parameter values: before the update in a pre-step hook, after it in a post-step hook.
    public let parameters: NamedTensors
    /// A read-only snapshot of the optimizer state (before the update in a pre-step hook, after it
    /// in a post-step hook). Copy-on-write: holding it costs nothing until the optimizer writes.
    public let state: OptimizerState

    public init(step: Int, batchSize: Int, gradients: NamedTensors, parameters: NamedTensors, state: OptimizerState) {
        self.step = step
        self.batchSize = batchSize
        self.gradients = gradients
        self.parameters = parameters
        self.state = state
    }
}

/// An observer of optimizer steps with no-op defaults, so that it implements only what it needs
/// (like Keras callbacks).
public protocol StepObserver: AnyObject {
    /// Called before the update; may change `event.gradients` (the optimizer then applies them).
    func optimizerWillStep(_ event: inout StepEvent)
    /// Called after the update with the gradients as applied and the new state.
    func optimizerDidStep(_ event: StepEvent)
}

extension StepObserver {
    public func optimizerWillStep(_ event: inout StepEvent) {}
    public func optimizerDidStep(_ event: StepEvent) {}
}

/// A registration returned by the optimizer's hook methods; ``remove()`` unregisters the hook
/// (PyTorch's `RemovableHandle`). Dropping the handle does *not* remove the hook.
public final class HookHandle: @unchecked Sendable {
    private weak var registry: StepHookRegistry?
    private let id: Int
    /// Extra work on removal (used to remove several registrations at once).
    var onRemove: (() -> Void)?

    init(registry: StepHookRegistry, id: Int) {
        self.registry = registry
        self.id = id
    }

    /// Removes the hook; later steps no longer call it. Removing twice is harmless.
    public func remove() {
        registry?.remove(id: id)
        onRemove?()
        onRemove = nil
    }
}

/// The hooks registered on one optimizer, called in registration order.
public final class StepHookRegistry {
    private var nextID = 0
    private var preHooks: [(id: Int, body: (inout StepEvent) -> Void)] = []
    private var postHooks: [(id: Int, body: (StepEvent) -> Void)] = []

    public init() {}

    /// True when no hook is registered (the optimizer then skips building events).
    public var isEmpty: Bool { preHooks.isEmpty && postHooks.isEmpty }
    var hasPreHooks: Bool { !preHooks.isEmpty }
    var hasPostHooks: Bool { !postHooks.isEmpty }

    func addPre(_ body: @escaping (inout StepEvent) -> Void) -> HookHandle {
        nextID += 1
        preHooks.append((nextID, body))
        return HookHandle(registry: self, id: nextID)
    }

    func addPost(_ body: @escaping (StepEvent) -> Void) -> HookHandle {
        nextID += 1
        postHooks.append((nextID, body))
        return HookHandle(registry: self, id: nextID)
    }

    func remove(id: Int) {
        preHooks.removeAll { $0.id == id }
        postHooks.removeAll { $0.id == id }
    }

    func runPre(_ event: inout StepEvent) { for hook in preHooks { hook.body(&event) } }
    func runPost(_ event: StepEvent) { for hook in postHooks { hook.body(event) } }
}
