import Foundation
import Testing
import SquisherIO
import SquisherTensor

/// The streaming writer: order checks, atomic rename, cleanup on every failure path.
@Suite("SafeTensors stream writer")
struct SafeTensorsStreamWriterTests {
    static let specs: [SafeTensorsStreamWriter.TensorSpec] = [
        .init(name: "fc1.weight", dtype: .float32, shape: [2, 3]),
        .init(name: "fc1.bias", dtype: .bfloat16, shape: [2]),
    ]

    @Test func writesInDeclaredOrder() throws {
        let folder = try TemporaryFolder()
        let url = folder.file("model.safetensors")
        let writer = try SafeTensorsStreamWriter(to: url, tensors: Self.specs, metadata: ["format": "pt"])
        #expect(writer.nextTensorName == "fc1.weight")
        #expect(!FileManager.default.fileExists(atPath: url.path), "nothing under the final name before finish")
        try writer.write("fc1.weight", Tensor(shape: [2, 3], scalars: [1, 2, 3, 4, 5, 6]))
        try writer.write("fc1.bias", Tensor(shape: [2], scalars: [0.5, -2]))
        #expect(writer.nextTensorName == nil)
        try writer.finish()
        let file = try SafeTensorsFile(contentsOf: url)
        #expect(file.names == ["fc1.weight", "fc1.bias"])
        #expect(file.metadata == ["format": "pt"])
        #expect(try file.tensor("fc1.weight").scalars == [1, 2, 3, 4, 5, 6])
        #expect(try file.tensor("fc1.bias").scalars == [0.5, -2])
        #expect(folder.contents() == ["model.safetensors"])
    }

    @Test func largeTensorIsChunked() throws {
        // More elements than the 8192-element conversion buffer, converted to F16: every element
        // must land in place (values are small integers, exact in F16).
        let folder = try TemporaryFolder()
        let url = folder.file("big.safetensors")
        let n = 20_003
        let values = (0..<n).map { Float($0 % 2000) }
        let writer = try SafeTensorsStreamWriter(to: url, tensors: [.init(name: "x", dtype: .float16, shape: [n])])
        try writer.write("x", Tensor(shape: [n], scalars: values))
        try writer.finish()
        #expect(try SafeTensorsFile(contentsOf: url).tensor("x").scalars == values)
    }

