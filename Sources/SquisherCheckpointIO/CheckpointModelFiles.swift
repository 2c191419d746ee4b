import Foundation
import SquisherCheckpoints
import SquisherIO

/// Finding and opening the model files of a checkpoint folder or file (see ``CheckpointModel`` for
/// the rules).
enum CheckpointModelFiles {
    /// Where a checkpoint's model tensors are.
    enum Model {
        /// One safetensors file.
        case safetensors(URL)
        /// A `*.index.json` shard index.
        case shardIndex(URL)
        /// A PyTorch format read lazily, with the layout outputs record.
        case torch(TorchModelWeights, CheckpointModel.Layout)
    }

    /// What a given path resolves to.
    struct Located {
        var model: Model
        var folder: URL
        var isFolder: Bool
        var optimizer: URL?
        var modelOrder: URL?
    }

    /// Resolves `url` (a checkpoint folder or a model file).
    static func locate(_ url: URL) throws(CheckpointError) -> Located {
        let manager = FileManager.default
        var isDirectory: ObjCBool = false
        guard manager.fileExists(atPath: url.path, isDirectory: &isDirectory) else {
            throw CheckpointError(path: url.path, problem: "no such file or folder", cause: FileAccessError(path: url.path, reason: .missing))
        }
        let folder = isDirectory.boolValue ? url : url.deletingLastPathComponent()
        let orderFile = ["model.pt", "pytorch_model.bin"].map { folder.appendingPathComponent($0) }.first { manager.fileExists(atPath: $0.path) }
        guard isDirectory.boolValue else {
            let model = try modelFile(url)
            if case .torch = model { return Located(model: model, folder: folder, isFolder: false, optimizer: nil, modelOrder: url) }
            return Located(model: model, folder: folder, isFolder: false, optimizer: nil, modelOrder: orderFile)
        }
        let entries = ((try? manager.contentsOfDirectory(atPath: url.path)) ?? []).sorted()
        let optimizer = entries.contains("optimizer.pt") ? url.appendingPathComponent("optimizer.pt") : nil
        let safetensors = entries.filter { $0.hasSuffix(".safetensors") && !$0.hasPrefix(".") }
        let chosen: String? = entries.contains("model.safetensors.index.json") ? "model.safetensors.index.json"
            : entries.contains("model.safetensors") ? "model.safetensors"
            : safetensors.count == 1 ? safetensors[0]
            : ["pytorch_model.bin", "model.pt"].first(where: entries.contains)
        if let chosen {
            let file = url.appendingPathComponent(chosen)
            let model = try modelFile(file)
            if case .torch = model { return Located(model: model, folder: folder, isFolder: true, optimizer: optimizer, modelOrder: file) }
            return Located(model: model, folder: folder, isFolder: true, optimizer: optimizer, modelOrder: orderFile)
        }
        if let location = try DeepSpeedCheckpoint.locate(in: url) {
            let weights = try TorchModelWeights.deepSpeed(location)
            return Located(model: .torch(weights, .deepSpeed(tag: location.folder.lastPathComponent)), folder: folder, isFolder: true, optimizer: nil, modelOrder: nil)
        }
        if entries.contains(".metadata") {
            let weights = try TorchModelWeights.distributedCheckpoint(url)
            return Located(model: .torch(weights, .distributedCheckpoint), folder: folder, isFolder: true, optimizer: nil, modelOrder: nil)
        }
        throw CheckpointError(path: url.path, problem: """
            folder holds no model.safetensors, model.safetensors.index.json, single *.safetensors file, pytorch_model.bin, \
            model.pt, DeepSpeed checkpoint (latest / global_step*) or torch.distributed.checkpoint (.metadata)
            """)
    }

    /// A model file given by name: safetensors, a shard index, or a PyTorch state dict.
    static func modelFile(_ file: URL) throws(CheckpointError) -> Model {
        let name = file.lastPathComponent
        if name.hasSuffix(".json") { return .shardIndex(file) }
        if name.hasSuffix(".pt") || name.hasSuffix(".bin") || name.hasSuffix(".pth") {
            return .torch(try TorchModelWeights.torchStateDict(file), .torchStateDict(fileName: name))
        }
        return .safetensors(file)
    }

    /// Maps and validates one safetensors file.
    static func mapped(_ file: URL) throws(CheckpointError) -> MappedSafeTensors {
        do { return try MappedSafeTensors(file) } catch { throw CheckpointError(wrapping: error) }
    }

    /// The shards of index `indexURL`, each checked to hold exactly the tensors the index maps to it.
    static func shards(_ indexURL: URL) throws(CheckpointError) -> (files: [String: MappedSafeTensors], layout: [CheckpointModel.Shard], metadata: [String: [String: String]], urls: [URL]) {
        let index: ShardedSafeTensors
        do { index = try ShardedSafeTensors(indexURL: indexURL) } catch { throw CheckpointError(wrapping: error) }
        var files: [String: MappedSafeTensors] = [:]
        var shards: [CheckpointModel.Shard] = []
        var metadata: [String: [String: String]] = [:]
        for shardName in index.shardNames {
            let shardURL = index.url(ofShard: shardName)
            guard FileManager.default.fileExists(atPath: shardURL.path) else {
                throw CheckpointError(path: indexURL.path, problem: "shard '\(shardName)' listed in the index is missing")
            }
            let mapped: MappedSafeTensors
            do { mapped = try MappedSafeTensors(shardURL) } catch { throw CheckpointError(path: "", problem: "\(error) (shard of \(indexURL.path))", cause: error) }
            let expected = Set(index.names.filter { index.weightMap[$0] == shardName })
            if let missing = index.names.first(where: { index.weightMap[$0] == shardName && mapped.file.entries[$0] == nil }) {
                throw CheckpointError(path: shardURL.path, problem: "shard does not hold tensor '\(missing)', which the index maps to it")
            }
            if let extra = mapped.file.names.first(where: { !expected.contains($0) }) {
                throw CheckpointError(path: shardURL.path, problem: "shard holds tensor '\(extra)', which the index does not map to it")
            }
            for name in mapped.file.names { files[name] = mapped }
            shards.append(CheckpointModel.Shard(fileName: shardName, tensors: mapped.file.names))
            metadata[shardName] = mapped.file.metadata
        }
        return (files, shards, metadata, [indexURL] + index.shardNames.map(index.url(ofShard:)))
    }

    /// The safetensors dtype of every tensor of `weights` (all PyTorch storage dtypes have one).
    static func safetensorsDTypes(of weights: TorchModelWeights) throws(CheckpointError) -> [String: SafeTensorsDType] {
        var dtypes: [String: SafeTensorsDType] = [:]
        for name in weights.names {
            let dtype = try weights.dtype(name)
            guard let converted = SafeTensorsDType(torch: dtype) else {
                throw CheckpointError(path: weights.path, problem: "tensor '\(name)' has dtype \(dtype.rawValue), which safetensors cannot hold")
            }
            dtypes[name] = converted
        }
        return dtypes
    }
}
