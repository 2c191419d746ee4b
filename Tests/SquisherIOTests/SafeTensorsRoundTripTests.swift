import Foundation
import Testing
import SquisherIO
import SquisherTensor

/// Writing then reading every dtype, checked against independent references: Swift's own
/// `Float16` conversion (IEEE round-to-nearest-even, done by the compiler runtime) for F16, the
/// classic bit-level rounding formula for BF16, exact equality where the dtype holds the values.
@Suite("SafeTensors round trips")
struct SafeTensorsRoundTripTests {
    /// Random values spanning many binades, plus edge cases: signed zeros, F16 subnormals, the
    /// largest F16, and exact F16 ties (1 + 2⁻¹¹ rounds down to even 1, 1 + 3·2⁻¹¹ up to 1 + 2⁻⁹).
    static func sampleValues(seed: UInt64, count: Int) -> [Float] {
        var rng = SplitMix64(seed: seed)
        var values: [Float] = [0, -0.0, 1, -1, 0x1p-24, 3 * 0x1p-25, 0x1p-14, 65504, -65504,
                               1 + 0x1p-11, 1 + 3 * 0x1p-11, -(1 + 0x1p-11), 0.1, 1e-7, 1000.5]
        while values.count < count {
            let magnitude = Float(rng.nextNormal()) * Float(ScalarMathHelper.pow2(Int(rng.next() % 20) - 10))
            values.append(magnitude)
        }
        return values
    }

    static func write(_ values: [Float], dtype: SafeTensorsDType, in folder: borrowing TemporaryFolder) throws -> SafeTensorsFile {
        var tensors = NamedTensors()
        tensors["x"] = try Tensor(shape: [values.count / 5, 5], scalars: values)
        let url = folder.file("rt-\(dtype.rawValue).safetensors")
        try SafeTensorsWriter.write(tensors, metadata: ["dtype": dtype.rawValue], dtype: dtype, to: url)
        let file = try SafeTensorsFile(contentsOf: url)
        #expect(file.entries["x"]?.dtype == dtype)
        #expect(file.entries["x"]?.shape == [values.count / 5, 5])
        #expect(file.metadata == ["dtype": dtype.rawValue])
        #expect(folder.contents() == [url.lastPathComponent], "no temporary file left behind")
        return file
    }

    @Test(arguments: [SafeTensorsDType.float32, .float64])
    func exactFloatDTypes(dtype: SafeTensorsDType) throws {
        // F32 and F64 hold every float32 exactly: the round trip must be bit-exact (tolerance 0).
        let folder = try TemporaryFolder()
        let values = Self.sampleValues(seed: 11, count: 1000)
        let file = try Self.write(values, dtype: dtype, in: folder)
        #expect(try file.tensor("x").scalars.map(\.bitPattern) == values.map(\.bitPattern))
        #expect(try file.doubles("x") == values.map(Double.init))
    }

    @Test func float16MatchesIEEERounding() throws {
        let folder = try TemporaryFolder()
        let values = Self.sampleValues(seed: 12, count: 1000).filter { abs($0) <= 65504 }
        let trimmed = Array(values.prefix(values.count / 5 * 5))
        let file = try Self.write(trimmed, dtype: .float16, in: folder)
        let decoded = try file.doubles("x")
        #if arch(x86_64) || arch(arm64)
        // Reference: Swift's Float16(Float) conversion, IEEE round-to-nearest-even: bit-exact.
        for (x, r) in zip(trimmed, decoded) {
            #expect(Float16(x).bitPattern == Float16(Float(r)).bitPattern && Float(Float16(x)) == Float(r), "F16 of \(x): got \(r), expected \(Float(Float16(x)))")
        }
        #endif
        // Error bound: |r - x| <= 2⁻¹¹·|x| in the normal range (|x| >= 2⁻¹⁴), and at most half the
        // subnormal spacing 2⁻²⁵ below it.
        for (x, r) in zip(trimmed, decoded) {
            let bound = abs(Double(x)) >= 0x1p-14 ? 0x1p-11 * abs(Double(x)) : 0x1p-25
            #expect(abs(r - Double(x)) <= bound, "F16 of \(x) = \(r) exceeds the rounding bound \(bound)")
        }
        // The ties: 1 + 2⁻¹¹ -> 1 (even), 1 + 3·2⁻¹¹ -> 1 + 2⁻⁹ (even), stated by IEEE 754.
        #expect(decoded[9] == 1)
        #expect(decoded[10] == 1 + 0x1p-9)
        #expect(decoded[11] == -1)
        #expect(decoded[1].sign == .minus && decoded[1] == 0, "negative zero keeps its sign")
        #expect(decoded[4] == 0x1p-24, "smallest F16 subnormal is exact")
        #expect(decoded[5] == 2 * 0x1p-24, "1.5 x smallest subnormal ties to even (2 x)")
    }

