import SquisherTensor

/// Applies child layers in order, like PyTorch's `nn.Sequential`.
///
/// Children are named `"0"`, `"1"`, ... by default (PyTorch's naming), or explicitly
/// (`("fc1", Linear(...))`), so parameter names match a PyTorch model's `state_dict()` keys.
public final class Sequential: ObservedLayerContainer {
    public let typeName = "Sequential"
    public private(set) var children: [(name: String, layer: any Layer)]
    public var localParameters: [(name: String, parameter: Parameter)] { [] }

    /// Inputs of each child in the last forward (index i: input of child i).
    private var childInputs: [Tensor] = []

    /// Children named by their index, as `nn.Sequential(a, b, c)`.
    public init(_ layers: [any Layer]) {
        children = layers.enumerated().map { (String($0.offset), $0.element) }
    }

    /// Children with explicit names, as `nn.Sequential(OrderedDict(...))`. A dotted name
    /// (`"intermediate.dense"`) flattens a deeper PyTorch module path into this container, so that
    /// parameter names match a model whose submodules are nested further.
    /// - Throws: ``TensorError/invalidArgument(argument:reason:)`` on a repeated name or an empty
    ///   name part (`""`, `"a..b"`, `".a"`).
    public init(named layers: [(String, any Layer)]) throws(TensorError) {
        var seen = Set<String>()
        for (name, _) in layers {
            guard !name.split(separator: ".", omittingEmptySubsequences: false).contains(where: \.isEmpty), seen.insert(name).inserted else {
                throw .invalidArgument(argument: "layer name '\(name)'", reason: "names must be unique, with no empty part between dots")
            }
        }
        children = layers.map { ($0.0, $0.1) }
    }

    public func forward(_ input: Tensor, mode: LayerMode) throws(TensorError) -> Tensor {
        // Let go of the last pass's activations first, so that the children can reuse their memory.
        childInputs = []
        var x = input
        var inputs: [Tensor] = []
        inputs.reserveCapacity(children.count)
        for (_, layer) in children {
            inputs.append(x)
            x = try layer.forward(x, mode: mode)
        }
        childInputs = inputs
        return x
    }

    /// The model's output for a batch in evaluation mode.
    public func callAsFunction(_ input: Tensor) throws(TensorError) -> Tensor {
        try forward(input, mode: .evaluation)
    }

    /// Backward through the last forward, calling `observer` for every leaf layer (recursively
    /// through nested containers, see ``LayerContainer``) with its input and output gradient.
    /// - Parameters:
    ///   - computeInputGradient: when false, the caller does not need `dL/d(input)` of the whole
    ///     model (estimators that only observe): the first leaf layer (recursively the first child
    ///     of a nested container at position 0) is still observed with its input and output
    ///     gradient, but its own backward, usually the largest product of the pass, is not run;
    ///     when `accumulateParameterGradients` is true it runs
    ///     ``Layer/accumulateParameterGradients(_:)`` instead (parameter gradients only). Every
    ///     layer's observation and parameter gradient is the same as with `true`.
    ///   - pathPrefix: prepended to child names (used for nesting; `""` at the top).
    /// - Returns: `dL/d(input)`, same shape as the input of the last forward; when
    ///   `computeInputGradient` is false, an empty placeholder of shape `[0]` instead.
    /// - Throws: ``TensorError`` from the layers, ``UnobservedContainerError`` for a nested
    ///   container that cannot report its children, or whatever the observer throws.
    public func backward(
        _ outputGradient: Tensor, accumulateParameterGradients: Bool,
        observer: (any BackwardObserver)?, computeInputGradient: Bool = true, pathPrefix: String = ""
    ) throws -> Tensor {
        guard childInputs.count == children.count else {
            throw TensorError.invalidArgument(argument: "Sequential.backward", reason: "called before forward")
        }
        var gradient = outputGradient
        for index in children.indices.reversed() {
            let (name, layer) = children[index]
            gradient = try layer.observedBackward(
                gradient, input: childInputs[index], path: pathPrefix + name,
                accumulateParameterGradients: accumulateParameterGradients, observer: observer,
                computeInputGradient: computeInputGradient || index > 0)
        }
        return computeInputGradient ? gradient : Tensor(zeros: [0])
    }
}
