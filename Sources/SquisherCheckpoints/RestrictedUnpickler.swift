import Foundation
import SquisherTensor

/// A restricted reader of Python pickles (protocols 2 to 5) as written by `torch.save`, which builds
/// only plain data (``PickleValue``) and tensors and **never executes anything**.
///
/// Supported opcodes: `PROTO FRAME STOP MARK POP POP_MARK DUP NONE NEWTRUE NEWFALSE INT BININT BININT1
/// BININT2 LONG1 LONG4 FLOAT BINFLOAT BINUNICODE SHORT_BINUNICODE BINUNICODE8 BINBYTES SHORT_BINBYTES
/// BINBYTES8 EMPTY_LIST APPEND APPENDS LIST EMPTY_TUPLE TUPLE TUPLE1 TUPLE2 TUPLE3 EMPTY_DICT DICT
/// SETITEM SETITEMS BINPUT LONG_BINPUT MEMOIZE BINGET LONG_BINGET GLOBAL STACK_GLOBAL REDUCE BUILD NEWOBJ NEWOBJ_EX
/// BINPERSID`. Any other opcode is an error naming its byte (hex) and offset.
///
/// Allowed globals (anything else is refused with an error naming `module.name`):
/// - `collections.OrderedDict`, called with no arguments (`REDUCE` with `()`); `BUILD` on it (the
///   `_metadata` attribute of a `state_dict()`) is accepted and ignored;
/// - `torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad,
///   backward_hooks[, metadata])`: a tensor; offsets and strides in elements;
/// - `torch._utils._rebuild_parameter(data, requires_grad, backward_hooks)`: the tensor `data`;
/// - `torch.<T>Storage` for the ``TorchDType`` storage classes, only inside a `BINPERSID` persistent id
///   `('storage', torch.<T>Storage, key, location, numel)`.
///
/// Tensors are views of their storage bytes, converted when read (``TorchTensor``): the bytes come
/// from `storageBytes` (for a checkpoint, the archive entry `<prefix>/data/<key>`, memory-mapped),
/// whose size must equal `numel * dtype size`; size, stride and offset must address only elements
/// inside the storage (checked at decode); non-contiguous strides are gathered into row-major order. Limits (``PickleLimits``) bound stack, memo, nesting and total elements.
///
/// Classes of a specific format (DeepSpeed's, DCP's metadata) are accepted only when that format's
/// ``PickleAllowList`` is passed, and are rebuilt as plain data (`NEWOBJ`/`NEWOBJ_EX` and `BUILD` on
/// them), never executed.
public enum RestrictedUnpickler {
    /// Decodes `pickle` (the bytes of a `data.pkl`).
    /// - Parameters:
    ///   - path: names the source in error messages (e.g. `"model.pt:archive/data.pkl"`).
    ///   - storageBytes: returns the raw little-endian bytes of a storage; called once per distinct key.
    /// - Throws: ``CheckpointError`` naming the offset and problem.
    ///   - allowList: the format's extra classes (default: plain `torch.save`, none).
    public static func decode(
        _ pickle: Data, path: String, limits: PickleLimits = PickleLimits(), allowList: PickleAllowList = .torchSave,
        storageBytes: (TorchStorageReference) throws(CheckpointError) -> Data
    ) throws(CheckpointError) -> PickleValue {
        try decode(pickle, path: path, limits: limits, allowList: allowList, storageFile: nil, storageBytes: storageBytes)
    }

    /// As the public `decode`, with storages that lie in `storageFile`'s mapping (their tensors can
    /// then release their pages, ``TorchTensor/releasePages()``).
    static func decode(
        _ pickle: Data, path: String, limits: PickleLimits = PickleLimits(), allowList: PickleAllowList, storageFile: MappedFile?,
        storageBytes: (TorchStorageReference) throws(CheckpointError) -> Data
    ) throws(CheckpointError) -> PickleValue {
        var machine = _PickleMachine(bytes: [UInt8](pickle), path: path, limits: limits)
        machine.allowList = allowList
        machine.storageFile = storageFile
        return try machine.run(storageBytes: storageBytes)
    }
}

/// A node of the unpickler's arena. Containers refer to their children by arena index, so shared
/// (memoized) containers stay shared while they are filled, and nothing is released recursively.
enum _PickleNode {
    case leaf(PickleValue)
    case list([Int])
    case tuple([Int])
    case dict(keys: [Int], values: [Int], ordered: Bool)
    case global(module: String, name: String)
    case storage(TorchStorageReference)
}

struct _PickleMachine {
    let bytes: [UInt8]
    let path: String
    let limits: PickleLimits
    var position = 0
    var opcodeOffset = 0
    var nodes: [_PickleNode] = []
    var stack: [Int] = []
    var marks: [Int] = []
    var memo: [Int: Int] = [:]
    var elementsAdded = 0
    var tensorScalars = 0
    var storages: [String: (reference: TorchStorageReference, data: Data)] = [:]
    var allowList = PickleAllowList.torchSave
    var storageFile: MappedFile?
    /// Dictionary nodes that stand for a rebuilt allowed object (they may be dictionary keys, and take `BUILD`).
    var objectNodes = Set<Int>()

