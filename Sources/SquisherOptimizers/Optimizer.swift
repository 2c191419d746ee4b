import SquisherLayers
import SquisherTensor

/// A first-order optimizer over named parameters, with PyTorch's semantics, that publishes its
/// state by parameter name and calls registered step hooks before and after every update.
///
/// Conformers implement ``applyUpdate(gradients:)`` (the rule) and the state accessors; the
/// protocol extension provides ``step(batchSize:)`` with the hook protocol:
/// gather gradients → pre-step hooks (may modify them) → update → post-step hooks.
public protocol Optimizer: AnyObject {
    /// The parameters this optimizer updates, by name, in model order.
    var parameters: [(name: String, parameter: Parameter)] { get }
    /// The registered step hooks.
    var hooks: StepHookRegistry { get }
    /// The number of completed ``step(batchSize:)`` calls.
    var stepCount: Int { get }
    /// The state by parameter name (a snapshot; copy-on-write).
    var state: OptimizerState { get }
    /// Replaces the state (resuming training).
    /// - Throws: ``TensorError`` naming a parameter whose buffer is missing or mis-shaped, or a
    ///   state of another optimizer kind.
    func loadState(_ state: OptimizerState) throws(TensorError)
    /// Applies one update with these gradients (one per trainable parameter, by name) and
    /// increments ``stepCount``. Called by ``step(batchSize:)``; call that instead.
    func applyUpdate(gradients: NamedTensors) throws(TensorError)
}

extension Optimizer {
    /// Performs one optimization step from the parameters' accumulated gradients.
    /// - Parameter batchSize: samples in the mini-batch behind the gradients (passed to hooks).
    /// - Throws: ``TensorError`` when a hook changed a gradient's shape or the gradients are not finite.
    public func step(batchSize: Int) throws(TensorError) {
        var gradients = NamedTensors()
        for (name, parameter) in parameters where parameter.requiresGradient {
            gradients[name] = parameter.gradient
        }
        if hooks.hasPreHooks {
            var event = StepEvent(
                step: stepCount + 1, batchSize: batchSize, gradients: gradients,
                parameters: currentParameters(), state: state)
            hooks.runPre(&event)
            gradients = event.gradients
            for (name, parameter) in parameters where parameter.requiresGradient {
                let gradient = try gradients.tensor(named: name)
                try gradient.checkShape(parameter.value.shape, "gradient of '\(name)' after a pre-step hook")
                parameter.gradient = gradient
            }
        }
        for (name, gradient) in gradients where !gradient.allFinite {
            throw .invalidArgument(argument: "gradient of '\(name)'", reason: "contains NaN or infinity at step \(stepCount + 1)")
        }
        try applyUpdate(gradients: gradients)
        if hooks.hasPostHooks {
            hooks.runPost(StepEvent(
                step: stepCount, batchSize: batchSize, gradients: gradients,
                parameters: currentParameters(), state: state))
        }
    }

    /// Clears the gradients of every parameter.
    public func zeroGradients() {
        for (_, parameter) in parameters { parameter.zeroGradient() }
    }

    /// Registers a hook called before every update; it may modify `event.gradients`.
    @discardableResult
    public func registerStepPreHook(_ hook: @escaping (inout StepEvent) -> Void) -> HookHandle {
        hooks.addPre(hook)
    }

    /// Registers a hook called after every update.
    @discardableResult
    public func registerStepPostHook(_ hook: @escaping (StepEvent) -> Void) -> HookHandle {
        hooks.addPost(hook)
    }

    /// Registers an observer for both events; the returned handle removes both. The optimizer keeps
    /// the observer alive until the handle's ``HookHandle/remove()``.
    @discardableResult
    public func register(_ observer: any StepObserver) -> HookHandle {
        let pre = hooks.addPre { observer.optimizerWillStep(&$0) }
        let post = hooks.addPost { observer.optimizerDidStep($0) }
        return HookHandle.combining(pre, post, in: hooks)
    }

    /// The parameter values by name (shares storage).
    public func currentParameters() -> NamedTensors {
        var result = NamedTensors()
        for (name, parameter) in parameters { result[name] = parameter.value }
        return result
    }
}

extension HookHandle {
    /// One handle that removes two registrations.
    static func combining(_ first: HookHandle, _ second: HookHandle, in registry: StepHookRegistry) -> HookHandle {
        // Hook ids start at 1, so id 0 names no registration: removing it only runs `onRemove`
        // (an empty placeholder hook would make every step build a post-step event).
        let handle = HookHandle(registry: registry, id: 0)
        handle.onRemove = { first.remove(); second.remove() }
        return handle
    }
}
