/// A value decoded by the restricted pickle reader: only plain data and tensors, never an arbitrary
/// Python object.
///
/// Python `int` maps to ``int(_:)`` (values must fit in 64 bits), `float` to ``float(_:)``, `str` to
/// ``string(_:)``, `bytes` to ``bytes(_:)``, `list`/`tuple` to ``list(_:)``/``tuple(_:)``,
/// `dict`/`collections.OrderedDict` to ``dict(_:)`` (insertion-ordered; ``PickleDictionary/isOrderedDict``
/// tells them apart), and a `torch.Tensor` rebuilt by `torch._utils._rebuild_tensor_v2` to ``tensor(_:)``.
public enum PickleValue: Sendable, Hashable {
    /// Python `None`.
    case none
    /// Python `True`/`False`.
    case bool(Bool)
    /// A Python `int` that fits in 64 bits.
    case int(Int)
    /// A Python `float` (IEEE binary64).
    case float(Double)
    /// A Python `str`.
    case string(String)
    /// A Python `bytes`.
    case bytes([UInt8])
    /// A Python `list`.
    case list([PickleValue])
    /// A Python `tuple`.
    case tuple([PickleValue])
    /// A Python `dict` or `collections.OrderedDict`, in insertion order.
    case dict(PickleDictionary)
    /// A `torch.Tensor` converted to float32 (original dtype kept).
    case tensor(TorchTensor)

    /// A short name of the value's kind for messages (`"dict"`, `"tensor"`, ...).
    public var kindName: String {
        switch self {
        case .none: "None"
        case .bool: "bool"
        case .int: "int"
        case .float: "float"
        case .string: "str"
        case .bytes: "bytes"
        case .list: "list"
        case .tuple: "tuple"
        case .dict(let d): d.isOrderedDict ? "OrderedDict" : "dict"
        case .tensor: "tensor"
        }
    }

    /// The integer, for ``int(_:)`` (and `bool`, as Python treats it); otherwise `nil`.
    public var intValue: Int? {
        switch self {
        case .int(let i): i
        case .bool(let b): b ? 1 : 0
        default: nil
        }
    }

    /// The number as `Double`, for ``int(_:)``, ``float(_:)`` and a one-element ``tensor(_:)``; otherwise `nil`.
    public var doubleValue: Double? {
        switch self {
        case .int(let i): Double(i)
        case .float(let d): d
        case .tensor(let t) where t.count == 1: Double(t.floats(0..<1)[0])
        default: nil
        }
    }

    /// The Boolean, for ``bool(_:)``; otherwise `nil`.
    public var boolValue: Bool? {
        if case .bool(let b) = self { return b }
        return nil
    }

    /// The string, for ``string(_:)``; otherwise `nil`.
    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    /// The elements, for ``list(_:)`` and ``tuple(_:)``; otherwise `nil`.
    public var elements: [PickleValue]? {
        switch self {
        case .list(let items), .tuple(let items): items
        default: nil
        }
    }

    /// The dictionary, for ``dict(_:)``; otherwise `nil`.
    public var dictionaryValue: PickleDictionary? {
        if case .dict(let d) = self { return d }
        return nil
    }

    /// The tensor, for ``tensor(_:)``; otherwise `nil`.
    public var tensorValue: TorchTensor? {
        if case .tensor(let t) = self { return t }
        return nil
    }

    /// The value under string key `key` when this is a dictionary; otherwise `nil`.
    public subscript(key: String) -> PickleValue? { dictionaryValue?[.string(key)] }
}

/// An insertion-ordered Python dictionary with ``PickleValue`` keys (Python semantics: assigning an
/// existing key replaces its value and keeps its position).
public struct PickleDictionary: Sendable, Hashable {
    /// Keys in insertion order.
    public private(set) var keys: [PickleValue] = []
    /// Values, parallel to ``keys``.
    public private(set) var values: [PickleValue] = []
    /// Whether the dictionary was a `collections.OrderedDict` (rather than a plain `dict`).
    public var isOrderedDict: Bool
    private var positions: [PickleValue: Int] = [:]

    /// An empty dictionary.
    public init(isOrderedDict: Bool = false) { self.isOrderedDict = isOrderedDict }

    /// The number of entries.
    public var count: Int { keys.count }

    /// The value for `key`; setting replaces an existing value in place or appends a new entry.
    public subscript(key: PickleValue) -> PickleValue? {
        get { positions[key].map { values[$0] } }
        set {
            if let position = positions[key] {
                if let newValue { values[position] = newValue } else { remove(at: position) }
            } else if let newValue {
                positions[key] = keys.count
                keys.append(key)
                values.append(newValue)
            }
        }
    }

    /// (key, value) pairs in insertion order.
    public var entries: Zip2Sequence<[PickleValue], [PickleValue]> { zip(keys, values) }

    private mutating func remove(at position: Int) {
        keys.remove(at: position)
        values.remove(at: position)
        positions = Dictionary(uniqueKeysWithValues: keys.enumerated().map { ($1, $0) })
    }

    public static func == (a: PickleDictionary, b: PickleDictionary) -> Bool {
        a.isOrderedDict == b.isOrderedDict && a.keys == b.keys && a.values == b.values
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(isOrderedDict)
        hasher.combine(keys)
        hasher.combine(values)
    }
}
