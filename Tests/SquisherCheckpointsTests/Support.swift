import Foundation
import Testing
import SquisherCheckpoints
import SquisherTensor

/// Test resources copied from ../shared/oracles/checkpoints (PyTorch 2.13 CPU fixtures).
enum Fixture {
    static func url(_ file: String) throws -> URL {
        let base = (file as NSString).deletingPathExtension, ext = (file as NSString).pathExtension
        guard let url = Bundle.module.url(forResource: base, withExtension: ext, subdirectory: "Resources") else {
            throw CheckpointError(path: file, problem: "test resource missing")
        }
        return url
    }

    static func data(_ file: String) throws -> Data { try Data(contentsOf: url(file)) }

    static func json(_ file: String) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: data(file)) as! [String: Any]
    }
}

/// Little-endian field access for mutating zip bytes in tests.
extension Data {
    func u32(at offset: Int) -> Int {
        (0..<4).reduce(0) { $0 | Int(self[startIndex + offset + $1]) << (8 * $1) }
    }

    func u64(at offset: Int) -> Int {
        (0..<8).reduce(0) { $0 | Int(self[startIndex + offset + $1]) << (8 * $1) }
    }

    mutating func setU16(_ value: Int, at offset: Int) {
        for i in 0..<2 { self[startIndex + offset + i] = UInt8((value >> (8 * i)) & 0xFF) }
    }

    mutating func setU32(_ value: Int, at offset: Int) {
        for i in 0..<4 { self[startIndex + offset + i] = UInt8((value >> (8 * i)) & 0xFF) }
    }

    mutating func setU64(_ value: Int, at offset: Int) {
        for i in 0..<8 { self[startIndex + offset + i] = UInt8((value >> (8 * i)) & 0xFF) }
    }

    /// Offset of the last occurrence of `signature` (little-endian u32).
    func lastSignature(_ signature: UInt32) -> Int? {
        stride(from: count - 4, through: 0, by: -1).first { UInt32(u32(at: $0)) == signature }
    }
}

/// Builds pickle bytes opcode by opcode (protocol 2 opcodes, as torch.save writes them).
struct PickleBuilder {
    var bytes: [UInt8] = [0x80, 0x02]

    mutating func op(_ byte: UInt8) { bytes.append(byte) }
    mutating func raw(_ text: String) { bytes += Array(text.utf8) }
    mutating func global(_ module: String, _ name: String) { op(0x63); raw("\(module)\n\(name)\n") }
    mutating func string(_ s: String) {
        let utf8 = Array(s.utf8)
        op(0x58)
        bytes += (0..<4).map { UInt8((utf8.count >> (8 * $0)) & 0xFF) }
        bytes += utf8
    }
    mutating func int(_ i: Int) {
        if (0..<256).contains(i) { op(0x4B); op(UInt8(i)) } else {
            op(0x4A)
            bytes += (0..<4).map { UInt8(truncatingIfNeeded: i >> (8 * $0)) }
        }
    }
    mutating func intTuple(_ values: [Int]) { op(0x28); for v in values { int(v) }; op(0x74) }
    mutating func mark() { op(0x28) }

    /// `_rebuild_tensor_v2(storage(key, class, numel), offset, size, stride, False, OrderedDict())`.
    mutating func tensor(storageClass: String = "FloatStorage", key: String = "0", numel: Int, offset: Int, size: [Int], stride: [Int]) {
        global("torch._utils", "_rebuild_tensor_v2")
        mark()
        mark(); string("storage"); global("torch", storageClass); string(key); string("cpu"); int(numel); op(0x74)
        op(0x51)  // BINPERSID
        int(offset); intTuple(size); intTuple(stride)
        op(0x89)  // NEWFALSE
        global("collections", "OrderedDict"); op(0x29); op(0x52)
        op(0x74)
        op(0x52)
    }

    var data: Data { Data(bytes) }
    func stopped() -> Data { Data(bytes + [0x2E]) }
}

/// Decodes a pickle whose storages are given in memory.
func decode(_ pickle: Data, storages: [String: Data] = [:], limits: PickleLimits = PickleLimits()) throws(CheckpointError) -> PickleValue {
    try RestrictedUnpickler.decode(pickle, path: "test.pkl", limits: limits) { reference throws(CheckpointError) in
        guard let data = storages[reference.key] else { throw CheckpointError(path: "test.pkl", problem: "no storage '\(reference.key)'") }
        return data
    }
}

/// Raw little-endian bytes of values.
func rawBytes<T>(_ values: [T]) -> Data { values.withUnsafeBufferPointer { Data(buffer: $0) } }

/// Expects `body` to throw a ``CheckpointError`` whose description contains every fragment.
func expectError(_ fragments: String..., sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void) {
    let error = #expect(throws: CheckpointError.self, sourceLocation: sourceLocation) { try body() }
    for fragment in fragments {
        #expect(error?.description.contains(fragment) == true, "'\(fragment)' not in: \(String(describing: error))", sourceLocation: sourceLocation)
    }
}