    init(bytes: [UInt8], path: String, limits: PickleLimits) {
        self.bytes = bytes
        self.path = path
        self.limits = limits
    }

    func fail(_ problem: String) -> CheckpointError {
        CheckpointError(path: path, problem: "pickle offset \(opcodeOffset): \(problem)")
    }

    // MARK: Reading arguments

    mutating func take(_ count: Int, for what: String) throws(CheckpointError) -> ArraySlice<UInt8> {
        guard count >= 0, count <= bytes.count - position else {
            throw fail("truncated pickle: \(what) needs \(count) bytes but only \(bytes.count - position) remain")
        }
        defer { position += count }
        return bytes[position..<(position + count)]
    }

    mutating func unsignedLE(_ count: Int, for what: String) throws(CheckpointError) -> UInt64 {
        let slice = try take(count, for: what)
        var value: UInt64 = 0
        for (i, byte) in slice.enumerated() { value |= UInt64(byte) << (8 * UInt64(i)) }
        return value
    }

    mutating func length(_ count: Int, for what: String) throws(CheckpointError) -> Int {
        let value = try unsignedLE(count, for: what)
        guard value <= UInt64(bytes.count - position) else {
            throw fail("truncated pickle: \(what) of \(value) bytes but only \(bytes.count - position) remain")
        }
        return Int(value)
    }

    mutating func line(for what: String) throws(CheckpointError) -> String {
        guard let newline = bytes[position...].prefix(1024).firstIndex(of: 0x0A) else {
            throw fail("truncated pickle: \(what) has no newline within 1024 bytes")
        }
        guard let text = String(validating: bytes[position..<newline], as: UTF8.self) else {
            throw fail("\(what) is not valid UTF-8")
        }
        position = newline + 1
        return text
    }

    mutating func utf8(_ count: Int, for what: String) throws(CheckpointError) -> String {
        let slice = try take(count, for: what)
        guard let text = String(validating: slice, as: UTF8.self) else { throw fail("\(what) is not valid UTF-8") }
        return text
    }

    /// Two's-complement little-endian integer of `count` bytes (LONG1/LONG4), at most 64 bits.
    mutating func signedLE(_ count: Int, for what: String) throws(CheckpointError) -> Int {
        let slice = try take(count, for: what)
        guard count <= 8 else {
            // Python writes the minimal length, but accept sign-extension padding.
            let high = slice.dropFirst(8)
            let fill: UInt8 = (slice[slice.startIndex + 7] & 0x80) != 0 ? 0xFF : 0
            guard high.allSatisfy({ $0 == fill }) else { throw fail("\(what): integer wider than 64 bits is not supported") }
            return signed(slice.prefix(8))
        }
        return count == 0 ? 0 : signed(slice)
    }

    private func signed(_ slice: ArraySlice<UInt8>) -> Int {
        var value: UInt64 = 0
        for (i, byte) in slice.enumerated() { value |= UInt64(byte) << (8 * UInt64(i)) }
        let bits = UInt64(slice.count * 8)
        if bits < 64, value & (1 << (bits - 1)) != 0 { value |= ~0 << bits }  // sign-extend
        return Int(Int64(bitPattern: value))
    }

    // MARK: Stack

    mutating func push(_ node: _PickleNode) throws(CheckpointError) {
        nodes.append(node)
        try pushIndex(nodes.count - 1)
    }

    mutating func pushIndex(_ index: Int) throws(CheckpointError) {
        guard stack.count + marks.count < limits.maxStackSize else {
            throw fail("stack size limit \(limits.maxStackSize) exceeded")
        }
        stack.append(index)
    }

    /// Items below the most recent MARK belong to an outer frame and cannot be popped (Python keeps
    /// them on a separate metastack).
    var frameFloor: Int { marks.last ?? 0 }

    mutating func pop(_ name: String) throws(CheckpointError) -> Int {
        guard stack.count > frameFloor, let top = stack.popLast() else {
            throw fail("stack underflow: \(name) needs an item but the stack\(marks.isEmpty ? "" : " (above the last MARK)") is empty")
        }
        return top
    }

    func top(_ name: String) throws(CheckpointError) -> Int {
        guard stack.count > frameFloor, let top = stack.last else {
            throw fail("stack underflow: \(name) needs an item but the stack\(marks.isEmpty ? "" : " (above the last MARK)") is empty")
        }
        return top
    }

    /// Pops everything above the most recent MARK (and the MARK).
    mutating func popMark(_ name: String) throws(CheckpointError) -> [Int] {
        guard let mark = marks.popLast() else { throw fail("\(name) without a preceding MARK") }
        let items = Array(stack[mark...])
        stack.removeSubrange(mark...)
        return items
    }

    mutating func countElements(_ count: Int) throws(CheckpointError) {
        elementsAdded += count
        guard elementsAdded <= limits.maxTotalElements else {
            throw fail("more than \(limits.maxTotalElements) container elements (limit maxTotalElements)")
        }
    }

    // MARK: Node access

    func string(_ index: Int) -> String? {
        if case .leaf(.string(let s)) = nodes[index] { return s }
        return nil
    }

