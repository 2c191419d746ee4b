import SquisherTensor

/// An optimizer's state, published by parameter name (the plug-in point of the Squisher).
///
/// Buffers use PyTorch's names: Adam/AdamW `exp_avg`, `exp_avg_sq` (and `max_exp_avg_sq` with
/// AMSGrad), RMSProp `square_avg` (`momentum_buffer`, `grad_avg`), Adagrad `sum`, SGD
/// `momentum_buffer`. Each buffer has the shape of its parameter. **`exp_avg_sq` is stored without
/// bias correction**, exactly as PyTorch stores it.
public struct OptimizerState: Sendable, Equatable {
    /// The optimizer's PyTorch class name: `"Adam"`, `"AdamW"`, `"SGD"`, `"RMSprop"`, `"Adagrad"`.
    public var kind: String
    /// Hyperparameters by PyTorch's names (`lr`, `beta1`, `beta2`, `eps`, `weight_decay`, ...).
    public var hyperparameters: [String: Double]
    /// Steps taken per parameter (PyTorch's per-parameter `step`); absent for parameters that
    /// never received a gradient.
    public var steps: [String: Int]
    /// Buffers by buffer name, then by parameter name.
    public var buffers: [String: NamedTensors]

    public init(kind: String, hyperparameters: [String: Double], steps: [String: Int] = [:], buffers: [String: NamedTensors] = [:]) {
        self.kind = kind
        self.hyperparameters = hyperparameters
        self.steps = steps
        self.buffers = buffers
    }

    /// The buffer `name` (e.g. `"exp_avg_sq"`) of parameter `parameter`, or `nil`.
    public func buffer(_ name: String, for parameter: String) -> Tensor? { buffers[name]?[parameter] }

    /// The whole state as flat named tensors, for saving as safetensors: `"<buffer>/<parameter>"`
    /// for buffers and `"step/<parameter>"` as a 1-element tensor. Hyperparameters and `kind` go in
    /// ``metadata``.
    public func flattened() -> NamedTensors {
        var result = NamedTensors()
        for parameter in steps.keys.sorted() {
            result["step/\(parameter)"] = Tensor(uncheckedShape: [1], scalars: [Float(steps[parameter]!)])
        }
        for bufferName in buffers.keys.sorted() {
            for (parameter, tensor) in buffers[bufferName]! { result["\(bufferName)/\(parameter)"] = tensor }
        }
        return result
    }

    /// String metadata describing `kind` and the hyperparameters (for a safetensors header).
    public var metadata: [String: String] {
        var result = ["optimizer": kind]
        for (key, value) in hyperparameters { result[key] = "\(value)" }
        return result
    }

    /// Rebuilds a state from ``flattened()`` and ``metadata``.
    /// - Throws: ``TensorError`` when the metadata lacks the optimizer kind or a key is malformed.
    public init(flattened tensors: NamedTensors, metadata: [String: String]) throws(TensorError) {
        guard let kind = metadata["optimizer"] else {
            throw .invalidArgument(argument: "optimizer state metadata", reason: "missing the 'optimizer' entry naming its kind")
        }
        var hyperparameters: [String: Double] = [:]
        for (key, value) in metadata where key != "optimizer" {
            guard let number = Double(value) else {
                throw .invalidArgument(argument: "optimizer state metadata '\(key)'", reason: "'\(value)' is not a number")
            }
            hyperparameters[key] = number
        }
        var steps: [String: Int] = [:]
        var buffers: [String: NamedTensors] = [:]
        for (key, tensor) in tensors {
            guard let slash = key.firstIndex(of: "/") else {
                throw .invalidArgument(argument: "optimizer state tensor '\(key)'", reason: "expected '<buffer>/<parameter>'")
            }
            let bufferName = String(key[..<slash]), parameter = String(key[key.index(after: slash)...])
            if bufferName == "step" {
                guard tensor.count == 1, let step = Int(exactly: tensor.scalars[0]), step >= 0 else {
                    throw .invalidArgument(argument: "optimizer state tensor '\(key)'", reason: "expected one non-negative integer")
                }
                steps[parameter] = step
            } else {
                buffers[bufferName, default: NamedTensors()][parameter] = tensor
            }
        }
        self.init(kind: kind, hyperparameters: hyperparameters, steps: steps, buffers: buffers)
    }
}
