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

/// A layer made of named child layers (like `nn.Sequential`); parameter names are the children's
/// names joined with dots (`0.weight`, `encoder.1.bias`).
public protocol LayerContainer: Layer {
    /// The children in order, with their names.
    var children: [(name: String, layer: any Layer)] { get }
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

    func collectParameters(prefix: String, into result: inout [(name: String, parameter: Parameter)]) {
        for (name, parameter) in localParameters { result.append((prefix + name, parameter)) }
        if let container = self as? any LayerContainer {
            for (name, child) in container.children { child.collectParameters(prefix: prefix + name + ".", into: &result) }
        }
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