    func int(_ index: Int) -> Int? {
        if case .leaf(let value) = nodes[index] { return value.intValue }
        return nil
    }

    func tupleItems(_ index: Int) -> [Int]? {
        switch nodes[index] {
        case .tuple(let items), .list(let items): items
        default: nil
        }
    }

    func kind(_ index: Int) -> String {
        switch nodes[index] {
        case .leaf(let value): value.kindName
        case .list: "list"
        case .tuple: "tuple"
        case .dict(_, _, let ordered): ordered ? "OrderedDict" : "dict"
        case .global(let module, let name): "global \(module).\(name)"
        case .storage(let s): "storage '\(s.key)'"
        }
    }

    // MARK: Globals

    static let allowedGlobalsText = "collections.OrderedDict, torch._utils._rebuild_tensor_v2, torch._utils._rebuild_parameter, torch.<T>Storage (FloatStorage, DoubleStorage, HalfStorage, BFloat16Storage, LongStorage, IntStorage, ShortStorage, CharStorage, ByteStorage, BoolStorage)"

    mutating func pushGlobal(module: String, name: String) throws(CheckpointError) {
        let allowed: Bool
        switch (module, name) {
        case ("collections", "OrderedDict"), ("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_parameter"):
            allowed = true
        case ("torch", let storage):
            allowed = TorchDType(storageClass: storage) != nil
        default:
            allowed = false
        }
        let qualified = "\(module).\(name)"
        guard allowed || allowList.dataClasses.contains(qualified) || allowList.tupleClasses.contains(qualified)
            || allowList.constants.contains(qualified)
            || (allowList.tensorsWithAttributes && PickleAllowList.tensorWithAttributesGlobals.contains(qualified)) else {
            throw fail("global '\(qualified)' is not allowed when reading a \(allowList.formatName); this reader never imports or calls anything but \(Self.allowedGlobalsText)\(allowList.allowedText)")
        }
        try push(.global(module: module, name: name))
    }

    // MARK: The machine

