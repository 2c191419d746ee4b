import Foundation
import SquisherTensor

/// A model saved as several safetensors shards with a Hugging Face index file,
/// `model.safetensors.index.json`:
///
/// ```json
/// {"metadata": {"total_size": 16060522496},
///  "weight_map": {"lm_head.weight": "model-00002-of-00002.safetensors", ...}}
/// ```
///
/// `weight_map` maps every tensor name to the shard file (relative to the index's folder) that
/// holds it. Shards are opened (memory-mapped and validated) lazily, the first time one of their
/// tensors is asked for, and kept open; tensors are decoded one at a time, so memory stays
/// bounded by the tensors in use. Shard file names must be plain names in the index's folder
/// (no `/`, no `..`). Safe to share between tasks: the only mutable state, the cache of open
/// shards, is guarded by a lock (`NSLock` rather than `Mutex`, which needs macOS 15).
public final class ShardedSafeTensors: @unchecked Sendable {
    /// The index file (for messages).
    public let indexURL: URL
    /// Tensor names in the index's order.
    public let names: [String]
    /// The shard file name of each tensor.
    public let weightMap: [String: String]
    /// The distinct shard file names, in order of first appearance.
    public let shardNames: [String]
    /// The index's `metadata` object, values as strings (numbers keep their literal text, e.g.
    /// `total_size`; nested values as compact JSON). Empty when absent.
    public let metadata: [String: String]
    private let lock = NSLock()
    private var openShards: [String: SafeTensorsFile] = [:]

    /// Reads and validates the index (not the shards).
    /// - Throws: ``SafeTensorsError`` naming the index file: unreadable, not JSON, no
    ///   `weight_map` object, a value that is not a plain file name.
    public init(indexURL: URL) throws(SafeTensorsError) {
        let path = indexURL.path
        func fail(_ problem: String) -> SafeTensorsError { SafeTensorsError(path: path, problem: problem) }
        let bytes: Data
        do { bytes = try InputFile.read(indexURL) } catch { throw SafeTensorsError(error) }
        let json: HeaderJSON
        do { json = try HeaderJSONParser.parse([UInt8](bytes)) } catch {
            throw fail("shard index is not valid JSON: \(error.message)")
        }
        guard case .object(let top) = json else { throw fail("shard index is \(json.kindDescription), expected an object") }
        guard let mapValue = top.first(where: { $0.key == "weight_map" })?.value else {
            throw fail("shard index has no \"weight_map\"")
        }
        guard case .object(let map) = mapValue else {
            throw fail("\"weight_map\" is \(mapValue.kindDescription), expected an object of tensor name -> shard file")
        }
        var names: [String] = []
        var weightMap: [String: String] = [:]
        var shardNames: [String] = []
        for (name, value) in map {
            guard case .string(let shard) = value else {
                throw fail("\"weight_map\" entry for tensor '\(name)' is \(value.kindDescription), expected a shard file name")
            }
            guard !shard.isEmpty, !shard.contains("/"), !shard.contains("\\"), shard != ".", shard != ".." else {
                throw fail("\"weight_map\" entry for tensor '\(name)' is '\(shard)', expected a file name in the index's folder")
            }
            names.append(name)
            weightMap[name] = shard
            if !shardNames.contains(shard) { shardNames.append(shard) }
        }
        var metadata: [String: String] = [:]
        if let metaValue = top.first(where: { $0.key == "metadata" })?.value {
            switch metaValue {
            case .object(let members):
                for (key, value) in members {
                    if case .string(let s) = value { metadata[key] = s } else { metadata[key] = value.compactText }
                }
            case .null: break
            default: throw fail("\"metadata\" is \(metaValue.kindDescription), expected an object")
            }
        }
        self.indexURL = indexURL
        self.names = names
        self.weightMap = weightMap
        self.shardNames = shardNames
        self.metadata = metadata
    }

    /// Convenience: the index `model.safetensors.index.json` in `folder`.
    public convenience init(folder: URL, indexName: String = "model.safetensors.index.json") throws(SafeTensorsError) {
        try self.init(indexURL: folder.appendingPathComponent(indexName))
    }