    @Test func bfloat16MatchesBitRounding() throws {
        let folder = try TemporaryFolder()
        let values = Self.sampleValues(seed: 13, count: 1000)
        let file = try Self.write(values, dtype: .bfloat16, in: folder)
        let decoded = try file.tensor("x").scalars
        for (x, r) in zip(values, decoded) {
            // Reference: of the two bfloat16 neighbours of x (the truncation and the next value
            // away from zero), the nearer by exact Double distance; on a tie the one whose last
            // kept bit is 0 (IEEE round-to-nearest-even).
            let truncated = x.bitPattern & 0xFFFF_0000
            let down = Float(bitPattern: truncated), up = Float(bitPattern: truncated + 0x1_0000)
            let dDown = abs(Double(x) - Double(down)), dUp = abs(Double(up) - Double(x))
            let reference = dDown < dUp || (dDown == dUp && (truncated >> 16) & 1 == 0) ? down : up
            #expect(r.bitPattern == reference.bitPattern, "BF16 of \(x): got \(r), expected \(reference)")
            // Error bound 2⁻⁸·|x| (8 significand bits, round to nearest).
            #expect(abs(Double(r) - Double(x)) <= 0x1p-8 * abs(Double(x)))
        }
    }

    @Test(arguments: [SafeTensorsDType.int64, .int32, .int16, .int8, .uint8, .bool])
    func integerDTypes(dtype: SafeTensorsDType) throws {
        // Integers written from float32 tensors, then as Ints through the stream writer including
        // the dtype's extremes: both must come back exactly.
        let folder = try TemporaryFolder()
        let range = try #require(dtype.integerRange)
        var rng = SplitMix64(seed: 14)
        let low = max(range.lowerBound, -(1 << 24)), high = min(range.upperBound, 1 << 24)
        let values = (0..<100).map { _ in Float(low + Int(rng.next() % UInt64(high - low + 1))) }
        let file = try Self.write(values, dtype: dtype, in: folder)
        #expect(try file.integers("x") == values.map { Int($0) })
        #expect(try file.tensor("x").scalars == values)

        let url = folder.file("ints.safetensors")
        let extremes = [range.lowerBound, range.upperBound, 0, 1]
        let writer = try SafeTensorsStreamWriter(to: url, tensors: [.init(name: "i", dtype: dtype, shape: [4])])
        try writer.write("i", integers: extremes)
        try writer.finish()
        #expect(try SafeTensorsFile(contentsOf: url).integers("i") == extremes)
    }

