import Foundation
import SquisherIO
import SquisherTensor

/// An output folder built under a temporary name beside its destination and renamed into place
/// only when complete, so an interrupted run leaves nothing that looks finished (only a hidden
/// `.<name>.tmp-…` folder, removed on error or when released unfinished).
///
/// The destination must not exist, or be an empty folder; it must not be inside an input.
public final class CheckpointOutputFolder {
    /// The final folder.
    public let destination: URL
    /// The temporary folder being filled.
    public let staging: URL
    /// A second hidden folder beside it for intermediate files (spilled importances), always removed.
    public let scratch: URL
    private var committed = false

    /// Creates the staging and scratch folders.
    /// - Throws: ``ApplicationError`` naming the destination when it exists and is not an empty
    ///   folder, or when its parent is not writable.
    public init(destination: URL) throws(ApplicationError) {
        let manager = FileManager.default
        var isDirectory: ObjCBool = false
        if manager.fileExists(atPath: destination.path, isDirectory: &isDirectory) {
            let contents = (try? manager.contentsOfDirectory(atPath: destination.path)) ?? ["?"]
            guard isDirectory.boolValue, contents.isEmpty else {
                throw ApplicationError(application: "output", problem: "\(destination.path) already exists and is not an empty folder; choose a new output folder (inputs are never overwritten)")
            }
        }
        let parent = destination.deletingLastPathComponent()
        let tag = "\(ProcessInfo.processInfo.processIdentifier)-\(UInt32.random(in: 0...UInt32.max))"
        self.destination = destination
        staging = parent.appendingPathComponent(".\(destination.lastPathComponent).tmp-\(tag)")
        scratch = parent.appendingPathComponent(".\(destination.lastPathComponent).scratch-\(tag)")
        do {
            try manager.createDirectory(at: staging, withIntermediateDirectories: false)
            try manager.createDirectory(at: scratch, withIntermediateDirectories: false)
        } catch {
            try? manager.removeItem(at: staging)
            throw ApplicationError(application: "output", problem: "\(destination.path): cannot create a temporary folder beside it (\(error.localizedDescription))")
        }
    }

    deinit {
        try? FileManager.default.removeItem(at: scratch)
        if !committed { try? FileManager.default.removeItem(at: staging) }
    }

    /// Renames the staging folder to the destination (replacing an empty destination folder).
    /// - Throws: ``ApplicationError`` when the rename fails (the staging folder is then removed).
    public func commit() throws(ApplicationError) {
        let manager = FileManager.default
        try? manager.removeItem(at: scratch)
        if manager.fileExists(atPath: destination.path) { try? manager.removeItem(at: destination) }  // empty, checked in init
        do { try manager.moveItem(at: staging, to: destination) } catch {
            throw ApplicationError(application: "output", problem: "\(destination.path): cannot rename the finished temporary folder into place (\(error.localizedDescription))")
        }
        committed = true
    }
}

/// Writing a model in the layout of an input checkpoint, tensor by tensor.
enum CheckpointLayoutWriter {
    /// The output files of `layout`: (file name, tensors in order).
    static func files(of model: CheckpointModel) -> [(fileName: String, tensors: [String])] {
        switch model.layout {
        case .single(let fileName): [(fileName, model.names)]
        case .torchStateDict: [("model.safetensors", model.names)]
        case .sharded(_, let shards): shards.map { ($0.fileName, $0.tensors) }
        }
    }

    /// Writes every tensor of `model`'s layout into `folder` (same file names, same dtypes, same
    /// shapes, same order), calling `produce(name, writer)` to write each tensor, then the shard
    /// index if the model is sharded, then copies the non-tensor files of the model's folder
    /// (config.json, tokenizer files, ...). `mask`, when given, is a second writer fed by `produce`.
    static func write(
        like model: CheckpointModel, into folder: URL, metadata: [String: String] = [:],
        produce: (String, SafeTensorsStreamWriter) throws(ApplicationError) -> Void
    ) throws(ApplicationError) {
        func wrap(_ error: SafeTensorsError) -> ApplicationError { ApplicationError(application: "output", problem: "\(error)") }
        var totalSize = 0
        for (fileName, tensors) in files(of: model) {
            var specs: [SafeTensorsStreamWriter.TensorSpec] = []
            for name in tensors {
                let (dtype, shape) = try model.entry(name)
                specs.append(.init(name: name, dtype: dtype, shape: shape))
                totalSize += shape.reduce(1, *) * dtype.byteCount
            }
            let writer: SafeTensorsStreamWriter
            do { writer = try SafeTensorsStreamWriter(to: folder.appendingPathComponent(fileName), tensors: specs, metadata: metadata) } catch { throw wrap(error) }
            for name in tensors {
                do { try produce(name, writer) } catch {
                    writer.cancel()
                    throw error
                }
            }
            do { try writer.finish() } catch { throw wrap(error) }
        }
        if case .sharded(let indexFileName, let shards) = model.layout {
            var weightMap: [String: String] = [:]
            for shard in shards { for name in shard.tensors { weightMap[name] = shard.fileName } }
            let index: [String: Any] = ["metadata": ["total_size": totalSize], "weight_map": weightMap]
            do {
                let data = try JSONSerialization.data(withJSONObject: index, options: [.prettyPrinted, .sortedKeys])
                try AtomicFile.write(data, to: folder.appendingPathComponent(indexFileName))
            } catch {
                throw ApplicationError(application: "output", problem: "\(folder.path): cannot write the shard index (\(error))")
            }
        }
        try copyNonTensorFiles(from: model.folder, to: folder, skipping: Set(files(of: model).map(\.fileName)))
    }

    /// Files never copied: tensors, optimizer and trainer states, hidden files.
    static func isTensorFile(_ name: String) -> Bool {
        name.hasPrefix(".") || name.hasSuffix(".safetensors") || name.hasSuffix(".safetensors.index.json")
            || [".pt", ".pth", ".bin", ".ckpt", ".pkl", ".npz", ".h5", ".msgpack"].contains { name.hasSuffix($0) }
    }

    /// Copies the regular non-tensor files of `source` (not folders) into `destination`.
    static func copyNonTensorFiles(from source: URL, to destination: URL, skipping: Set<String>) throws(ApplicationError) {
        let manager = FileManager.default
        let names = ((try? manager.contentsOfDirectory(atPath: source.path)) ?? []).sorted()
        for name in names where !isTensorFile(name) && !skipping.contains(name) {
            var isDirectory: ObjCBool = false
            let from = source.appendingPathComponent(name)
            guard manager.fileExists(atPath: from.path, isDirectory: &isDirectory), !isDirectory.boolValue else { continue }
            let to = destination.appendingPathComponent(name)
            guard !manager.fileExists(atPath: to.path) else { continue }
            do { try manager.copyItem(at: from, to: to) } catch {
                throw ApplicationError(application: "output", problem: "\(from.path): cannot copy into the output (\(error.localizedDescription))")
            }
        }
    }

    /// The element ranges of a tensor of `count` elements, `chunk` at a time.
    static func chunks(_ count: Int, chunk: Int = 1 << 18) -> [Range<Int>] {
        stride(from: 0, to: max(count, 1), by: chunk).map { $0..<min($0 + chunk, count) }
    }
}
