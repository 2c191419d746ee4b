import SquisherTensor

/// A residual (skip) connection around a body: `y = x + body(x)` (He et al. 2016), the block of
/// every ResNet and transformer. The body is any layer (usually a ``Sequential``) and must keep
/// the input's shape.
///
/// Parameter names are the body's, under the child name (`"body"` by default: `body.0.weight`);
/// pass `bodyName` to match a PyTorch module's attribute name.
/// Backward: `dL/dx = dL/dy + body'ᵀ dL/dy`; the body is observed like any child (see
/// ``LayerContainer``), so per-sample estimators see every parameter inside it.
///
/// The sum `x + body(x)` and the input gradient are written into the memory of earlier passes once
/// nothing else holds it (``ReusableTensor``): the sum with two slots (the next layer keeps the last one
/// as its input until its own next forward), the gradient with one. A tensor the caller still holds is
/// never written.
public final class Residual: ObservedLayerContainer {
    public let typeName = "Residual"
    /// The wrapped layer.
    public let body: any Layer
    /// The body's name in parameter paths.
    public let bodyName: String
    public var children: [(name: String, layer: any Layer)] { [(bodyName, body)] }
    public var localParameters: [(name: String, parameter: Parameter)] { [] }
    private var cachedInput: Tensor?
    /// Memory of the outputs (two slots) and input gradients (one slot), reused across passes.
    private var outputBuffer = ReusableTensor(slots: 2), gradientBuffer = ReusableTensor()

    /// Wraps `body` as `x + body(x)`.
    /// - Throws: ``TensorError/invalidArgument(argument:reason:)`` on an empty name or one with a dot.
    public init(_ body: any Layer, bodyName: String = "body") throws(TensorError) {
        guard !bodyName.isEmpty, !bodyName.contains(".") else {
            throw .invalidArgument(argument: "Residual body name '\(bodyName)'", reason: "must be non-empty and contain no '.'")
        }
        self.body = body
        self.bodyName = bodyName
    }

    public func forward(_ input: Tensor, mode: LayerMode) throws(TensorError) -> Tensor {
        let output = try body.forward(input, mode: mode)
        try output.checkShape(input.shape, "Residual(\(body.typeName)): the body's output must keep the input shape")
        cachedInput = input
        return try outputBuffer.sum(input, output)
    }

    public func backward(
        _ outputGradient: Tensor, accumulateParameterGradients: Bool,
        observer: (any BackwardObserver)?, computeInputGradient: Bool, pathPrefix: String
    ) throws -> Tensor {
        guard let input = cachedInput else {
            throw TensorError.invalidArgument(argument: "Residual(\(body.typeName)) backward", reason: "called before forward")
        }
        try outputGradient.checkShape(input.shape, "Residual(\(body.typeName)) backward (output gradient)")
        let bodyGradient = try body.observedBackward(
            outputGradient, input: input, path: pathPrefix + bodyName,
            accumulateParameterGradients: accumulateParameterGradients, observer: observer,
            computeInputGradient: computeInputGradient)
        guard computeInputGradient else { return Tensor(zeros: [0]) }
        return try gradientBuffer.sum(outputGradient, bodyGradient)
    }
}