    @Test func doublesThroughStreamWriter() throws {
        // Doubles written as F64 are exact; as F32/F16/BF16 they round once, straight from Double
        // (reference: Float(x), Float16(x) conversions of the compiler runtime, bit-exact).
        let folder = try TemporaryFolder()
        var rng = SplitMix64(seed: 15)
        let values: [Double] = (0..<512).map { _ in rng.nextNormal() * 100 } + [0x1p-30, 1.0 / 3, 2049.0000001]
        let url = folder.file("d.safetensors")
        let dtypes: [SafeTensorsDType] = [.float64, .float32, .float16, .bfloat16]
        let writer = try SafeTensorsStreamWriter(to: url, tensors: dtypes.map { .init(name: $0.rawValue, dtype: $0, shape: [values.count]) })
        for dtype in dtypes { try writer.write(dtype.rawValue, doubles: values) }
        try writer.finish()
        let file = try SafeTensorsFile(contentsOf: url)
        #expect(try file.doubles("F64") == values)
        #expect(try file.doubles("F32") == values.map { Double(Float($0)) })
        #if arch(x86_64) || arch(arm64)
        #expect(try file.doubles("F16") == values.map { Double(Float(Float16($0))) })
        #endif
        for (x, r) in zip(values, try file.doubles("BF16")) {
            #expect(abs(r - x) <= 0x1p-8 * abs(x), "BF16 of \(x) = \(r)")
        }
    }

