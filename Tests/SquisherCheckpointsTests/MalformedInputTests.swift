import Foundation
import SquisherCheckpoints
import Testing

/// Every malformed input must end in a ``CheckpointError`` that says what is wrong (never a crash).
@Suite("Malformed checkpoints")
struct MalformedInputTests {
    static let fixture = "mlp_digits.optimizer.pt"

    /// The fixture's bytes and the offset of its central directory (from the ZIP64 EOCD record).
    func fixture() throws -> (bytes: Data, centralDirectory: Int, zip64Record: Int) {
        let bytes = try Fixture.data(Self.fixture)
        let record = try #require(bytes.lastSignature(0x0606_4B50))
        return (bytes, bytes.u64(at: record + 48), record)
    }

    func load(_ bytes: Data) throws(CheckpointError) { _ = try TorchCheckpoint.load(data: bytes, path: "mutated.pt") }

    @Test func truncatedZip() throws {
        let (bytes, _, _) = try fixture()
        expectError("mutated.pt", "end of central directory") { try load(bytes.prefix(bytes.count / 2)) }
        expectError("too short") { try load(bytes.prefix(10)) }
    }

    @Test func endOfCentralDirectoryMissing() throws {
        var (bytes, _, _) = try fixture()
        let eocd = try #require(bytes.lastSignature(0x0605_4B50))
        bytes.setU32(0, at: eocd)
        expectError("no ZIP end of central directory record") { try load(bytes) }
    }

    @Test func entryOffsetOutOfBounds() throws {
        var (bytes, cd, _) = try fixture()
        bytes.setU32(0x7FFF_FFF0, at: cd + 42)  // first record's local header offset
        expectError("data.pkl", "out of bounds") { try load(bytes) }
    }

    @Test func entrySizeOutOfBounds() throws {
        var (bytes, cd, _) = try fixture()
        bytes.setU32(0x00FF_FFFF, at: cd + 20)  // compressed size
        bytes.setU32(0x00FF_FFFF, at: cd + 24)  // size
        expectError("data.pkl", "out of bounds") { try load(bytes) }
    }

    @Test func overlappingEntries() throws {
        var (bytes, cd, _) = try fixture()
        // Make the first entry claim 2000 bytes: its data now runs into the next local header.
        bytes.setU32(2000, at: cd + 20)
        bytes.setU32(2000, at: cd + 24)
        expectError("overlap") { try load(bytes) }
    }

    @Test func compressedEntry() throws {
        var (bytes, cd, _) = try fixture()
        bytes.setU16(8, at: cd + 10)  // method 8 = deflate
        expectError("'mlp_digits.optimizer/data.pkl'", "compression method 8") { try load(bytes) }
    }

    @Test func entryCountBeyondFile() throws {
        var (bytes, _, record) = try fixture()
        bytes.setU64(1 << 40, at: record + 32)
        expectError("beyond") { try load(bytes) }
        bytes.setU64(10_000, at: record + 32)
        expectError("claims 10000 entries, more than fit") { try load(bytes) }
    }

    @Test func nameNotUTF8() throws {
        var (bytes, cd, _) = try fixture()
        bytes[cd + 46] = 0xFF
        expectError("not valid UTF-8") { try load(bytes) }
    }

    @Test func storageTooSmall() throws {
        let archive = try ZipArchive(data: Fixture.data(Self.fixture), path: "x.pt")
        let pickle = try archive.contents(of: "mlp_digits.optimizer/data.pkl")
        expectError("storage '1'", "bytes but its record says 2048 float32") {
            _ = try RestrictedUnpickler.decode(pickle, path: "x.pkl") { reference throws(CheckpointError) in
                try archive.contents(of: "mlp_digits.optimizer/data/\(reference.key)").dropLast(reference.key == "1" ? 4 : 0)
            }
        }
    }

    @Test func truncatedPickle() throws {
        let archive = try ZipArchive(data: Fixture.data(Self.fixture), path: "x.pt")
        let pickle = try archive.contents(of: "mlp_digits.optimizer/data.pkl")
        for cut in [1, 3, pickle.count / 2, pickle.count - 1] {
            expectError("truncated pickle") {
                _ = try RestrictedUnpickler.decode(pickle.prefix(cut), path: "x.pkl") { reference throws(CheckpointError) in
                    try archive.contents(of: "mlp_digits.optimizer/data/\(reference.key)")
                }
            }
        }
    }

    @Test func unknownOpcode() {
        expectError("opcode 0xFF", "offset 2") { _ = try decode(Data([0x80, 0x02, 0xFF, 0x2E])) }
        // NEWOBJ would instantiate a class: refused unless the format's allow-list names the class.
        var newObject = PickleBuilder()
        newObject.global("collections", "OrderedDict"); newObject.op(0x29); newObject.op(0x81)
        expectError("NEWOBJ of global collections.OrderedDict is not allowed") { _ = try decode(newObject.stopped()) }
    }