    mutating func run(storageBytes: (TorchStorageReference) throws(CheckpointError) -> Data) throws(CheckpointError) -> PickleValue {
        while position < bytes.count {
            opcodeOffset = position
            let opcode = bytes[position]
            position += 1
            switch opcode {
            case 0x80:  // PROTO
                let version = try take(1, for: "PROTO")[position - 1]
                guard version <= 5 else { throw fail("unsupported pickle protocol \(version) (expected 0 to 5)") }
            case 0x95:  // FRAME: a framing hint; the frame's opcodes follow inline.
                _ = try unsignedLE(8, for: "FRAME length")
            case 0x2E:  // STOP
                let result = try pop("STOP")
                var cache: [Int: (value: PickleValue, size: Int)] = [:]
                return try freeze(result, depth: 0, cache: &cache).value
            case 0x28:  // MARK
                guard stack.count + marks.count < limits.maxStackSize else {
                    throw fail("stack size limit \(limits.maxStackSize) exceeded")
                }
                marks.append(stack.count)
            case 0x30:  // POP
                if stack.count > frameFloor { stack.removeLast() } else { _ = try popMark("POP") }
            case 0x31:  // POP_MARK
                _ = try popMark("POP_MARK")
            case 0x32:  // DUP
                try pushIndex(try top("DUP"))
            case 0x4E: try push(.leaf(.none))  // NONE
            case 0x88: try push(.leaf(.bool(true)))  // NEWTRUE
            case 0x89: try push(.leaf(.bool(false)))  // NEWFALSE
            case 0x49:  // INT (text)
                let text = try line(for: "INT")
                if text == "00" { try push(.leaf(.bool(false))) } else if text == "01" { try push(.leaf(.bool(true))) } else {
                    guard let value = Int(text) else { throw fail("INT argument '\(text.prefix(40))' is not a 64-bit integer") }
                    try push(.leaf(.int(value)))
                }
            case 0x4A:  // BININT
                try push(.leaf(.int(try signedLE(4, for: "BININT"))))
            case 0x4B:  // BININT1
                try push(.leaf(.int(Int(try unsignedLE(1, for: "BININT1")))))
            case 0x4D:  // BININT2
                try push(.leaf(.int(Int(try unsignedLE(2, for: "BININT2")))))
            case 0x8A:  // LONG1
                let count = Int(try unsignedLE(1, for: "LONG1 length"))
                try push(.leaf(.int(try signedLE(count, for: "LONG1"))))
            case 0x8B:  // LONG4
                let count = try length(4, for: "LONG4")
                try push(.leaf(.int(try signedLE(count, for: "LONG4"))))
            case 0x46:  // FLOAT (text)
                let text = try line(for: "FLOAT")
                guard let value = Double(text) else { throw fail("FLOAT argument '\(text.prefix(40))' is not a number") }
                try push(.leaf(.float(value)))
            case 0x47:  // BINFLOAT: 8-byte big-endian IEEE double
                let slice = try take(8, for: "BINFLOAT")
                var bits: UInt64 = 0
                for byte in slice { bits = bits << 8 | UInt64(byte) }
                try push(.leaf(.float(Double(bitPattern: bits))))
            case 0x58:  // BINUNICODE
                let count = try length(4, for: "BINUNICODE")
                try push(.leaf(.string(try utf8(count, for: "BINUNICODE"))))
            case 0x8C:  // SHORT_BINUNICODE
                let count = try length(1, for: "SHORT_BINUNICODE")
                try push(.leaf(.string(try utf8(count, for: "SHORT_BINUNICODE"))))
            case 0x8D:  // BINUNICODE8
                let count = try length(8, for: "BINUNICODE8")
                try push(.leaf(.string(try utf8(count, for: "BINUNICODE8"))))
            case 0x42:  // BINBYTES
                let count = try length(4, for: "BINBYTES")
                try push(.leaf(.bytes(Array(try take(count, for: "BINBYTES")))))
            case 0x43:  // SHORT_BINBYTES
                let count = try length(1, for: "SHORT_BINBYTES")
                try push(.leaf(.bytes(Array(try take(count, for: "SHORT_BINBYTES")))))
            case 0x8E:  // BINBYTES8
                let count = try length(8, for: "BINBYTES8")
                try push(.leaf(.bytes(Array(try take(count, for: "BINBYTES8")))))
            case 0x5D: try push(.list([]))  // EMPTY_LIST
            case 0x29: try push(.tuple([]))  // EMPTY_TUPLE
            case 0x7D: try push(.dict(keys: [], values: [], ordered: false))  // EMPTY_DICT
            case 0x6C:  // LIST
                let items = try popMark("LIST")
                try countElements(items.count)
                try push(.list(items))
            case 0x74:  // TUPLE
                let items = try popMark("TUPLE")
                try countElements(items.count)
                try push(.tuple(items))
            case 0x85, 0x86, 0x87:  // TUPLE1, TUPLE2, TUPLE3
                let count = Int(opcode - 0x84)
                var items = [Int](repeating: 0, count: count)
                for i in stride(from: count - 1, through: 0, by: -1) { items[i] = try pop("TUPLE\(count)") }
                try countElements(count)
                try push(.tuple(items))
            case 0x64:  // DICT
                let items = try popMark("DICT")
                guard items.count % 2 == 0 else { throw fail("DICT needs key/value pairs but found \(items.count) items") }
                try countElements(items.count)
                try push(.dict(keys: stride(from: 0, to: items.count, by: 2).map { items[$0] },
                               values: stride(from: 1, to: items.count, by: 2).map { items[$0] }, ordered: false))
            case 0x61:  // APPEND
                let value = try pop("APPEND")
                try append([value], to: try top("APPEND"), name: "APPEND")
            case 0x65:  // APPENDS
                let items = try popMark("APPENDS")
                try append(items, to: try top("APPENDS"), name: "APPENDS")
            case 0x73:  // SETITEM
                let value = try pop("SETITEM"), key = try pop("SETITEM")
                try setItems([key, value], in: try top("SETITEM"), name: "SETITEM")
            case 0x75:  // SETITEMS
                let items = try popMark("SETITEMS")
                guard items.count % 2 == 0 else { throw fail("SETITEMS needs key/value pairs but found \(items.count) items") }
                try setItems(items, in: try top("SETITEMS"), name: "SETITEMS")
            case 0x71:  // BINPUT
                try memoize(Int(try unsignedLE(1, for: "BINPUT")), name: "BINPUT")
            case 0x72:  // LONG_BINPUT
                try memoize(Int(try unsignedLE(4, for: "LONG_BINPUT")), name: "LONG_BINPUT")
            case 0x94:  // MEMOIZE
                try memoize(memo.count, name: "MEMOIZE")
            case 0x68:  // BINGET
                try recall(Int(try unsignedLE(1, for: "BINGET")), name: "BINGET")
            case 0x6A:  // LONG_BINGET
                try recall(Int(try unsignedLE(4, for: "LONG_BINGET")), name: "LONG_BINGET")
            case 0x63:  // GLOBAL
                let module = try line(for: "GLOBAL module"), name = try line(for: "GLOBAL name")
                try pushGlobal(module: module, name: name)
            case 0x93:  // STACK_GLOBAL
                let nameIndex = try pop("STACK_GLOBAL"), moduleIndex = try pop("STACK_GLOBAL")
                guard let module = string(moduleIndex), let name = string(nameIndex) else {
                    throw fail("STACK_GLOBAL needs two strings but found \(kind(moduleIndex)) and \(kind(nameIndex))")
                }
                try pushGlobal(module: module, name: name)
            case 0x52:  // REDUCE
                let arguments = try pop("REDUCE"), callable = try pop("REDUCE")
                try reduce(callable, arguments, storageBytes: storageBytes)
            case 0x62:  // BUILD
                let state = try pop("BUILD"), object = try top("BUILD")
                if objectNodes.contains(object) {
                    try buildObject(object, state: state)
                } else {
                    guard case .dict(_, _, true) = nodes[object] else {
                        throw fail("BUILD (setting object state) is only accepted on an OrderedDict (its _metadata) or an allowed class, not on \(kind(object))")
                    }
                    _ = state  // The OrderedDict's `_metadata` attribute is ignored.
                }
            case 0x81:  // NEWOBJ: cls.__new__(cls, *args) for an allowed data class
                let arguments = try pop("NEWOBJ"), callable = try pop("NEWOBJ")
                try newObject(callable, arguments: arguments, opcode: "NEWOBJ")
            case 0x92:  // NEWOBJ_EX: cls.__new__(cls, *args, **kwargs)
                let keywords = try pop("NEWOBJ_EX"), arguments = try pop("NEWOBJ_EX"), callable = try pop("NEWOBJ_EX")
                try newObject(callable, arguments: arguments, opcode: "NEWOBJ_EX")
                if case .dict(let keys, _, _) = nodes[keywords], !keys.isEmpty { try buildObject(stack.last!, state: keywords) }
            case 0x51:  // BINPERSID
                try persistentLoad(try pop("BINPERSID"))
            default:
                throw fail("unsupported or disallowed pickle opcode 0x\(String(opcode, radix: 16, uppercase: true))\(Self.opcodeNames[opcode].map { " (\($0))" } ?? "")")
            }
        }
        throw fail("truncated pickle: reached the end of the data (\(bytes.count) bytes) without a STOP opcode")
    }