    /// The URL of shard file `shard`.
    public func url(ofShard shard: String) -> URL {
        indexURL.deletingLastPathComponent().appendingPathComponent(shard)
    }

    /// The open shard file holding tensor `name` (opened and validated on first use).
    /// - Throws: ``SafeTensorsError`` naming the index when `name` is not in `weight_map`, the
    ///   shard when it cannot be opened (with the index in the message), or when the shard does
    ///   not hold the tensor the index promises.
    public func shard(holding name: String) throws(SafeTensorsError) -> SafeTensorsFile {
        guard let shardName = weightMap[name] else {
            throw SafeTensorsError(path: indexURL.path, problem: "no tensor named '\(name)' in the weight_map (\(names.count) tensors in \(shardNames.count) shards)")
        }
        let file = try shardFile(shardName)
        guard file.entries[name] != nil else {
            throw SafeTensorsError(path: file.path, problem: "shard '\(shardName)' does not hold tensor '\(name)', which the index \(indexURL.path) maps to it")
        }
        return file
    }

    private func shardFile(_ shardName: String) throws(SafeTensorsError) -> SafeTensorsFile {
        if let cached = lock.withLock({ openShards[shardName] }) { return cached }
        let url = url(ofShard: shardName)
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw SafeTensorsError(path: indexURL.path, problem: "shard '\(shardName)' listed in the index is missing (looked for \(url.path))")
        }
        let file: SafeTensorsFile
        do { file = try SafeTensorsFile(contentsOf: url) } catch {
            throw SafeTensorsError(path: error.path, problem: "\(error.problem) (shard of the index \(indexURL.path))")
        }
        return lock.withLock {
            if let existing = openShards[shardName] { return existing }
            openShards[shardName] = file
            return file
        }
    }

    /// The header entry of tensor `name` (opens its shard).
    public func entry(_ name: String) throws(SafeTensorsError) -> SafeTensorsFile.Entry {
        try shard(holding: name).entry(name)
    }

    /// Tensor `name` as a float32 ``Tensor`` (see ``SafeTensorsFile/tensor(_:)`` for conversions).
    public func tensor(_ name: String) throws(SafeTensorsError) -> Tensor {
        try shard(holding: name).tensor(name)
    }

    /// Tensor `name` decoded to `Double` (see ``SafeTensorsFile/doubles(_:)``).
    public func doubles(_ name: String) throws(SafeTensorsError) -> [Double] {
        try shard(holding: name).doubles(name)
    }

    /// Integer tensor `name` as `Int`s (see ``SafeTensorsFile/integers(_:)``).
    public func integers(_ name: String) throws(SafeTensorsError) -> [Int] {
        try shard(holding: name).integers(name)
    }

    /// Calls `body` with the raw little-endian bytes of tensor `name` (no copy).
    public func withRawBytes<R>(of name: String, _ body: (UnsafeRawBufferPointer) -> R) throws(SafeTensorsError) -> R {
        try shard(holding: name).withRawBytes(of: name, body)
    }

    /// Opens every shard and checks that each holds exactly the tensors the index maps to it.
    /// - Throws: ``SafeTensorsError`` naming the shard and the first tensor missing from it or
    ///   present in it but mapped elsewhere (or not in the index).
    public func validateAll() throws(SafeTensorsError) {
        for shardName in shardNames {
            let file = try shardFile(shardName)
            let expected = Set(names.filter { weightMap[$0] == shardName })
            if let missing = names.first(where: { weightMap[$0] == shardName && file.entries[$0] == nil }) {
                throw SafeTensorsError(path: file.path, problem: "shard '\(shardName)' does not hold tensor '\(missing)', which the index \(indexURL.path) maps to it")
            }
            if let extra = file.names.first(where: { !expected.contains($0) }) {
                throw SafeTensorsError(path: file.path, problem: "shard '\(shardName)' holds tensor '\(extra)', which the index \(indexURL.path) does not map to it")
            }
        }
    }
}
