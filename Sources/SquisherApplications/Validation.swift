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

    /// A fraction in [0, 1).
    static func checkFraction(_ value: Double, argument: String, application: String, closedAbove: Bool = false) throws(ApplicationError) {
        guard value.isFinite, value >= 0, closedAbove ? value <= 1 : value < 1 else {
            throw ApplicationError(application: application, problem: "\(argument) must be in [0, 1\(closedAbove ? "]" : ")"), got \(value)")
        }
    }
}
