import Foundation
import SquisherCheckpoints
import SquisherTensor
import Testing

/// Tensors rebuilt from hand-made pickles, compared with values worked out by hand (exact: every
/// value is representable in float32, so the tolerance is zero).
@Suite("Tensor rebuilding")
struct TensorRebuildTests {
    @Test func transposedStridesAreGathered() throws {
        // Storage [1, 2, 3, 4, 5, 6]; size (3, 2) with stride (1, 3) is the transpose of [[1,2,3],[4,5,6]].
        var pickle = PickleBuilder()
        pickle.tensor(numel: 6, offset: 0, size: [3, 2], stride: [1, 3])
        let value = try decode(pickle.stopped(), storages: ["0": rawBytes([Float](arrayLiteral: 1, 2, 3, 4, 5, 6))])
        let tensor = try #require(value.tensorValue)
        #expect(tensor.shape == [3, 2])
        #expect(tensor.tensor.scalars == [1, 4, 2, 5, 3, 6])
    }

    @Test func offsetAndSharedStorage() throws {
        // Two views of one storage (as tied weights or slices are saved): [2, 3] and [[4], [6]].
        var pickle = PickleBuilder()
        pickle.mark()
        pickle.tensor(numel: 6, offset: 1, size: [2], stride: [1])
        pickle.tensor(numel: 6, offset: 3, size: [2, 1], stride: [2, 1])
        pickle.op(0x74)
        let value = try decode(pickle.stopped(), storages: ["0": rawBytes([Float](arrayLiteral: 1, 2, 3, 4, 5, 6))])
        let items = try #require(value.elements)
        #expect(items[0].tensorValue?.tensor.scalars == [2, 3])
        #expect(items[1].tensorValue?.tensor.scalars == [4, 6])
        #expect(items[1].tensorValue?.shape == [2, 1])
    }

    @Test func zeroDimAndEmptyTensors() throws {
        var pickle = PickleBuilder()
        pickle.mark()
        pickle.tensor(numel: 1, offset: 0, size: [], stride: [])
        pickle.tensor(key: "1", numel: 0, offset: 0, size: [0, 5], stride: [5, 1])
        pickle.op(0x74)
        let value = try decode(pickle.stopped(), storages: ["0": rawBytes([Float(7.5)]), "1": Data()])
        let items = try #require(value.elements)
        #expect(items[0].tensorValue?.tensor.scalars == [7.5] && items[0].tensorValue?.shape == [])
        #expect(items[1].tensorValue?.shape == [0, 5] && items[1].tensorValue?.tensor.count == 0)
    }

    @Test func otherDtypesConvert() throws {
        let cases: [(String, Data, [Float], TorchDType)] = [
            ("DoubleStorage", rawBytes([Double](arrayLiteral: 0.5, -2, 1e-3)), [0.5, -2, Float(1e-3)], .float64),
            ("LongStorage", rawBytes([Int64](arrayLiteral: -3, 0, 1 << 20)), [-3, 0, Float(1 << 20)], .int64),
            ("IntStorage", rawBytes([Int32](arrayLiteral: 7, -8, 9)), [7, -8, 9], .int32),
            // float16: 0x3C00 = 1, 0xC000 = -2, 0x0001 = 2^-24 (smallest subnormal).
            ("HalfStorage", rawBytes([UInt16](arrayLiteral: 0x3C00, 0xC000, 0x0001)), [1, -2, 0x1p-24], .float16),
            // bfloat16: the high half of float32 1.5 (0x3FC0_0000), -1, 0.
            ("BFloat16Storage", rawBytes([UInt16](arrayLiteral: 0x3FC0, 0xBF80, 0)), [1.5, -1, 0], .bfloat16),
            ("BoolStorage", Data([1, 0, 1]), [1, 0, 1], .bool),
            ("CharStorage", Data([0xFF, 0x7F, 0]), [-1, 127, 0], .int8),
        ]
        for (storageClass, bytes, expected, dtype) in cases {
            var pickle = PickleBuilder()
            pickle.tensor(storageClass: storageClass, numel: 3, offset: 0, size: [3], stride: [1])
            let tensor = try #require(try decode(pickle.stopped(), storages: ["0": bytes]).tensorValue)
            #expect(tensor.tensor.scalars == expected, "\(storageClass)")
            #expect(tensor.dtype == dtype)
        }
    }

    @Test func rebuildParameterAndProtocol4Opcodes() throws {
        // Protocol 4 style: FRAME, SHORT_BINUNICODE, MEMOIZE, STACK_GLOBAL, LONG1, _rebuild_parameter.
        var pickle = PickleBuilder()
        pickle.bytes = [0x80, 0x04, 0x95] + [UInt8](repeating: 0, count: 8)
        pickle.op(0x8C); pickle.op(12); pickle.raw("torch._utils")
        pickle.op(0x94)
        pickle.op(0x8C); pickle.op(18); pickle.raw("_rebuild_parameter")
        pickle.op(0x93)
        pickle.mark()
        pickle.tensor(numel: 2, offset: 0, size: [2], stride: [1])
        pickle.op(0x88)
        pickle.global("collections", "OrderedDict"); pickle.op(0x29); pickle.op(0x52)
        pickle.op(0x74); pickle.op(0x52)
        let value = try decode(pickle.stopped(), storages: ["0": rawBytes([Float](arrayLiteral: 3, 4))])
        #expect(value.tensorValue?.tensor.scalars == [3, 4])
        // LONG1 of -2^40 and 2^63-1; BININT of -5.
        let ints = Data([0x80, 0x02, 0x28, 0x8A, 6, 0, 0, 0, 0, 0, 0xFF, 0x8A, 8, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F, 0x4A, 0xFB, 0xFF, 0xFF, 0xFF, 0x74, 0x2E])
        #expect(try decode(ints) == .tuple([.int(-(1 << 40)), .int(Int.max), .int(-5)]))
    }
}
