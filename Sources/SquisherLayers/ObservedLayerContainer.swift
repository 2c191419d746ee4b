import SquisherTensor

/// A ``LayerContainer`` whose only backward is the observed one,
/// ``LayerContainer/backward(_:accumulateParameterGradients:observer:computeInputGradient:pathPrefix:)``:
/// this protocol derives the plain ``Layer/backward(_:accumulateParameterGradients:)`` (observer nil,
/// input gradient computed) and ``Layer/accumulateParameterGradients(_:)`` (observer nil, no input
/// gradient) from it, so a model declares its children, its forward and that one backward.
///
/// A conformer **must** implement the observed backward itself: ``LayerContainer``'s default of it
/// calls the plain backward, which here calls the observed one again.
public protocol ObservedLayerContainer: LayerContainer {}

extension ObservedLayerContainer {
    /// `dL/d(input)` through the observed backward with no observer.
    /// - Throws: the children's ``TensorError``s.
    public func backward(_ outputGradient: Tensor, accumulateParameterGradients: Bool) throws(TensorError) -> Tensor {
        try unobservedBackward(outputGradient, accumulateParameterGradients: accumulateParameterGradients, computeInputGradient: true)
    }

    /// Accumulates every parameter gradient without the input gradient (the model's input is data):
    /// the observed backward with no observer and `computeInputGradient: false`.
    /// - Throws: the children's ``TensorError``s.
    public func accumulateParameterGradients(_ outputGradient: Tensor) throws(TensorError) {
        _ = try unobservedBackward(outputGradient, accumulateParameterGradients: true, computeInputGradient: false)
    }
}