    static let opcodeNames: [UInt8: String] = [
        0x69: "INST", 0x6F: "OBJ", 0x50: "PERSID", 0x53: "STRING",
        0x54: "BINSTRING", 0x55: "SHORT_BINSTRING", 0x56: "UNICODE", 0x4C: "LONG", 0x70: "PUT", 0x67: "GET",
        0x8F: "EMPTY_SET", 0x90: "ADDITEMS", 0x91: "FROZENSET", 0x82: "EXT1", 0x83: "EXT2", 0x84: "EXT4",
        0x96: "BYTEARRAY8", 0x97: "NEXT_BUFFER", 0x98: "READONLY_BUFFER",
    ]

    mutating func memoize(_ key: Int, name: String) throws(CheckpointError) {
        let value = try top(name)
        if memo[key] == nil, memo.count >= limits.maxMemoSize {
            throw fail("memo size limit \(limits.maxMemoSize) exceeded")
        }
        memo[key] = value
    }

    mutating func recall(_ key: Int, name: String) throws(CheckpointError) {
        guard let index = memo[key] else { throw fail("\(name) \(key): no such memo entry") }
        try pushIndex(index)
    }

    mutating func append(_ items: [Int], to target: Int, name: String) throws(CheckpointError) {
        guard case .list(var list) = nodes[target] else {
            throw fail("\(name) needs a list below the items but found \(kind(target))")
        }
        try countElements(items.count)
        nodes[target] = .leaf(.none)  // keep `list` uniquely referenced while it grows
        list.append(contentsOf: items)
        nodes[target] = .list(list)
    }

    mutating func setItems(_ items: [Int], in target: Int, name: String) throws(CheckpointError) {
        guard case .dict(var keys, var values, let ordered) = nodes[target] else {
            throw fail("\(name) needs a dict below the items but found \(kind(target))")
        }
        try countElements(items.count)
        nodes[target] = .leaf(.none)
        for pair in stride(from: 0, to: items.count, by: 2) {
            keys.append(items[pair])
            values.append(items[pair + 1])
        }
        nodes[target] = .dict(keys: keys, values: values, ordered: ordered)
    }

    mutating func persistentLoad(_ pid: Int) throws(CheckpointError) {
        guard let fields = tupleItems(pid), fields.count == 5, string(fields[0]) == "storage" else {
            throw fail("persistent id must be a tuple ('storage', torch.<T>Storage, key, location, numel), found \(kind(pid))")
        }
        guard case .global("torch", let className) = nodes[fields[1]], let dtype = TorchDType(storageClass: className) else {
            throw fail("persistent id storage type must be an allowed torch.<T>Storage class, found \(kind(fields[1]))")
        }
        guard let key = string(fields[2]), let location = string(fields[3]) else {
            throw fail("persistent id key and location must be strings, found \(kind(fields[2])) and \(kind(fields[3]))")
        }
        guard let count = int(fields[4]), count >= 0 else {
            throw fail("persistent id element count of storage '\(key)' must be a non-negative int, found \(kind(fields[4]))")
        }
        try push(.storage(TorchStorageReference(key: key, dtype: dtype, location: location, elementCount: count)))
    }

    // MARK: REDUCE: the allowed calls