    @Test func perTensorDTypes() throws {
        let folder = try TemporaryFolder()
        var tensors = NamedTensors()
        tensors["w"] = try Tensor(shape: [2, 2], scalars: [1, 2.5, -3, 0.125])
        tensors["steps"] = try Tensor(shape: [1], scalars: [100])
        tensors["b"] = try Tensor(shape: [2], scalars: [0.5, -0.25])
        let url = folder.file("mixed.safetensors")
        try SafeTensorsWriter.write(tensors, dtypes: ["w": .float16, "steps": .int64], to: url)
        let file = try SafeTensorsFile(contentsOf: url)
        #expect(file.names == ["w", "steps", "b"], "data order follows the NamedTensors order")
        #expect(file.entries.mapValues(\.dtype) == ["w": .float16, "steps": .int64, "b": .float32])
        #expect(try file.tensor("w").scalars == [1, 2.5, -3, 0.125], "all exactly representable in F16")
        #expect(try file.integers("steps") == [100])

        let stray = #expect(throws: SafeTensorsError.self) {
            try SafeTensorsWriter.write(tensors, dtypes: ["nope": .float16], to: folder.file("x.safetensors"))
        }
        #expect(stray?.problem.contains("'nope'") == true)
    }

    @Test func valuesThatDoNotFitAreErrors() throws {
        let folder = try TemporaryFolder()
        var tensors = NamedTensors()
        tensors["big"] = try Tensor(shape: [3], scalars: [1, 70000, 2])
        let url = folder.file("over.safetensors")
        let overflow = #expect(throws: SafeTensorsError.self) { try SafeTensorsWriter.write(tensors, dtype: .float16, to: url) }
        #expect(overflow?.path == url.path)
        #expect(overflow?.problem.contains("tensor 'big' element 1") == true)
        #expect(overflow?.problem.contains("overflows F16") == true)
        let fraction = #expect(throws: SafeTensorsError.self) { try SafeTensorsWriter.write(tensors.mapTensors { _, t in t.map { $0 + 0.5 } }, dtype: .int32, to: url) }
        #expect(fraction?.problem.contains("not an integer") == true)
        let range = #expect(throws: SafeTensorsError.self) { try SafeTensorsWriter.write(tensors, dtype: .int8, to: url) }
        #expect(range?.problem.contains("element 1") == true)
        #expect(folder.contents().isEmpty, "failed writes leave no file, temporary or final")
    }

    /// The public encoder (for callers that encode parts of a tensor on several threads and write
    /// them with `writeRaw`) gives exactly the bytes the writer stores, for every float dtype, values
    /// that round (BF16/F16 ties, subnormals, NaN, infinities) included; overflow names the index.
    @Test func publicEncoderMatchesTheWriterBytes() throws {
        let folder = try TemporaryFolder()
        let values: [Float] = [0, -0.0, 1, -1.5, 1.00390625, 1.01171875, 3.14159, Float(bitPattern: 0x0001_1234), -2.5e-8, 60000, .nan, .infinity, -.infinity, 3.3e38]
        for dtype in [SafeTensorsDType.float32, .float16, .bfloat16] {
            let kept = dtype == .float16 ? values.filter { !$0.isFinite || abs($0) < 65504 } : values
            var tensors = NamedTensors()
            tensors["x"] = try Tensor(shape: [kept.count], scalars: kept)
            let url = folder.file("\(dtype.rawValue).safetensors")
            try SafeTensorsWriter.write(tensors, dtype: dtype, to: url)
            let stored = try SafeTensorsFile(contentsOf: url).withRawBytes(of: "x") { Array($0) }
            var encoded = [UInt8](repeating: 0xAA, count: kept.count * dtype.byteCount)
            try kept.withUnsafeBufferPointer { source in
                try encoded.withUnsafeMutableBytes { out in try dtype.encode(source, into: out.baseAddress!) }
            }
            #expect(encoded == stored, "\(dtype.rawValue)")
        }
        var out = [UInt8](repeating: 0, count: 6)
        let failure = #expect(throws: SafeTensorsDType.EncodingFailure.self) {
            try [Float(1), 2, 70000].withUnsafeBufferPointer { source in
                try out.withUnsafeMutableBytes { try SafeTensorsDType.float16.encode(source, into: $0.baseAddress!) }
            }
        }
        #expect(failure?.index == 2 && failure?.reason.contains("overflows F16") == true)
    }

    @Test func float16OverflowThreshold() throws {
        // 65519 rounds down to 65504 (the largest half); 65520 is the midpoint to 65536 = 2¹⁶,
        // which ties to even (mantissa 0 of the next binade): infinity, hence an error.
        let folder = try TemporaryFolder()
        var tensors = NamedTensors()
        tensors["x"] = try Tensor(shape: [2], scalars: [65519, -65519])
        let url = folder.file("h.safetensors")
        try SafeTensorsWriter.write(tensors, dtype: .float16, to: url)
        #expect(try SafeTensorsFile(contentsOf: url).doubles("x") == [65504, -65504])
        tensors["x"] = try Tensor(shape: [2], scalars: [1, -65520])
        let error = #expect(throws: SafeTensorsError.self) { try SafeTensorsWriter.write(tensors, dtype: .float16, to: url) }
        #expect(error?.problem.contains("element 1: -65520.0 overflows F16") == true)
    }

    @Test func nanAndInfinityStayInFloatDTypes() throws {
        let folder = try TemporaryFolder()
        var tensors = NamedTensors()
        tensors["x"] = try Tensor(shape: [3], scalars: [.nan, .infinity, -.infinity])
        for dtype in [SafeTensorsDType.float16, .bfloat16, .float32, .float64] {
            let url = folder.file("\(dtype.rawValue).safetensors")
            try SafeTensorsWriter.write(tensors, dtype: dtype, to: url)
            let back = try SafeTensorsFile(contentsOf: url).doubles("x")
            #expect(back[0].isNaN && back[1] == .infinity && back[2] == -.infinity, "\(dtype)")
        }
    }

    @Test func defaultSignatureWritesF32AndOverwritesAtomically() throws {
        let folder = try TemporaryFolder()
        let url = folder.file("m.safetensors")
        var tensors = NamedTensors()
        tensors["a"] = try Tensor(shape: [2], scalars: [1, 2])
        try SafeTensorsWriter.write(tensors, to: url)
        tensors["a"] = try Tensor(shape: [2], scalars: [3, 4])
        try SafeTensorsWriter.write(tensors, metadata: [:], to: url)
        let file = try SafeTensorsFile(contentsOf: url)
        #expect(file.entries["a"]?.dtype == .float32)
        #expect(try file.tensor("a").scalars == [3, 4])
        // The header is padded to a multiple of 8 bytes, so data starts 8-aligned.
        let bytes = try Data(contentsOf: url)
        let length = bytes.prefix(8).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
        #expect(length % 8 == 0)
        #expect(bytes.count == 8 + Int(length) + 8)
    }
}

/// Powers of two for test data (avoids Foundation's pow in the test's value generator).
enum ScalarMathHelper {
    static func pow2(_ e: Int) -> Double { Double(sign: .plus, exponent: e, significand: 1) }
}