    /// A DeepSpeed class is rebuilt as plain data only when the DeepSpeed allow-list is given: the
    /// same pickle is refused as a plain torch.save file, naming the class.
    @Test func allowListIsPerFormat() throws {
        var pickle = PickleBuilder()
        pickle.global("deepspeed.runtime.fp16.loss_scaler", "LossScaler"); pickle.op(0x29); pickle.op(0x81)
        pickle.op(0x7D); pickle.string("cur_scale"); pickle.int(7); pickle.op(0x73); pickle.op(0x62)  // BUILD {'cur_scale': 7}
        expectError("global 'deepspeed.runtime.fp16.loss_scaler.LossScaler' is not allowed when reading a torch.save checkpoint") {
            _ = try decode(pickle.stopped())
        }
        let value = try RestrictedUnpickler.decode(pickle.stopped(), path: "ds.pkl", allowList: .deepSpeed) { _ throws(CheckpointError) in Data() }
        #expect(value["__class__"] == .string("deepspeed.runtime.fp16.loss_scaler.LossScaler"))
        #expect(value["cur_scale"] == .int(7))
        // torch.Size becomes a plain tuple; an unknown class stays refused under the DeepSpeed list.
        var size = PickleBuilder()
        size.global("torch", "Size"); size.mark(); size.intTuple([3, 4]); size.op(0x74); size.op(0x52)
        #expect(try RestrictedUnpickler.decode(size.stopped(), path: "size.pkl", allowList: .deepSpeed) { _ throws(CheckpointError) in Data() } == .tuple([.int(3), .int(4)]))
        var hostile = PickleBuilder()
        hostile.global("os", "system"); hostile.op(0x29); hostile.op(0x81)
        expectError("global 'os.system' is not allowed when reading a DeepSpeed ZeRO checkpoint") {
            _ = try RestrictedUnpickler.decode(hostile.stopped(), path: "x.pkl", allowList: .deepSpeed) { _ throws(CheckpointError) in Data() }
        }
    }

    @Test(arguments: [("os", "system"), ("builtins", "eval"), ("torch", "load"), ("torch._utils", "_rebuild_qtensor"), ("collections", "defaultdict")])
    func disallowedGlobal(module: String, name: String) {
        var pickle = PickleBuilder()
        pickle.global(module, name)
        pickle.mark(); pickle.string("echo pwned"); pickle.op(0x74); pickle.op(0x52)
        expectError("global '\(module).\(name)' is not allowed") { _ = try decode(pickle.stopped()) }
        // The same through STACK_GLOBAL (protocol 4).
        var stack = PickleBuilder()
        stack.string(module); stack.string(name); stack.op(0x93)
        expectError("global '\(module).\(name)' is not allowed") { _ = try decode(stack.stopped()) }
    }

    @Test func recursionBomb() {
        // 100000 nested lists: ]]]...]aaa...a.
        let depth = 100_000
        let pickle = Data([0x80, 0x02] + [UInt8](repeating: 0x5D, count: depth) + [UInt8](repeating: 0x61, count: depth - 1) + [0x2E])
        expectError("nests deeper than 100") { _ = try decode(pickle) }
        // A list that contains itself.
        expectError("refers to itself") { _ = try decode(Data([0x80, 0x02, 0x5D, 0x71, 0x00, 0x68, 0x00, 0x61, 0x2E])) }
    }

    @Test func memoBomb() {
        // L0 = []; L_i = [L_{i-1}] * 16 for 40 levels: 16^40 elements described in ~700 bytes.
        var pickle = PickleBuilder()
        pickle.op(0x5D); pickle.op(0x71); pickle.op(0)
        for level in 1...40 {
            pickle.mark()
            for _ in 0..<16 { pickle.op(0x68); pickle.op(UInt8(level - 1)) }
            pickle.op(0x6C); pickle.op(0x71); pickle.op(UInt8(level))
        }
        expectError("more than 5000000 elements") { _ = try decode(pickle.stopped()) }
        // With limits that allow it, a small shared structure is fine (and counted per occurrence).
        var small = PickleBuilder()
        small.op(0x5D); small.op(0x71); small.op(0)
        small.mark(); small.op(0x68); small.op(0); small.op(0x68); small.op(0); small.op(0x6C)
        #expect((try? decode(small.stopped())) == .list([.list([]), .list([])]))
    }

    @Test func memoSizeLimit() {
        var pickle = PickleBuilder()
        pickle.op(0x4E)
        for i in 0..<20 { pickle.op(0x72); pickle.bytes += (0..<4).map { UInt8((i >> (8 * $0)) & 0xFF) } }
        expectError("memo size limit 10") { _ = try decode(pickle.stopped(), limits: PickleLimits(maxMemoSize: 10)) }
    }