    mutating func reduce(_ callable: Int, _ arguments: Int, storageBytes: (TorchStorageReference) throws(CheckpointError) -> Data) throws(CheckpointError) {
        guard case .global(let module, let name) = nodes[callable] else {
            throw fail("REDUCE needs a callable global but found \(kind(callable))")
        }
        guard case .tuple(let args) = nodes[arguments] else {
            throw fail("REDUCE of \(module).\(name) needs an argument tuple but found \(kind(arguments))")
        }
        switch (module, name) {
        case ("collections", "OrderedDict"):
            guard args.isEmpty else {
                throw fail("collections.OrderedDict is only accepted with no arguments (got \(args.count))")
            }
            try push(.dict(keys: [], values: [], ordered: true))
        case ("torch._utils", "_rebuild_parameter"):
            guard args.count >= 1, case .leaf(.tensor) = nodes[args[0]] else {
                throw fail("torch._utils._rebuild_parameter needs a tensor as its first argument")
            }
            try pushIndex(args[0])
        case ("torch._utils", "_rebuild_tensor_v2"):
            try push(.leaf(.tensor(try rebuildTensor(args, storageBytes: storageBytes))))
        case ("torch._tensor", "_rebuild_from_type_v2") where allowList.tensorsWithAttributes:
            // (func, new_type, args, state): only a plain tensor rebuilt by _rebuild_tensor_v2; the state is dropped.
            guard args.count == 4, case .global("torch._utils", "_rebuild_tensor_v2") = nodes[args[0]],
                  case .global(let typeModule, let typeName) = nodes[args[1]],
                  ["torch.Tensor", "torch.nn.parameter.Parameter"].contains("\(typeModule).\(typeName)"),
                  case .tuple(let tensorArguments) = nodes[args[2]] else {
                throw fail("torch._tensor._rebuild_from_type_v2 is only accepted as (torch._utils._rebuild_tensor_v2, torch.Tensor or Parameter, arguments, attributes)")
            }
            try push(.leaf(.tensor(try rebuildTensor(tensorArguments, storageBytes: storageBytes))))
        case _ where allowList.tupleClasses.contains("\(module).\(name)"):
            guard args.count == 1, let items = tupleItems(args[0]) else {
                throw fail("\(module).\(name) is only accepted with one tuple or list argument")
            }
            try countElements(items.count)
            try push(.tuple(items))
        case _ where allowList.dataClasses.contains("\(module).\(name)"):
            try pushObject(module: module, name: name, arguments: arguments)
        default:
            throw fail("\(module).\(name) cannot be called (only collections.OrderedDict, torch._utils._rebuild_tensor_v2 and torch._utils._rebuild_parameter can\(allowList.dataClasses.isEmpty ? "" : ", and for a \(allowList.formatName) the classes \(allowList.dataClasses.sorted().joined(separator: ", ")), rebuilt as plain data"))")
        }
    }

    // MARK: Allowed classes, rebuilt as plain data

    /// `NEWOBJ`: an instance of an allowed data class, as `{"__class__": "module.Name"}` (its state follows in `BUILD`).
    mutating func newObject(_ callable: Int, arguments: Int, opcode: String) throws(CheckpointError) {
        guard case .global(let module, let name) = nodes[callable], allowList.dataClasses.contains("\(module).\(name)") else {
            throw fail("\(opcode) of \(kind(callable)) is not allowed when reading a \(allowList.formatName) (only its data classes \(allowList.dataClasses.sorted()) are rebuilt, as plain data)")
        }
        guard case .tuple(let args) = nodes[arguments] else { throw fail("\(opcode) of \(module).\(name) needs an argument tuple but found \(kind(arguments))") }
        try pushObject(module: module, name: name, arguments: args.isEmpty ? nil : arguments)
    }

    /// Pushes `{"__class__": "module.Name"[, "__args__": arguments]}` and marks it as an object.
    mutating func pushObject(module: String, name: String, arguments: Int?) throws(CheckpointError) {
        nodes.append(.leaf(.string("__class__")))
        let classKey = nodes.count - 1
        nodes.append(.leaf(.string("\(module).\(name)")))
        var keys = [classKey], values = [nodes.count - 1]
        if let arguments {
            nodes.append(.leaf(.string("__args__")))
            keys.append(nodes.count - 1)
            values.append(arguments)
        }
        try countElements(keys.count * 2)
        try push(.dict(keys: keys, values: values, ordered: false))
        objectNodes.insert(nodes.count - 1)
    }

    /// `BUILD` on a rebuilt object: a state dictionary's entries (or `(dict, slots)`) become its
    /// entries; any other state (a `__getstate__` tuple) is kept under `"__state__"`.
    mutating func buildObject(_ object: Int, state: Int) throws(CheckpointError) {
        func isAttributes(_ node: Int) -> Bool {
            switch nodes[node] {
            case .leaf(.none), .dict: true
            default: false
            }
        }
        var parts: [Int] = [state]
        if case .tuple(let items) = nodes[state], items.count == 2, isAttributes(items[0]), isAttributes(items[1]) { parts = items }
        guard parts.allSatisfy(isAttributes) else {
            nodes.append(.leaf(.string("__state__")))
            try setItems([nodes.count - 1, state], in: object, name: "BUILD")
            return
        }
        for part in parts {
            if case .dict(let keys, let values, _) = nodes[part] {
                try setItems(zip(keys, values).flatMap { [$0, $1] }, in: object, name: "BUILD")
            }
        }
    }

    func intTuple(_ index: Int, _ what: String) throws(CheckpointError) -> [Int] {
        guard case .tuple(let items) = nodes[index] else {
            throw fail("_rebuild_tensor_v2: \(what) must be a tuple of ints, found \(kind(index))")
        }
        var values: [Int] = []
        for item in items {
            guard let value = int(item) else { throw fail("_rebuild_tensor_v2: \(what) must be a tuple of ints, found an element of type \(kind(item))") }
            values.append(value)
        }
        return values
    }

