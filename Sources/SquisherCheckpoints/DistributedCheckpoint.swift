import Foundation
import SquisherTensor

/// Reads the optimizer state of a `torch.distributed.checkpoint` (DCP) folder, as FSDP/FSDP2 save it
/// with `dcp.save({"model": ..., "optim": get_optimizer_state_dict(...)})`.
///
/// `.metadata` is a pickle of DCP's `Metadata` dataclass, read with
/// ``PickleAllowList/distributedCheckpoint`` (the dataclasses rebuilt as plain data, never run):
/// `state_dict_metadata` maps each flattened key (`optim.state.<fqn>.exp_avg_sq`,
/// `optim.param_groups.<group>.betas`, `optim.param_groups.<group>.params`, `model.<fqn>`) to its size and chunks (offsets, sizes), and
/// `storage_data` maps each chunk (fqn, offset) to a byte range of a `__R_S.distcp` file; each range
/// is a standalone `torch.save` archive. FSDP2 shards dimension 0 across ranks: the chunks are
/// placed at their offsets, and must cover the tensor exactly once.
///
/// The `optim.*` entries are regrouped into an optimizer state dict keyed by parameter name and read
/// like any other (``SecondMoments``), so every optimizer kind and refusal behaves the same.
public enum DistributedCheckpoint {
    /// Reads the DCP folder `folder`.
    /// - Throws: ``CheckpointError`` naming the file: a metadata pickle with classes outside the
    ///   allow-list, byte ranges outside a file, chunks that do not tile a tensor, no optimizer state.
    public static func read(folder: URL) throws(CheckpointError) -> OptimizerCheckpoint {
        let metadataURL = folder.appendingPathComponent(".metadata")
        let (entries, storage) = try metadata(folder: folder)
        var reader = ChunkReader(folder: folder, storage: storage, metadataPath: metadataURL.path)
        var state = PickleDictionary()
        var groupValues: [Int: PickleDictionary] = [:]
        var order: [String] = []
        for (keyValue, entry) in entries.entries {
            guard let key = keyValue.stringValue, key.hasPrefix("optim.") else { continue }
            if key.hasPrefix("optim.state."), let (fqn, field) = split(key.dropFirst("optim.state.".count)) {
                if !order.contains(fqn) { order.append(fqn) }
                var fields = state[.string(fqn)]?.dictionaryValue ?? PickleDictionary()
                fields[.string(field)] = try reader.value(key: key, entry: entry)
                state[.string(fqn)] = .dict(fields)
            } else if key.hasPrefix("optim.param_groups.") {
                // optim.param_groups.<group number>.<key>, e.g. .0.betas, .0.params (a list of names).
                let rest = key.dropFirst("optim.param_groups.".count)
                guard let dot = rest.firstIndex(of: "."), let number = Int(rest[..<dot]), number >= 0 else {
                    throw CheckpointError(path: metadataURL.path, problem: "entry '\(key)' is not optim.param_groups.<group number>.<key>")
                }
                groupValues[number, default: PickleDictionary()][.string(String(rest[rest.index(after: dot)...]))] = try reader.value(key: key, entry: entry)
            }
        }
        guard !order.isEmpty else {
            throw CheckpointError(path: metadataURL.path, problem: "holds no optim.state.* entries: a model-only checkpoint has no optimizer state to recycle")
        }
        var groups: [PickleValue] = []
        for number in groupValues.keys.sorted() {
            let group = groupValues[number]!
            guard group[.string("params")]?.elements != nil else {
                throw CheckpointError(path: metadataURL.path, problem: "optim.param_groups.\(number) has no 'params' list of parameter names")
            }
            groups.append(.dict(group))
        }
        if groups.isEmpty {  // no groups saved: one group listing the parameters with state
            var group = PickleDictionary()
            group[.string("params")] = .list(order.map { .string($0) })
            groups = [.dict(group)]
        }
        var root = PickleDictionary()
        root[.string("state")] = .dict(state)
        root[.string("param_groups")] = .list(groups)
        let optimizer = try TorchOptimizerState(.dict(root), path: metadataURL.path)
        let moments = try SecondMoments(optimizer, names: OptimizerCheckpoint.storedNames(optimizer), path: folder.path)
        return OptimizerCheckpoint(format: .distributedCheckpoint(files: reader.filesRead.count), optimizer: optimizer.kind, nameSource: .stateKeys,
                                   moments: moments, tiedParameters: [:], path: folder.path)
    }

