import SquisherTensor

/// Whether layers behave as in training (dropout active) or evaluation.
public enum LayerMode: Sendable, Hashable {
    case training
    case evaluation
}

/// A differentiable layer with an explicit backward pass, working on batches whose leading axis
/// indexes samples (row `n` of every input and gradient belongs to sample `n`).
///
/// Layers are reference types (like `nn.Module`): they own their ``Parameter``s and remember what
/// the last ``forward(_:mode:)`` needs for ``backward(_:accumulateParameterGradients:)``.
/// Backward must be *repeatable*: it may be called several times after one forward with different
/// output gradients (the true Fisher backpropagates one output gradient per class), and must not
/// consume the cache.
public protocol Layer: AnyObject {
    /// The PyTorch class name (`"Linear"`, `"Conv2d"`); names the layer in errors and keys
    /// per-sample rules in the estimators.
    var typeName: String { get }

    /// The layer's own parameters by local name, in PyTorch's registration order
    /// (`weight` before `bias`). Containers return `[]` and expose ``LayerContainer/children``.
    var localParameters: [(name: String, parameter: Parameter)] { get }

    /// Computes the output for a batch and caches what backward needs.
    /// - Throws: ``TensorError`` naming the layer when the input shape is wrong.
    func forward(_ input: Tensor, mode: LayerMode) throws(TensorError) -> Tensor

    /// Given `dL/d(output)` for the last forward, returns `dL/d(input)`.
    /// When `accumulateParameterGradients` is true, adds `dL/d(parameter)` (summed over the batch)
    /// into each parameter's `gradient`.
    /// - Throws: ``TensorError`` when there was no forward or the gradient's shape is wrong.
    func backward(_ outputGradient: Tensor, accumulateParameterGradients: Bool) throws(TensorError) -> Tensor

    /// The backward pass of a layer whose input gradient nobody needs (the first layer of a model,
    /// whose input is data): adds `dL/d(parameter)` (summed over the batch) into each parameter's
    /// `gradient`, as ``backward(_:accumulateParameterGradients:)`` with `true`, without computing
    /// `dL/d(input)`. The default calls `backward` and discards its result; layers whose input
    /// gradient is costly (`Linear`, `Conv2d`) skip that product.
    /// - Throws: as ``backward(_:accumulateParameterGradients:)``.
    func accumulateParameterGradients(_ outputGradient: Tensor) throws(TensorError)
}

extension Layer {
    public func accumulateParameterGradients(_ outputGradient: Tensor) throws(TensorError) {
        _ = try backward(outputGradient, accumulateParameterGradients: true)
    }
}

/// A layer made of named child layers (like `nn.Sequential` or any `nn.Module` with submodules);
/// parameter names are the children's names joined with dots (`0.weight`, `encoder.1.bias`).
/// A child's name may itself contain dots (`attention.output.dense`) when the container flattens
/// a deeper PyTorch module tree into one class.
///
/// A container runs its children in its own forward and backward, so only it knows each child's
/// input and output gradient: it must report them to a ``BackwardObserver`` in
/// ``backward(_:accumulateParameterGradients:observer:computeInputGradient:pathPrefix:)``
/// (usually by calling ``Layer/observedBackward(_:input:path:accumulateParameterGradients:observer:computeInputGradient:)``
/// on each child). The default implementation of that method works without an observer and
/// **throws** ``UnobservedContainerError`` naming the container when an observer is given and the
/// container has trainable parameters: an estimator never gets a silent all-zero Fisher for them.
public protocol LayerContainer: Layer {
    /// The children in order, with their names.
    var children: [(name: String, layer: any Layer)] { get }

    /// Backward through the last forward, reporting every leaf layer's input and output gradient
    /// to `observer` (recursively through child containers), as ``Sequential`` does.
    /// - Parameters:
    ///   - computeInputGradient: when false the caller does not need `dL/d(input)`; the container
    ///     may skip that product and return an empty placeholder of shape `[0]`. Every parameter
    ///     gradient and observation must be the same as with `true`.
    ///   - pathPrefix: prepended to child names (`""` at the top, `"encoder."` when nested).
    /// - Throws: ``TensorError`` from the children, or whatever the observer throws.
    func backward(
        _ outputGradient: Tensor, accumulateParameterGradients: Bool,
        observer: (any BackwardObserver)?, computeInputGradient: Bool, pathPrefix: String
    ) throws -> Tensor
}