    mutating func rebuildTensor(_ args: [Int], storageBytes: (TorchStorageReference) throws(CheckpointError) -> Data) throws(CheckpointError) -> TorchTensor {
        guard (4...7).contains(args.count) else {
            throw fail("_rebuild_tensor_v2 expects (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata]), got \(args.count) arguments")
        }
        guard case .storage(let reference) = nodes[args[0]] else {
            throw fail("_rebuild_tensor_v2: first argument must be a storage (from BINPERSID), found \(kind(args[0]))")
        }
        guard let offset = int(args[1]) else {
            throw fail("_rebuild_tensor_v2: storage_offset must be an int, found \(kind(args[1]))")
        }
        let size = try intTuple(args[2], "size"), stride = try intTuple(args[3], "stride")
        let described = "tensor (storage '\(reference.key)', offset \(offset), size \(size), stride \(stride))"
        guard size.count == stride.count else { throw fail("\(described): size and stride have different ranks") }
        guard offset >= 0, size.allSatisfy({ $0 >= 0 }), stride.allSatisfy({ $0 >= 0 }) else {
            throw fail("\(described): offset, sizes and strides must be non-negative")
        }
        // Element count and the last element addressed, with overflow checks.
        var count = 1, last = offset, overflow = false
        for (extent, step) in zip(size, stride) {
            let product = count.multipliedReportingOverflow(by: extent)
            count = product.partialValue
            overflow = overflow || product.overflow
            if extent > 0 {
                let span = (extent - 1).multipliedReportingOverflow(by: step)
                let sum = last.addingReportingOverflow(span.partialValue)
                last = sum.partialValue
                overflow = overflow || span.overflow || sum.overflow
            }
        }
        guard !overflow else { throw fail("\(described): element count or extent overflows") }
        guard count == 0 || last < reference.elementCount else {
            throw fail("\(described) reads element \(last) but storage '\(reference.key)' has \(reference.elementCount) elements (stride or offset out of bounds)")
        }
        let expanded = reference.elementCount.multipliedReportingOverflow(by: max(limits.maxViewExpansion, 1))
        guard count <= max(4096, expanded.overflow ? Int.max : expanded.partialValue) else {
            throw fail("\(described) has \(count) elements but its storage only \(reference.elementCount); a view may have at most \(limits.maxViewExpansion) times its storage's elements (limit maxViewExpansion; zero strides are not expanded)")
        }
        guard count <= limits.maxTensorScalars - tensorScalars else {
            throw fail("\(described) would bring the scalars materialized to more than \(limits.maxTensorScalars) (limit maxTensorScalars)")
        }
        tensorScalars += count
        let data = try storage(reference, storageBytes: storageBytes)
        return TorchTensor(view: data, dtype: reference.dtype, offset: offset, size: size, stride: stride, file: storageFile)
    }

    mutating func storage(_ reference: TorchStorageReference, storageBytes: (TorchStorageReference) throws(CheckpointError) -> Data) throws(CheckpointError) -> Data {
        if let cached = storages[reference.key] {
            guard cached.reference.dtype == reference.dtype, cached.reference.elementCount == reference.elementCount else {
                throw fail("storage '\(reference.key)' is described twice differently (\(cached.reference.dtype.rawValue) x \(cached.reference.elementCount) vs \(reference.dtype.rawValue) x \(reference.elementCount))")
            }
            return cached.data
        }
        let data = try storageBytes(reference)
        let (expected, overflow) = reference.elementCount.multipliedReportingOverflow(by: reference.dtype.byteCount)
        guard !overflow, data.count == expected else {
            throw fail("storage '\(reference.key)' has \(data.count) bytes but its record says \(reference.elementCount) \(reference.dtype.rawValue) elements (\(overflow ? "overflow" : "\(expected) bytes"))")
        }
        storages[reference.key] = (reference, data)
        return data
    }

    /// Whether (size, stride) address consecutive elements in row-major order.
    static func isContiguous(size: [Int], stride: [Int]) -> Bool {
        var running = 1
        for axis in size.indices.reversed() where size[axis] != 1 {
            if stride[axis] != running { return false }
            running *= size[axis]
        }
        return true
    }

    /// Gathers `count` elements addressed by (offset, size, stride) into row-major float32.
    static func gather(_ data: Data, dtype: TorchDType, offset: Int, size: [Int], stride: [Int], count: Int) -> [Float] {
        guard count > 0 else { return [] }
        let contiguous = isContiguous(size: size, stride: stride)
        return data.withUnsafeBytes { raw -> [Float] in
            [Float](unsafeUninitializedCapacity: count) { out, initialized in
                if contiguous, dtype == .float32 {
                    #if _endian(little)
                    UnsafeMutableRawPointer(out.baseAddress!).copyMemory(from: raw.baseAddress! + offset * 4, byteCount: count * 4)
                    initialized = count
                    return
                    #endif
                }
                if contiguous {
                    for i in 0..<count { out[i] = element(raw, dtype, offset + i) }
                } else {
                    // Odometer over the multi-index, last axis fastest.
                    var index = [Int](repeating: 0, count: size.count)
                    var source = offset
                    for i in 0..<count {
                        out[i] = element(raw, dtype, source)
                        advance(&index, &source, size: size, stride: stride)
                    }
                }
                initialized = count
            }
        }
    }