    /// The `state_dict_metadata` (flattened key → size and chunks) and `storage_data` ((fqn, offsets) →
    /// file byte range) of `folder/.metadata`.
    /// - Throws: ``CheckpointError`` naming `.metadata` when it cannot be read or is not DCP `Metadata`.
    static func metadata(folder: URL) throws(CheckpointError) -> (entries: PickleDictionary, storage: PickleDictionary) {
        let metadataURL = folder.appendingPathComponent(".metadata")
        let bytes: Data
        do { bytes = try Data(contentsOf: metadataURL) } catch { throw CheckpointError(path: metadataURL.path, problem: "cannot read (\(error.localizedDescription))") }
        let metadata = try RestrictedUnpickler.decode(bytes, path: metadataURL.path, allowList: .distributedCheckpoint) { reference throws(CheckpointError) in
            throw CheckpointError(path: metadataURL.path, problem: "metadata pickle refers to tensor storage '\(reference.key)'; DCP metadata holds no tensors")
        }
        guard let entries = metadata["state_dict_metadata"]?.dictionaryValue, let storage = metadata["storage_data"]?.dictionaryValue else {
            throw CheckpointError(path: metadataURL.path, problem: "is not DCP Metadata (no state_dict_metadata / storage_data)")
        }
        return (entries, storage)
    }

    /// `<fqn>.<field>` → (fqn, field), splitting at the last dot (fields have no dots).
    static func split<S: StringProtocol>(_ text: S) -> (String, String)? {
        guard let dot = text.lastIndex(of: ".") else { return nil }
        return (String(text[..<dot]), String(text[text.index(after: dot)...]))
    }

    /// Loads entries' chunks from the `.distcp` files.
    struct ChunkReader {
        let folder: URL
        let storage: PickleDictionary
        let metadataPath: String
        var files: [String: MappedFile] = [:]
        /// The `storage_data` keys (DCP `MetadataIndex`) of each fqn, in file order.
        let keysByFQN: [String: [PickleValue]]
        var filesRead: Set<String> { Set(files.keys) }

        init(folder: URL, storage: PickleDictionary, metadataPath: String) {
            self.folder = folder
            self.storage = storage
            self.metadataPath = metadataPath
            var keys: [String: [PickleValue]] = [:]
            for key in storage.keys {
                if let fqn = key["fqn"]?.stringValue { keys[fqn, default: []].append(key) }
            }
            keysByFQN = keys
        }