/// Thrown when an observer (a per-sample estimator) meets a container that does not report its
/// children: naming it is better than a silent zero Fisher for its parameters.
public struct UnobservedContainerError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The container's dotted path in the model (`""` for the model itself).
    public var path: String
    /// The container's ``Layer/typeName``.
    public var typeName: String

    public init(path: String, typeName: String) {
        self.path = path
        self.typeName = typeName
    }

    public var description: String {
        "container '\(path.isEmpty ? "<model>" : path)' (\(typeName)) has trainable parameters but does not report its children "
            + "to a backward observer: implement LayerContainer.backward(_:accumulateParameterGradients:observer:computeInputGradient:pathPrefix:)"
    }
}

extension LayerContainer {
    public func backward(
        _ outputGradient: Tensor, accumulateParameterGradients: Bool,
        observer: (any BackwardObserver)?, computeInputGradient: Bool, pathPrefix: String
    ) throws -> Tensor {
        if observer != nil, namedParameters.contains(where: { $0.parameter.requiresGradient }) {
            throw UnobservedContainerError(path: String(pathPrefix.dropLast()), typeName: typeName)
        }
        return try backward(outputGradient, accumulateParameterGradients: accumulateParameterGradients)
    }
}

extension LayerContainer {
    /// The observed backward without an observer, whose only errors are the children's
    /// `TensorError`s: what a container's ``Layer/backward(_:accumulateParameterGradients:)`` and
    /// ``Layer/accumulateParameterGradients(_:)`` call, so that one code path serves both.
    public func unobservedBackward(
        _ outputGradient: Tensor, accumulateParameterGradients: Bool, computeInputGradient: Bool
    ) throws(TensorError) -> Tensor {
        do {
            return try backward(
                outputGradient, accumulateParameterGradients: accumulateParameterGradients, observer: nil,
                computeInputGradient: computeInputGradient, pathPrefix: "")
        } catch let error as TensorError {
            throw error
        } catch {
            throw .invalidArgument(argument: "\(typeName) backward", reason: "\(error)")  // unreachable without an observer
        }
    }
}

extension Layer {
    /// Backward of this layer as a part of a larger model, at dotted `path`: a container recurses
    /// (``LayerContainer/backward(_:accumulateParameterGradients:observer:computeInputGradient:pathPrefix:)``
    /// with prefix `path + "."`); a leaf is reported to `observer` with `input` (its input in the
    /// last forward) and `outputGradient`, then runs its backward (or, when `computeInputGradient`
    /// is false, only ``accumulateParameterGradients(_:)`` if asked to accumulate).
    /// Containers call this on each child in their observed backward.
    /// - Returns: `dL/d(input)`, or an empty placeholder `[0]` when `computeInputGradient` is false.
    public func observedBackward(
        _ outputGradient: Tensor, input: Tensor, path: String, accumulateParameterGradients: Bool,
        observer: (any BackwardObserver)?, computeInputGradient: Bool = true
    ) throws -> Tensor {
        if let container = self as? any LayerContainer {
            return try container.backward(
                outputGradient, accumulateParameterGradients: accumulateParameterGradients, observer: observer,
                computeInputGradient: computeInputGradient, pathPrefix: path.isEmpty ? "" : path + ".")
        }
        try observer?.observe(layer: self, path: path, input: input, outputGradient: outputGradient)
        if computeInputGradient {
            return try backward(outputGradient, accumulateParameterGradients: accumulateParameterGradients)
        }
        if accumulateParameterGradients { try self.accumulateParameterGradients(outputGradient) }
        return Tensor(zeros: [0])
    }
}