    /// Steps a row-major multi-index (last axis fastest) and its storage offset to the next element.
    static func advance(_ index: inout [Int], _ source: inout Int, size: [Int], stride: [Int]) {
        var axis = size.count - 1
        while axis >= 0 {
            index[axis] += 1
            source += stride[axis]
            if index[axis] < size[axis] { return }
            source -= stride[axis] * size[axis]
            index[axis] = 0
            axis -= 1
        }
    }

    @inline(__always)
    static func element(_ raw: UnsafeRawBufferPointer, _ dtype: TorchDType, _ index: Int) -> Float {
        switch dtype {
        case .float32: Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: index * 4, as: UInt32.self)))
        case .float64: Float(Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: index * 8, as: UInt64.self))))
        case .float16: halfToFloat(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: index * 2, as: UInt16.self)))
        case .bfloat16: Float(bitPattern: UInt32(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: index * 2, as: UInt16.self))) << 16)
        case .int64: Float(Int64(littleEndian: raw.loadUnaligned(fromByteOffset: index * 8, as: Int64.self)))
        case .int32: Float(Int32(littleEndian: raw.loadUnaligned(fromByteOffset: index * 4, as: Int32.self)))
        case .int16: Float(Int16(littleEndian: raw.loadUnaligned(fromByteOffset: index * 2, as: Int16.self)))
        case .int8: Float(raw.loadUnaligned(fromByteOffset: index, as: Int8.self))
        case .uint8: Float(raw.loadUnaligned(fromByteOffset: index, as: UInt8.self))
        case .bool: raw.loadUnaligned(fromByteOffset: index, as: UInt8.self) != 0 ? 1 : 0
        }
    }

    // MARK: Freezing the arena into values

    /// Converts node `index` to a ``PickleValue``; shared nodes are converted once (`cache`), and each
    /// value's logical size (counting shared values once per occurrence) is bounded.
    func freeze(_ index: Int, depth: Int, cache: inout [Int: (value: PickleValue, size: Int)]) throws(CheckpointError) -> (value: PickleValue, size: Int) {
        if let cached = cache[index] { return cached }
        guard depth < limits.maxNestingDepth else {
            throw fail("result nests deeper than \(limits.maxNestingDepth) levels (limit maxNestingDepth), or refers to itself")
        }
        var size = 1
        func add(_ child: Int) throws(CheckpointError) -> PickleValue {
            let frozen = try freeze(child, depth: depth + 1, cache: &cache)
            size += frozen.size
            guard size <= limits.maxTotalElements else {
                throw fail("result has more than \(limits.maxTotalElements) elements counting repeats of memoized values (limit maxTotalElements)")
            }
            return frozen.value
        }
        let value: PickleValue
        switch nodes[index] {
        case .leaf(let leaf):
            value = leaf
        case .list(let items):
            var values: [PickleValue] = []
            values.reserveCapacity(items.count)
            for item in items { values.append(try add(item)) }
            value = .list(values)
        case .tuple(let items):
            var values: [PickleValue] = []
            values.reserveCapacity(items.count)
            for item in items { values.append(try add(item)) }
            value = .tuple(values)
        case .dict(let keys, let values, let ordered):
            var dictionary = PickleDictionary(isOrderedDict: ordered)
            for (key, item) in zip(keys, values) {
                let frozenKey = try add(key)
                switch frozenKey {
                case .dict where objectNodes.contains(key): break  // a hashable object such as DCP's MetadataIndex
                case .list, .dict: throw fail("dictionary key of type \(frozenKey.kindName) is unhashable")
                default: break
                }
                dictionary[frozenKey] = try add(item)
            }
            value = .dict(dictionary)
        case .global(let module, let name) where allowList.constants.contains("\(module).\(name)"):
            value = .string("\(module).\(name)")
        case .global(let module, let name):
            throw fail("result contains the global \(module).\(name) itself, which is not a value")
        case .storage(let reference):
            throw fail("result contains storage '\(reference.key)' outside a tensor")
        }
        cache[index] = (value, size)
        return (value, size)
    }
}

/// Decodes IEEE binary16 bits to float32 (exact).
@inline(__always)
func halfToFloat(_ bits: UInt16) -> Float {
    let sign: Float = bits & 0x8000 != 0 ? -1 : 1
    let exponent = Int((bits >> 10) & 0x1F)
    let mantissa = Float(bits & 0x3FF)
    switch exponent {
    case 0: return sign * mantissa * 0x1p-24  // zero or subnormal
    case 31: return mantissa == 0 ? sign * .infinity : .nan
    default: return sign * (1 + mantissa * 0x1p-10) * Float(sign: .plus, exponent: exponent - 15, significand: 1)
    }
}
