import SquisherEstimators
import SquisherTensor

/// Input checks shared by the applications.
enum Validation {
    /// Every model must have the reference model's names and shapes.
    static func checkSameLayout(_ models: [NamedTensors], application: String, what: String = "model") throws(ApplicationError) {
        guard let reference = models.first else {
            throw ApplicationError(application: application, problem: "needs at least one \(what), got none")
        }
        for (index, model) in models.enumerated().dropFirst() {
            for (name, tensor) in reference {
                guard let other = model[name] else {
                    throw ApplicationError(application: application, problem: "\(what) \(index) has no parameter '\(name)' (\(what) 0 has it)")
                }
                guard other.shape == tensor.shape else {
                    throw ApplicationError(application: application, problem: "parameter '\(name)' has shape \(other.shape) in \(what) \(index) but \(tensor.shape) in \(what) 0")
                }
            }
            if let extra = model.names.first(where: { reference[$0] == nil }) {
                throw ApplicationError(application: application, problem: "\(what) \(index) has parameter '\(extra)' that \(what) 0 lacks")
            }
        }
    }

    /// An importance used by an application must cover `name` with the parameter's shape and hold
    /// finite, non-negative values.
    static func checkImportance(_ importance: Importance, covers name: String, shape: [Int], application: String, owner: String) throws(ApplicationError) -> Tensor? {
        guard let values = importance[name] else { return nil }
        guard values.shape == shape else {
            throw ApplicationError(application: application, problem: "importance of '\(name)' for \(owner) has shape \(values.shape), the parameter has \(shape)")
        }
        if let bad = values.scalars.firstIndex(where: { !($0 >= 0) || !$0.isFinite }) {
            throw ApplicationError(application: application, problem: "importance of '\(name)' for \(owner) has entry \(bad) = \(values.scalars[bad]); expected finite and >= 0")
        }
        return values
    }

    /// The importance must name exactly the parameters an application works on: an entry missing
    /// for an expected parameter, or an entry that names no parameter of the model (an importance
    /// of a sub-model, `0.weight` for `0.0.weight`), is an error listing both and the prefix hint.
    /// - Parameters:
    ///   - expected: the parameters that need an importance.
    ///   - known: every parameter of the model (entries for known parameters outside `expected`,
    ///     such as biases left out of pruning, are accepted).
    static func checkNames(_ importance: Importance, expected: [String], known: [String], application: String) throws(ApplicationError) {
        let knownSet = Set(known)
        let expectedSet = Set(expected)
        // Entries for known parameters that this application leaves out are fine; anything else must match.
        let found = importance.names.filter { expectedSet.contains($0) || !knownSet.contains($0) }
        if let mismatch = ParameterNameMismatch(expected: expected, found: found, source: "importance '\(importance.estimator)'") {
            throw ApplicationError(application: application, problem: mismatch.description)
        }
    }

    /// An importance that is zero for every entry of `names` carries no information (nothing was
    /// observed: an optimizer over other parameters, an accumulator never attached): an error, not
    /// a silent uniform ranking or a penalty of zero.
    static func checkNotAllZero(_ importance: Importance, names: [String], application: String) throws(ApplicationError) {
        for name in names {
            if let values = importance[name], values.scalars.contains(where: { $0 != 0 }) { return }
        }
        throw ApplicationError(application: application, problem: "importance '\(importance.estimator)' is zero for every one of the \(names.count) parameter(s) it is used on: nothing was observed (an optimizer or accumulator over other parameters?)")
    }

    /// A fraction in [0, 1).
    static func checkFraction(_ value: Double, argument: String, application: String, closedAbove: Bool = false) throws(ApplicationError) {
        guard value.isFinite, value >= 0, closedAbove ? value <= 1 : value < 1 else {
            throw ApplicationError(application: application, problem: "\(argument) must be in [0, 1\(closedAbove ? "]" : ")"), got \(value)")
        }
    }
}

extension Importance {
    /// Checks that this importance names exactly `parameters` (the model's parameter names): a
    /// parameter without an entry, or an entry that is no parameter, is an ``ApplicationError`` of
    /// `application` listing both kinds and the prefix mismatch, if any (`0.weight` vs `0.0.weight`).
    /// The check every application runs before using an importance.
    /// - Parameter required: the parameters that need an entry (default: all of `parameters`);
    ///   entries for the others are accepted.
    public func checkNames(matching parameters: [String], required: [String]? = nil, application: String) throws(ApplicationError) {
        try Validation.checkNames(self, expected: required ?? parameters, known: parameters, application: application)
    }
}