    @Test func stackSizeLimit() {
        let pickle = Data([0x80, 0x02] + [UInt8](repeating: 0x4E, count: 100) + [0x2E])
        expectError("stack size limit 50") { _ = try decode(pickle, limits: PickleLimits(maxStackSize: 50)) }
    }

    @Test func missingMemoEntry() {
        expectError("BINGET 5: no such memo entry") { _ = try decode(Data([0x80, 0x02, 0x68, 0x05, 0x2E])) }
        expectError("LONG_BINGET 7: no such memo entry") { _ = try decode(Data([0x80, 0x02, 0x6A, 7, 0, 0, 0, 0x2E])) }
    }

    @Test func stackUnderflow() {
        expectError("stack underflow", "APPEND") { _ = try decode(Data([0x80, 0x02, 0x61, 0x2E])) }
        expectError("stack underflow", "STOP") { _ = try decode(Data([0x80, 0x02, 0x2E])) }
        expectError("SETITEMS without a preceding MARK") { _ = try decode(Data([0x80, 0x02, 0x7D, 0x75, 0x2E])) }
        // Items below a MARK belong to the outer frame: `] ( a` and `] ( ( t a`-style underflows.
        expectError("stack underflow", "(above the last MARK)") { _ = try decode(Data([0x80, 0x02, 0x5D, 0x28, 0x61, 0x2E])) }
        expectError("TUPLE without a preceding MARK") { _ = try decode(Data([0x80, 0x02, 0x4E, 0x28, 0x28, 0x30, 0x30, 0x30, 0x74, 0x2E])) }
        expectError("needs a list") { _ = try decode(Data([0x80, 0x02, 0x4E, 0x4E, 0x61, 0x2E])) }
    }

    @Test func strideOutOfBounds() {
        var pickle = PickleBuilder()
        pickle.tensor(numel: 4, offset: 0, size: [2, 2], stride: [3, 1])
        let storage = rawBytes([Float](repeating: 1, count: 4))
        expectError("reads element 4 but storage '0' has 4 elements") { _ = try decode(pickle.stopped(), storages: ["0": storage]) }
        var offset = PickleBuilder()
        offset.tensor(numel: 4, offset: 2, size: [3], stride: [1])
        expectError("out of bounds") { _ = try decode(offset.stopped(), storages: ["0": storage]) }
        var rank = PickleBuilder()
        rank.tensor(numel: 4, offset: 0, size: [2, 2], stride: [1])
        expectError("different ranks") { _ = try decode(rank.stopped(), storages: ["0": storage]) }
    }

    /// Views are bounded by their storage: at most `maxViewExpansion` (16) times its elements, with
    /// a floor of 4096, so a 1.5 KB file cannot make the reader allocate gigabytes
    /// (`torch.ones(1).expand(32768, 32768)`); and by `maxTensorScalars` over a load.
    @Test func zeroStrideViewsAreBounded() throws {
        var pickle = PickleBuilder()
        pickle.tensor(numel: 1, offset: 0, size: [1 << 20, 1 << 20], stride: [0, 0])
        expectError("storage only 1", "maxViewExpansion") { _ = try decode(pickle.stopped(), storages: ["0": rawBytes([Float(1)])]) }
        var over = PickleBuilder()
        over.tensor(numel: 300, offset: 0, size: [16 * 300 + 1], stride: [0])
        expectError("maxViewExpansion") { _ = try decode(over.stopped(), storages: ["0": rawBytes([Float](repeating: 2, count: 300))]) }
        var small = PickleBuilder()  // within the floor: materialized, every element the storage's one value
        small.tensor(numel: 1, offset: 0, size: [64, 64], stride: [0, 0])
        guard case .tensor(let tensor) = try decode(small.stopped(), storages: ["0": rawBytes([Float(3)])]) else {
            Issue.record("expected a tensor")
            return
        }
        #expect(tensor.tensor.shape == [64, 64] && tensor.tensor.scalars.allSatisfy { $0 == 3 })
        var total = PickleBuilder()
        total.tensor(numel: 1 << 12, offset: 0, size: [1 << 12, 16], stride: [1, 0])
        expectError("maxTensorScalars") {
            _ = try decode(total.stopped(), storages: ["0": rawBytes([Float](repeating: 1, count: 1 << 12))], limits: PickleLimits(maxTensorScalars: 1 << 15))
        }
    }

    @Test func storageDescribedTwiceDifferently() {
        var pickle = PickleBuilder()
        pickle.mark()
        pickle.tensor(numel: 4, offset: 0, size: [4], stride: [1])
        pickle.tensor(storageClass: "DoubleStorage", numel: 2, offset: 0, size: [2], stride: [1])
        pickle.op(0x74)
        expectError("described twice differently") { _ = try decode(pickle.stopped(), storages: ["0": Data(count: 16)]) }
    }
}
