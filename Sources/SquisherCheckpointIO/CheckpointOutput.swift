import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import SquisherCheckpoints
import SquisherIO
import SquisherTensor

/// An output folder of a checkpoint command: a ``StagedOutputFolder`` (staged beside the
/// destination, committed by a rename that never replaces anything, refused when it overlaps an
/// input, cleaned up on error and on SIGINT/SIGTERM) with the errors of the applications.
public final class CheckpointOutputFolder: @unchecked Sendable {
    private let folder: StagedOutputFolder
    /// The final folder.
    public var destination: URL { folder.destination }
    /// The staging folder being filled.
    public var staging: URL { folder.staging }
    /// A second staging folder beside it for intermediate files, always removed.
    public var scratch: URL { folder.scratch }

    /// Creates the staging and scratch folders.
    /// - Parameters:
    ///   - inputs: every file and folder the command reads (see ``CheckpointModel/inputs``); the
    ///     destination may not be, contain or lie inside one of them.
    /// - Throws: ``CheckpointError`` (an ``OutputError`` as its cause) naming the destination when
    ///   it overlaps an input, exists and is not an empty folder, or its parent is not writable.
    public init(destination: URL, inputs: [URL] = []) throws(CheckpointError) {
        do { folder = try StagedOutputFolder(destination: destination, inputs: inputs) } catch {
            throw CheckpointError(wrapping: error)
        }
    }

    /// Renames the staging folder to the destination (replacing only an empty destination folder
    /// that was there at the start).
    /// - Throws: ``CheckpointError`` when something appeared at the destination meanwhile (left
    ///   untouched) or the rename fails; the staging folder is then removed.
    public func commit() throws(CheckpointError) {
        do { try folder.commit() } catch { throw CheckpointError(wrapping: error) }
    }
}

/// Writing a model in the layout of an input checkpoint, tensor by tensor: what every streamed
/// application (merge, pruning, masks) writes its output with.
public enum CheckpointLayoutWriter {
    /// The output files of `model`'s layout: (file name, tensors in order). A PyTorch state dict
    /// is written as one `model.safetensors`.
    public static func files(of model: CheckpointModel) -> [(fileName: String, tensors: [String])] {
        switch model.layout {
        case .single(let fileName): [(fileName, model.names)]
        case .torchStateDict, .deepSpeed, .distributedCheckpoint: [("model.safetensors", model.names)]
        case .sharded(_, let shards): shards.map { ($0.fileName, $0.tensors) }
        }
    }

    /// Writes every tensor of `model`'s layout into `folder` (same file names, same dtypes, same
    /// shapes, same order), calling `produce(name, writer)` to write each tensor, then the shard
    /// index if the model is sharded, then copies the companion files of the model's folder
    /// (``companionFiles``: config.json, tokenizer files, ...). Each file's header keeps the input
    /// file's `__metadata__`, with `metadata`'s keys added (ours win on a clash).
    ///
    /// - Parameters:
    ///   - failure: turns an error of the writing itself (a ``CheckpointError``: an unwritable file,
    ///     a tensor of the wrong size) into the caller's error type, the type `produce` throws.
    public static func write<Failure: Error>(
        like model: CheckpointModel, into folder: URL, metadata: [String: String] = [:],
        failure: (CheckpointError) -> Failure,
        produce: (String, SafeTensorsStreamWriter) throws(Failure) -> Void
    ) throws(Failure) {
        func wrap(_ error: any Error) -> Failure { failure(CheckpointError(wrapping: error)) }
        var totalSize = 0
        for (fileName, tensors) in files(of: model) {
            var specs: [SafeTensorsStreamWriter.TensorSpec] = []
            for name in tensors {
                let dtype: SafeTensorsDType, shape: [Int]
                do { (dtype, shape) = try model.entry(name) } catch { throw failure(error) }
                specs.append(.init(name: name, dtype: dtype, shape: shape))
                totalSize += shape.reduce(1, *) * dtype.byteCount
            }
            let writer: SafeTensorsStreamWriter
            // The input file's `__metadata__` (e.g. {"format": "pt"}) is kept; our keys are added.
            let merged = model.metadata(ofFile: fileName).merging(metadata) { _, ours in ours }
            do { writer = try SafeTensorsStreamWriter(to: folder.appendingPathComponent(fileName), tensors: specs, metadata: merged) } catch { throw wrap(error) }
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
                throw failure(CheckpointError(path: folder.path, problem: "cannot write the shard index (\(error))", cause: error))
            }
        }
        do { try copyCompanionFiles(from: model.folder, to: folder, skipping: Set(files(of: model).map(\.fileName))) } catch { throw failure(error) }
    }

    /// The files copied beside an output model: what describes the model (configuration,
    /// tokenizer, generation settings, adapter configuration). Never training state (optimizer,
    /// scheduler, RNG states, trainer state, training arguments), logs, folders or anything else.
    public static let companionFiles: [String] = [
        "config.json", "generation_config.json", "adapter_config.json",
        "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
        "vocab.txt", "vocab.json", "merges.txt", "spiece.model", "sentencepiece.bpe.model", "tokenizer.model",
    ]

    /// Copies the companion files of `source` present as regular files (symlinks, as in a Hugging
    /// Face cache snapshot, are followed and their content copied) into `destination`.
    public static func copyCompanionFiles(from source: URL, to destination: URL, skipping: Set<String>) throws(CheckpointError) {
        for name in companionFiles where !skipping.contains(name) {
            let from = source.appendingPathComponent(name)
            var info = stat()
            guard lstat(from.path, &info) == 0 else { continue }  // absent
            let data: Data
            do { data = try InputFile.read(from) } catch {
                throw CheckpointError(path: "", problem: "\(error); cannot copy it into the output", cause: error)
            }
            do { try AtomicFile.write(data, to: destination.appendingPathComponent(name)) } catch {
                throw CheckpointError(wrapping: error)
            }
        }
    }

    /// The element ranges of a tensor of `count` elements, `chunk` at a time.
    public static func chunks(_ count: Int, chunk: Int = 1 << 18) -> [Range<Int>] {
        stride(from: 0, to: max(count, 1), by: chunk).map { $0..<min($0 + chunk, count) }
    }
}