        /// The whole value of `key`: a tensor assembled from its chunks, or a pickled object.
        mutating func value(key: String, entry: PickleValue) throws(CheckpointError) -> PickleValue {
            guard let chunks = entry["chunks"]?.elements, let sizeItems = entry["size"]?.elements else {
                return try load(index: storageIndex(fqn: key, offsets: nil))  // BytesStorageMetadata: a pickled object
            }
            let size = sizeItems.compactMap(\.intValue)
            guard size.count == sizeItems.count, let total = ShapeElementCount.of(size) else {
                throw CheckpointError(path: metadataPath, problem: "'\(key)' has size \(sizeItems.map { $0.intValue.map(String.init) ?? $0.kindName }), not a list of at most \(ShapeElementCount.maximum) elements")
            }
            var covered = 0
            var tiles: [(source: TorchTensor, offsets: [Int])] = []
            for chunk in chunks {
                let offsets = chunk["offsets"]?.elements?.compactMap(\.intValue) ?? []
                let sizes = chunk["sizes"]?.elements?.compactMap(\.intValue) ?? []
                guard offsets.count == size.count, sizes.count == size.count, zip(zip(offsets, sizes), size).allSatisfy({ $0.0 >= 0 && $0.1 >= 0 && $0.1 <= $1 && $0.0 <= $1 - $0.1 }) else {
                    throw CheckpointError(path: metadataPath, problem: "'\(key)' has a chunk (offsets \(offsets), sizes \(sizes)) outside its size \(size)")
                }
                guard let tensor = try load(index: storageIndex(fqn: key, offsets: offsets)).tensorValue, tensor.shape == sizes else {
                    throw CheckpointError(path: metadataPath, problem: "the stored chunk of '\(key)' at offsets \(offsets) is not a tensor of shape \(sizes)")
                }
                tiles.append((tensor, offsets))
                covered += sizes.reduce(1, *)
            }
            guard covered == total, !overlap(tiles.map { ($0.offsets, $0.source.shape) }) else {
                throw CheckpointError(path: metadataPath, problem: "the chunks of '\(key)' hold \(covered) elements but its size \(size) has \(total), or overlap: shards missing or repeated")
            }
            if tiles.count == 1, tiles[0].offsets.allSatisfy({ $0 == 0 }) { return .tensor(tiles[0].source) }
            return .tensor(TorchTensor(tiles: tiles, shape: size))
        }

        /// Whether any two boxes (offsets, sizes) intersect.
        func overlap(_ boxes: [([Int], [Int])]) -> Bool {
            for i in boxes.indices {
                for j in boxes.indices where j > i {
                    let (a, sa) = boxes[i], (b, sb) = boxes[j]
                    if a.indices.allSatisfy({ max(a[$0], b[$0]) < min(a[$0] + sa[$0], b[$0] + sb[$0]) }) { return true }
                }
            }
            return false
        }

        /// The `storage_data` key of (fqn, offsets): DCP's `MetadataIndex`.
        func storageIndex(fqn: String, offsets: [Int]?) throws(CheckpointError) -> PickleValue {
            for key in keysByFQN[fqn] ?? [] {
                let stored = key["offset"]?.elements?.compactMap(\.intValue)
                if offsets == nil || stored == offsets { return key }
            }
            throw CheckpointError(path: metadataPath, problem: "storage_data has no entry for '\(fqn)'\(offsets.map { " at offsets \($0)" } ?? "")")
        }

        /// The object stored under `index`: its byte range of its `.distcp` file, a `torch.save` archive.
        mutating func load(index: PickleValue) throws(CheckpointError) -> PickleValue {
            guard let info = storage[index], let relative = info["relative_path"]?.stringValue,
                  let offset = info["offset"]?.intValue, let length = info["length"]?.intValue else {
                throw CheckpointError(path: metadataPath, problem: "a storage_data entry lacks relative_path/offset/length")
            }
            guard !relative.contains("/"), !relative.hasPrefix(".") else {
                throw CheckpointError(path: metadataPath, problem: "storage file '\(relative)' is not a plain file name in the checkpoint folder")
            }
            if files[relative] == nil {
                let url = folder.appendingPathComponent(relative)
                do throws(CheckpointError) { files[relative] = try MappedFile(url) } catch {
                    throw CheckpointError(path: url.path, problem: "\(error.problem); .metadata lists it")
                }
            }
            let file = files[relative]!
            let data = file.data
            guard offset >= 0, length >= 0, offset <= data.count, length <= data.count - offset else {
                throw CheckpointError(path: folder.appendingPathComponent(relative).path, problem: "byte range [\(offset), \(offset)+\(length)) is outside the \(data.count)-byte file")
            }
            // A zero-based view of the byte range without copying it (the mapped file stays alive with the view).
            let range: Data = length == 0 ? Data() : data.withUnsafeBytes { raw in
                Data(bytesNoCopy: UnsafeMutableRawPointer(mutating: raw.baseAddress! + offset), count: length,
                     deallocator: .custom { _, _ in withExtendedLifetime(data) {} })
            }
            return try TorchCheckpoint.load(data: range, path: "\(relative)[\(offset)..<\(offset + length)]", file: file)
        }
    }
}
