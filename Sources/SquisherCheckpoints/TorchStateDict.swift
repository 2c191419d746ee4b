import Foundation
import SquisherTensor

/// A model state dict read from `torch.save(model.state_dict())` (`model.pt`, `pytorch_model.bin`):
/// parameter and buffer names to tensors, in the saved `OrderedDict`'s order, which is the model's
/// registration order (unlike safetensors files, which list tensors sorted by name).
public struct TorchStateDict: Sendable {
    /// The tensors converted to float32, in file order.
    public var tensors: NamedTensors
    /// Each tensor's dtype in the file.
    public var dtypes: [String: TorchDType]

    /// Loads a state dict file.
    /// - Throws: ``CheckpointError`` when the file cannot be read or does not hold a mapping of names to tensors.
    public init(contentsOf url: URL, limits: PickleLimits = PickleLimits()) throws(CheckpointError) {
        try self.init(TorchCheckpoint.load(url, limits: limits), path: url.path)
    }

    /// Interprets a loaded value (a `dict`/`OrderedDict` of `str` to tensor); `path` names it in messages.
    public init(_ value: PickleValue, path: String) throws(CheckpointError) {
        guard let dictionary = value.dictionaryValue else {
            throw CheckpointError(path: path, problem: "expected a state dict (a dict of names to tensors) but the file holds a \(value.kindName)")
        }
        var tensors = NamedTensors()
        var dtypes: [String: TorchDType] = [:]
        for (key, item) in dictionary.entries {
            guard let name = key.stringValue else {
                throw CheckpointError(path: path, problem: "state dict key of type \(key.kindName) is not a string")
            }
            guard let tensor = item.tensorValue else {
                throw CheckpointError(path: path, problem: "state dict entry '\(name)' is a \(item.kindName), not a tensor (a full training checkpoint? load it with TorchCheckpoint.load and pick the state dict)")
            }
            tensors[name] = tensor.tensor
            dtypes[name] = tensor.dtype
        }
        self.tensors = tensors
        self.dtypes = dtypes
    }

    /// (name, shape) of every tensor in file order: the model order that maps optimizer indices to names
    /// (see ``OptimizerParameterMapping``). Note that it includes buffers (e.g. BatchNorm running statistics).
    public var order: [ModelTensorShape] { tensors.names.map { ModelTensorShape(name: $0, shape: tensors[$0]!.shape) } }
}

/// A model tensor's name and shape, in model order.
public struct ModelTensorShape: Sendable, Hashable {
    /// The parameter name, PyTorch style (`fc1.weight`).
    public var name: String
    /// The parameter's shape.
    public var shape: [Int]

    /// Creates a (name, shape) pair.
    public init(name: String, shape: [Int]) {
        self.name = name
        self.shape = shape
    }
}
