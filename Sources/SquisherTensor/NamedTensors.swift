/// An ordered collection of tensors keyed by name: a state dict.
///
/// Names follow PyTorch (`0.weight`, `fc1.bias`, `exp_avg/0.weight`); order is insertion order,
/// which for model parameters is PyTorch's registration order. Lookups by name are O(1).
public struct NamedTensors: Sendable, Equatable, Sequence {
    /// Names in order.
    public private(set) var names: [String] = []
    /// Tensors by name.
    public private(set) var tensors: [String: Tensor] = [:]

    /// An empty collection.
    public init() {}

    /// A collection from ordered (name, tensor) pairs.
    /// - Throws: ``TensorError/invalidArgument(argument:reason:)`` on a repeated name.
    public init(_ pairs: [(String, Tensor)]) throws(TensorError) {
        for (name, tensor) in pairs {
            guard tensors[name] == nil else {
                throw .invalidArgument(argument: "tensor name '\(name)'", reason: "names must be unique")
            }
            names.append(name)
            tensors[name] = tensor
        }
    }

    /// The number of tensors.
    public var count: Int { names.count }
    /// The total number of scalars over all tensors.
    public var scalarCount: Int { tensors.values.reduce(0) { $0 + $1.count } }

    /// The tensor with this name, or `nil`. Setting a new name appends it; setting `nil` removes it.
    public subscript(name: String) -> Tensor? {
        get { tensors[name] }
        set {
            if let newValue {
                if tensors.updateValue(newValue, forKey: name) == nil { names.append(name) }
            } else if tensors.removeValue(forKey: name) != nil {
                names.removeAll { $0 == name }
            }
        }
    }

    /// The tensor with this name.
    /// - Throws: ``TensorError/invalidArgument(argument:reason:)`` naming the missing tensor.
    public func tensor(named name: String) throws(TensorError) -> Tensor {
        guard let tensor = tensors[name] else {
            throw .invalidArgument(argument: "tensor '\(name)'", reason: "not present (have: \(names.prefix(8).joined(separator: ", "))\(names.count > 8 ? ", ..." : ""))")
        }
        return tensor
    }

    public func makeIterator() -> some IteratorProtocol<(name: String, tensor: Tensor)> {
        var index = 0
        let names = self.names, tensors = self.tensors
        return AnyIterator {
            guard index < names.count else { return nil }
            defer { index += 1 }
            return (names[index], tensors[names[index]]!)
        }
    }

    /// Applies `transform` to every tensor, keeping names and order.
    public func mapTensors(_ transform: (String, Tensor) throws -> Tensor) rethrows -> NamedTensors {
        var result = self
        for name in names { result.tensors[name] = try transform(name, tensors[name]!) }
        return result
    }
}