/// Receives, during a backward pass, each leaf layer's input and the gradient of the loss with
/// respect to its output, *per sample* (leading axis): the raw material of per-sample squared
/// gradients (BackPACK's "extensions keyed by layer type").
public protocol BackwardObserver: AnyObject {
    /// Called for every leaf layer just before its backward.
    /// - Parameters:
    ///   - layer: the leaf layer.
    ///   - path: its dotted name in the model (`"0"`, `"fc1"`); its parameters are `path + "." + local name`.
    ///   - input: the layer's input in the last forward, `[N, ...]`.
    ///   - outputGradient: `dL/d(output)`, `[N, ...]`, for the loss and reduction being backpropagated.
    func observe(layer: any Layer, path: String, input: Tensor, outputGradient: Tensor) throws
}

extension Layer {
    /// Every parameter of this layer and its descendants by full dotted name, in PyTorch's order
    /// (the keys of `model.named_parameters()` / `state_dict()`).
    public var namedParameters: [(name: String, parameter: Parameter)] {
        var result: [(name: String, parameter: Parameter)] = []
        collectParameters(prefix: "", into: &result)
        return result
    }

    /// A parameter shared by several layers (a tied output embedding) is listed once, under its
    /// first name, as PyTorch's `named_parameters()` (whose `remove_duplicate` is true).
    func collectParameters(prefix: String, into result: inout [(name: String, parameter: Parameter)]) {
        var seen = Set<ObjectIdentifier>()
        collectParameters(prefix: prefix, seen: &seen, into: &result)
    }

    private func collectParameters(
        prefix: String, seen: inout Set<ObjectIdentifier>, into result: inout [(name: String, parameter: Parameter)]
    ) {
        for (name, parameter) in localParameters where seen.insert(ObjectIdentifier(parameter)).inserted {
            result.append((prefix + name, parameter))
        }
        if let container = self as? any LayerContainer {
            for (name, child) in container.children { child.collectParameters(prefix: prefix + name + ".", seen: &seen, into: &result) }
        }
    }

    /// Every use of a parameter by a leaf layer, with repeats: a parameter shared by two layers
    /// (a tied embedding) appears twice. Keys are the parameters' identities.
    public var parameterUseCounts: [ObjectIdentifier: Int] {
        var counts: [ObjectIdentifier: Int] = [:]
        func visit(_ layer: any Layer) {
            for (_, parameter) in layer.localParameters { counts[ObjectIdentifier(parameter), default: 0] += 1 }
            if let container = layer as? any LayerContainer { for (_, child) in container.children { visit(child) } }
        }
        visit(self)
        return counts
    }

    /// The parameter values as a state dict (shares storage; no copy until written).
    public func stateDict() -> NamedTensors {
        var result = NamedTensors()
        for (name, parameter) in namedParameters { result[name] = parameter.value }
        return result
    }

    /// The accumulated gradients by parameter name.
    public func gradients() -> NamedTensors {
        var result = NamedTensors()
        for (name, parameter) in namedParameters { result[name] = parameter.gradient }
        return result
    }

    /// Loads parameter values by name.
    /// - Parameter strict: when true, every parameter must be present and no extra name allowed.
    /// - Throws: ``TensorError`` naming the missing, unexpected or mis-shaped tensor.
    public func load(_ state: NamedTensors, strict: Bool = true) throws(TensorError) {
        let parameters = namedParameters
        if strict {
            let known = Set(parameters.map(\.name))
            if let extra = state.names.first(where: { !known.contains($0) }) {
                throw .invalidArgument(argument: "state dict entry '\(extra)'", reason: "the model has no parameter of that name")
            }
        }
        for (name, parameter) in parameters {
            guard let value = state[name] else {
                if strict { throw .invalidArgument(argument: "parameter '\(name)'", reason: "missing from the state dict") }
                continue
            }
            try parameter.load(value, name: name)
        }
    }

    /// Clears every parameter's gradient.
    public func zeroGradients() {
        for (_, parameter) in namedParameters { parameter.zeroGradient() }
    }

    /// The total number of scalars in all parameters.
    public var parameterCount: Int { namedParameters.reduce(0) { $0 + $1.parameter.value.count } }
}