    @Test func wrongOrderFailsAndLeavesNothing() throws {
        let folder = try TemporaryFolder()
        let url = folder.file("model.safetensors")
        try Data("old".utf8).write(to: url)
        let writer = try SafeTensorsStreamWriter(to: url, tensors: Self.specs)
        let error = #expect(throws: SafeTensorsError.self) {
            try writer.write("fc1.bias", Tensor(shape: [2], scalars: [0, 0]))
        }
        #expect(error?.path == url.path)
        #expect(error?.problem.contains("expected tensor 'fc1.weight' next") == true)
        #expect(folder.contents() == ["model.safetensors"], "temporary file removed")
        #expect(try Data(contentsOf: url) == Data("old".utf8), "existing destination untouched")
        #expect(throws: SafeTensorsError.self) { try writer.finish() }
    }

    @Test func shapeAndCountMismatches() throws {
        let folder = try TemporaryFolder()
        let url = folder.file("m.safetensors")
        let shape = #expect(throws: SafeTensorsError.self) {
            let writer = try SafeTensorsStreamWriter(to: url, tensors: Self.specs)
            try writer.write("fc1.weight", Tensor(shape: [3, 2], scalars: [1, 2, 3, 4, 5, 6]))
        }
        #expect(shape?.problem.contains("has shape [3, 2], declared [2, 3]") == true)
        let count = #expect(throws: SafeTensorsError.self) {
            let writer = try SafeTensorsStreamWriter(to: url, tensors: Self.specs)
            try writer.write("fc1.weight", doubles: [1, 2])
        }
        #expect(count?.problem.contains("has 2 elements") == true)
        let raw = #expect(throws: SafeTensorsError.self) {
            let writer = try SafeTensorsStreamWriter(to: url, tensors: Self.specs)
            try [UInt8](repeating: 0, count: 5).withUnsafeBytes { try writer.writeRaw("fc1.weight", bytes: $0) }
        }
        #expect(raw?.problem.contains("raw data has 5 bytes") == true)
        #expect(folder.contents().isEmpty)
    }

    @Test func finishWithMissingTensorsFails() throws {
        let folder = try TemporaryFolder()
        let url = folder.file("m.safetensors")
        let writer = try SafeTensorsStreamWriter(to: url, tensors: Self.specs)
        try writer.write("fc1.weight", Tensor(zeros: [2, 3]))
        let error = #expect(throws: SafeTensorsError.self) { try writer.finish() }
        #expect(error?.problem.contains("1 declared tensors not written (next: 'fc1.bias')") == true)
        #expect(folder.contents().isEmpty)
    }

    @Test func cancelAndReleaseRemoveTheTemporaryFile() throws {
        let folder = try TemporaryFolder()
        let url = folder.file("m.safetensors")
        let writer = try SafeTensorsStreamWriter(to: url, tensors: Self.specs)
        try writer.write("fc1.weight", Tensor(zeros: [2, 3]))
        #expect(folder.contents().count == 1, "the temporary file exists while writing")
        writer.cancel()
        writer.cancel()
        #expect(folder.contents().isEmpty)
        do {
            let abandoned = try SafeTensorsStreamWriter(to: url, tensors: Self.specs)
            _ = abandoned.nextTensorName
        }
        #expect(folder.contents().isEmpty, "a writer released unfinished removes its temporary file")
    }

    @Test func badDeclarations() throws {
        let folder = try TemporaryFolder()
        let url = folder.file("m.safetensors")
        let duplicate = #expect(throws: SafeTensorsError.self) {
            _ = try SafeTensorsStreamWriter(to: url, tensors: [.init(name: "a", shape: [1]), .init(name: "a", shape: [1])])
        }
        #expect(duplicate?.problem.contains("'a' is declared twice") == true)
        let negative = #expect(throws: SafeTensorsError.self) {
            _ = try SafeTensorsStreamWriter(to: url, tensors: [.init(name: "a", shape: [-1])])
        }
        #expect(negative?.problem.contains("non-negative") == true)
        let noFolder = #expect(throws: SafeTensorsError.self) {
            _ = try SafeTensorsStreamWriter(to: folder.file("missing/m.safetensors"), tensors: [])
        }
        #expect(noFolder?.problem.contains("cannot create a temporary file") == true)
    }

    @Test func rawCopyBetweenFilesKeepsDTypesAndNames() throws {
        // Copy a file tensor by tensor in its own dtypes, with names that need JSON escaping.
        let folder = try TemporaryFolder()
        let source = folder.file("a.safetensors")
        var tensors = NamedTensors()
        tensors["quote\"d/name"] = try Tensor(shape: [2], scalars: [1, 2])
        tensors["ünïcode\n"] = try Tensor(shape: [1], scalars: [3])
        try SafeTensorsWriter.write(tensors, dtypes: ["ünïcode\n": .bfloat16], to: source)
        let input = try SafeTensorsFile(contentsOf: source)
        let target = folder.file("b.safetensors")
        let writer = try SafeTensorsStreamWriter(
            to: target, tensors: input.names.map { .init(name: $0, dtype: input.entries[$0]!.dtype, shape: input.entries[$0]!.shape) })
        for name in input.names {
            let bytes = try input.withRawBytes(of: name) { [UInt8]($0) }
            try bytes.withUnsafeBytes { try writer.writeRaw(name, bytes: $0) }
        }
        try writer.finish()
        #expect(try Data(contentsOf: target) == Data(contentsOf: source), "same header and data, byte for byte")
        let output = try SafeTensorsFile(contentsOf: target)
        #expect(output.names == ["quote\"d/name", "ünïcode\n"])
        #expect(try output.tensor("ünïcode\n").scalars == [3])
    }
}
