import SquisherEstimators
import SquisherLayers
import SquisherTensor

/// FISH mask (Sung, Nair, Raffel 2021): train only the `k` parameters of largest importance [1].
///
/// As the reference code: one top-k over all non-classifier parameters with
/// `k = keepFraction · (all parameters) − (classifier size)`; classifier tensors stay fully
/// trainable; the mask is enforced by zeroing the other gradients before each optimizer step
/// (exact only with weight decay 0), see ``ParameterMask/enforce(on:model:keepParametersZero:)``.
/// For the Squisher variant a pre-trained model has no optimizer state, so the protocol is: a short
/// dense warm-up that fills `v`, the mask from `v`, then ``resetOutsideMask(model:pretrained:mask:)``
/// (back to the pre-trained values except the masked entries) and sparse training [2].
///
/// [1]: Sung, Nair, Raffel 2021, Training Neural Networks with Fixed Sparse Masks.
/// [2]: Li, Dangel, Tam, Raffel 2025, Fishers for Free?
public struct FishMask: Sendable {
    /// Fraction of all parameters to keep trainable, in (0, 1] (reference default 0.005).
    public var keepFraction: Double
    /// Parameter names of the classifier, always trainable and excluded from the top-k.
    public var classifierParameters: Set<String>

    public init(keepFraction: Double = 0.005, classifierParameters: Set<String> = []) {
        self.keepFraction = keepFraction
        self.classifierParameters = classifierParameters
    }

    /// The mask over every parameter (classifier tensors all ones).
    /// - Throws: ``ApplicationError`` for a fraction outside (0, 1], a classifier name the model
    ///   lacks, a parameter without (valid) importance, importance names that are no parameter,
    ///   or an importance that is zero on every scored parameter.
    public func mask(parameters: NamedTensors, importance: Importance) throws(ApplicationError) -> ParameterMask {
        guard keepFraction > 0, keepFraction <= 1, keepFraction.isFinite else {
            throw ApplicationError(application: "fish-mask", problem: "keepFraction must be in (0, 1], got \(keepFraction)")
        }
        if let unknown = classifierParameters.first(where: { parameters[$0] == nil }) {
            throw ApplicationError(application: "fish-mask", problem: "classifier parameter '\(unknown)' is not a parameter of the model")
        }
        let scored = parameters.names.filter { !classifierParameters.contains($0) }
        try Validation.checkNames(importance, expected: scored, known: parameters.names, application: "fish-mask")
        try Validation.checkNotAllZero(importance, names: scored, application: "fish-mask")
        var scores = NamedTensors()
        var classifierSize = 0
        for (name, theta) in parameters {
            if classifierParameters.contains(name) { classifierSize += theta.count; continue }
            guard let values = try Validation.checkImportance(importance, covers: name, shape: theta.shape, application: "fish-mask", owner: importance.estimator) else {
                throw ApplicationError(application: "fish-mask", problem: "importance '\(importance.estimator)' has no entry for '\(name)'")
            }
            scores[name] = values
        }
        let keep = Int((keepFraction * Double(parameters.scalarCount)).rounded()) - classifierSize
        var mask = ParameterMask.topK(scores: scores, keepCount: max(0, keep))
        for name in classifierParameters { mask.masks[name] = Tensor(repeating: 1, shape: parameters[name]!.shape) }
        // Keep the model's parameter order.
        mask.masks = try! NamedTensors(parameters.names.compactMap { name in mask.masks[name].map { (name, $0) } })
        return mask
    }

    /// Resets every entry outside the mask to its pre-trained value (the masked entries keep their
    /// current values).
    /// - Throws: ``ApplicationError`` naming a parameter missing from `pretrained` or the mask.
    public static func resetOutsideMask(model: any Layer, pretrained: NamedTensors, mask: ParameterMask) throws(ApplicationError) {
        for (name, parameter) in model.namedParameters {
            guard let original = pretrained[name], original.shape == parameter.value.shape, let m = mask.masks[name] else {
                throw ApplicationError(application: "fish-mask", problem: "parameter '\(name)' is missing from the pre-trained weights or the mask")
            }
            parameter.value = Tensor(uncheckedShape: m.shape, scalars: (0..<m.count).map { m.scalars[$0] != 0 ? parameter.value.scalars[$0] : original.scalars[$0] })
        }
    }
}
