import Foundation
import Testing
import SquisherIO
import SquisherTensor

/// A two-shard model with a Hugging Face index file, built in a temporary folder.
@Suite("Sharded safetensors")
struct ShardedSafeTensorsTests {
    static func makeModel(in folder: borrowing TemporaryFolder, index: String? = nil) throws -> URL {
        var first = NamedTensors()
        first["embed.weight"] = try Tensor(shape: [2, 2], scalars: [1, 2, 3, 4])
        var second = NamedTensors()
        second["head.weight"] = try Tensor(shape: [3], scalars: [5, 6, 7])
        second["head.bias"] = try Tensor(shape: [1], scalars: [8])
        try SafeTensorsWriter.write(first, to: folder.file("model-00001-of-00002.safetensors"))
        try SafeTensorsWriter.write(second, dtype: .bfloat16, to: folder.file("model-00002-of-00002.safetensors"))
        let text = index ?? """
            {"metadata": {"total_size": 24, "format": "pt"},
             "weight_map": {"embed.weight": "model-00001-of-00002.safetensors",
                            "head.weight": "model-00002-of-00002.safetensors",
                            "head.bias": "model-00002-of-00002.safetensors"}}
            """
        let url = folder.file("model.safetensors.index.json")
        try Data(text.utf8).write(to: url)
        return url
    }

    @Test func readsTensorsAcrossShards() throws {
        let folder = try TemporaryFolder()
        let indexURL = try Self.makeModel(in: folder)
        let model = try ShardedSafeTensors(folder: folder.url)
        #expect(model.names == ["embed.weight", "head.weight", "head.bias"])
        #expect(model.shardNames == ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"])
        #expect(model.metadata == ["total_size": "24", "format": "pt"])
        #expect(model.indexURL.path == indexURL.path)
        #expect(try model.tensor("embed.weight").scalars == [1, 2, 3, 4])
        #expect(try model.tensor("head.weight").scalars == [5, 6, 7])  // exact in BF16
        #expect(try model.entry("head.bias").dtype == .bfloat16)
        #expect(try model.doubles("head.bias") == [8])
        try model.validateAll()
    }

    @Test func errorsNameTheIndexAndTheShard() throws {
        let folder = try TemporaryFolder()
        let indexURL = try Self.makeModel(in: folder)
        let model = try ShardedSafeTensors(indexURL: indexURL)
        let unknown = #expect(throws: SafeTensorsError.self) { _ = try model.tensor("nope") }
        #expect(unknown?.path == indexURL.path)
        #expect(unknown?.problem.contains("no tensor named 'nope' in the weight_map") == true)

        try FileManager.default.removeItem(at: folder.file("model-00002-of-00002.safetensors"))
        let missing = #expect(throws: SafeTensorsError.self) { _ = try model.tensor("head.bias") }
        #expect(missing?.path == indexURL.path)
        #expect(missing?.problem.contains("shard 'model-00002-of-00002.safetensors' listed in the index is missing") == true)
        #expect(try model.tensor("embed.weight").count == 4, "other shards still load")
    }

    @Test func tensorMissingFromItsShard() throws {
        let folder = try TemporaryFolder()
        let index = #"{"weight_map": {"embed.weight": "model-00001-of-00002.safetensors", "ghost": "model-00001-of-00002.safetensors"}}"#
        let indexURL = try Self.makeModel(in: folder, index: index)
        let model = try ShardedSafeTensors(indexURL: indexURL)
        let error = #expect(throws: SafeTensorsError.self) { _ = try model.tensor("ghost") }
        #expect(error?.path == folder.file("model-00001-of-00002.safetensors").path)
        #expect(error?.problem.contains("does not hold tensor 'ghost'") == true)
        #expect(error?.problem.contains(indexURL.path) == true)
        #expect(throws: SafeTensorsError.self) { try model.validateAll() }
    }

    @Test func malformedShardNamesTheShardAndIndex() throws {
        let folder = try TemporaryFolder()
        let indexURL = try Self.makeModel(in: folder)
        try Data([1, 2, 3]).write(to: folder.file("model-00001-of-00002.safetensors"))
        let model = try ShardedSafeTensors(indexURL: indexURL)
        let error = #expect(throws: SafeTensorsError.self) { _ = try model.tensor("embed.weight") }
        #expect(error?.path == folder.file("model-00001-of-00002.safetensors").path)
        #expect(error?.problem.contains("shard of the index \(indexURL.path)") == true)
    }

    @Test(arguments: [
        (#"{"weight_map": {"a": "../escape.safetensors"}}"#, "expected a file name in the index's folder"),
        (#"{"weight_map": {"a": 3}}"#, "expected a shard file name"),
        (#"{"metadata": {}}"#, "no \"weight_map\""),
        (#"{"weight_map": []}"#, "expected an object of tensor name"),
        (#"{"weight_map": {"a": "x", "a": "y"}}"#, "duplicate key"),
        (#"[1]"#, "expected an object"),
        ("{", "not valid JSON"),
    ])
    func badIndexFiles(index: String, phrase: String) throws {
        let folder = try TemporaryFolder()
        let url = try folder.write(Array(index.utf8), to: "model.safetensors.index.json")
        let error = #expect(throws: SafeTensorsError.self) { _ = try ShardedSafeTensors(indexURL: url) }
        #expect(error?.path == url.path)
        #expect(error?.problem.contains(phrase) == true, "\(error?.problem ?? "")")
    }
}
