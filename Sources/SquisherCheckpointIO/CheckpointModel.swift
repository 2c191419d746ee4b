import Foundation
import SquisherCheckpoints
import SquisherIO
import SquisherTensor
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A safetensors file mapped read-only (``MappedFile``), so that the pages of a tensor can be handed
/// back to the kernel once it has been used: the resident memory of a streaming pass then stays
/// bounded by the tensors in flight, not by the file size.
package final class MappedSafeTensors: @unchecked Sendable {
    package let file: SafeTensorsFile
    private let mapping: MappedFile

    package init(_ url: URL) throws(SafeTensorsError) {
        do { mapping = try MappedFile(url) } catch {
            throw SafeTensorsError(path: url.path, problem: error.problem, cause: error.cause ?? error)
        }
        file = try SafeTensorsFile(data: mapping.data, path: url.path)
    }

    /// Starts reading the pages of tensor `name` ahead (see ``MappedFile/prefetch(_:)``).
    package func prefetch(_ name: String) {
        guard let raw = try? file.withRawBytes(of: name, { $0 }) else { return }
        mapping.prefetch(raw)
    }

    /// Drops the resident pages of tensor `name` (they are re-read from the page cache if touched
    /// again).
    package func release(_ name: String) {
        guard let raw = try? file.withRawBytes(of: name, { $0 }) else { return }
        mapping.release(raw)
    }
}

/// Decodes elements `range` of a little-endian floating-point tensor to float32 (exact for F32,
/// F16, BF16; F64 rounds to nearest even), without decoding the rest of the tensor. The loops are
/// plain strided loads the compiler vectorizes: decoding runs far above disk speed.
public enum CheckpointDecoding {
    /// float32 value of every float16 bit pattern (256 KB, built once).
    static let halfTable: [Float] = (0...UInt16.max).map { Float(Float16(bitPattern: $0)) }

    /// Decodes elements `range` of `raw` (a whole tensor of `dtype`) into `out` (`range.count`
    /// elements). Integer dtypes decode as NaN: callers never decode integer tensors as floats.
    public static func decode(_ raw: UnsafeRawBufferPointer, dtype: SafeTensorsDType, range: Range<Int>, into out: UnsafeMutableBufferPointer<Float>) {
        let n = range.count
        guard n > 0, let base = raw.baseAddress, let target = out.baseAddress else { return }
        switch dtype {
        case .float32:
            let source = base + range.lowerBound * 4
            #if _endian(little)
            target.withMemoryRebound(to: UInt8.self, capacity: n * 4) { $0.update(from: source.assumingMemoryBound(to: UInt8.self), count: n * 4) }
            #else
            for i in 0..<n { target[i] = Float(bitPattern: UInt32(littleEndian: source.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self))) }
            #endif
        case .float16:
            let source = base + range.lowerBound * 2
            halfTable.withUnsafeBufferPointer { table in
                for i in 0..<n { target[i] = table[Int(UInt16(littleEndian: source.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self)))] }
            }
        case .bfloat16:
            #if _endian(little)
            FloatScan.widenBFloat16(base + range.lowerBound * 2, count: n, into: target)
            #else
            let source = base + range.lowerBound * 2
            for i in 0..<n { target[i] = Float(bitPattern: UInt32(UInt16(littleEndian: source.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self))) << 16) }
            #endif
        case .float64:
            let source = base + range.lowerBound * 8
            for i in 0..<n { target[i] = Float(Double(bitPattern: UInt64(littleEndian: source.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self)))) }
        case .int64, .int32, .int16, .int8, .uint8, .bool:
            for i in 0..<n { target[i] = .nan }
        }
    }
}

/// The model half of a checkpoint: its tensors by name, read one at a time, and its file layout
/// (one safetensors file, a sharded model with `model.safetensors.index.json`, or a PyTorch
/// `pytorch_model.bin` / `model.pt` state dict, which is loaded whole).
///
/// A checkpoint is a folder in the Hugging Face layout or an explicit file:
/// - folder: `model.safetensors.index.json` (+ shards) if present, else `model.safetensors`, else
///   the only `*.safetensors` file, else `pytorch_model.bin` / `model.pt`. Beside it, `optimizer.pt`
///   (``optimizerURL``) and `model.pt` / `pytorch_model.bin` (``modelOrderURL``, the parameter
///   registration order that maps optimizer indices to names).
/// - file: `*.safetensors`, `*.index.json` (a shard index), or `*.pt` / `*.bin` (a state dict).
///
/// safetensors files are memory-mapped and validated on open; tensors are decoded on demand, in
/// chunks, and their pages released after use, so resident memory stays bounded by the tensors in
/// flight. Tensor order (``names``) is the data order of each file, shard after shard in the index's
/// order of first appearance: the order in which outputs are written.
public final class CheckpointModel: @unchecked Sendable {
    /// How the model's tensors are laid out in files; outputs repeat it.
    public enum Layout: Sendable, Hashable {
        /// One safetensors file (its file name).
        case single(fileName: String)
        /// Shards listed by an index file: the index file name and each shard's file name with its
        /// tensors in data order.
        case sharded(indexFileName: String, shards: [Shard])
        /// A PyTorch state dict, loaded whole (outputs are written as `model.safetensors`).
        case torchStateDict(fileName: String)
    }

    /// One shard: its file name and its tensors in data order.
    public struct Shard: Sendable, Hashable {
        /// The shard's file name (e.g. `model-00001-of-00002.safetensors`).
        public var fileName: String
        /// Tensor names in the shard's data order.
        public var tensors: [String]
    }

    /// The file or folder given (for messages).
    public let path: String
    /// The checkpoint folder (the given folder, or the folder of the given file).
    public let folder: URL
    /// The file layout.
    public let layout: Layout
    /// Tensor names in output order.
    public let names: [String]
    /// `optimizer.pt` in the checkpoint folder, when the checkpoint is a folder holding one.
    public let optimizerURL: URL?
    /// `model.pt` or `pytorch_model.bin` in the checkpoint folder (or the model file itself when it
    /// is one): a state dict in registration order.
    public let modelOrderURL: URL?

    /// Every file this model reads (the model file or shards and index, `optimizer.pt`, the
    /// registration-order state dict), and the folder when one was given: what an output may not
    /// overwrite or lie inside.
    public let inputs: [URL]

    private let files: [String: MappedSafeTensors]
    private let metadataByFile: [String: [String: String]]
    private let memory: NamedTensors?
    private let memoryDTypes: [String: SafeTensorsDType]

    /// Opens a checkpoint folder or model file (see the type's documentation).
    /// - Throws: ``CheckpointError`` naming the path: nothing recognizable, a malformed or missing
    ///   file (the safetensors or checkpoint reader's message), shards that disagree with the index.
    public init(contentsOf url: URL) throws(CheckpointError) {
        func fail(_ problem: String) -> CheckpointError { CheckpointError(path: url.path, problem: problem) }
        let manager = FileManager.default
        var isDirectory: ObjCBool = false
        guard manager.fileExists(atPath: url.path, isDirectory: &isDirectory) else {
            throw CheckpointError(path: url.path, problem: "no such file or folder", cause: FileAccessError(path: url.path, reason: .missing))
        }
        var modelFile: URL
        var optimizer: URL? = nil
        let checkpointFolder = isDirectory.boolValue ? url : url.deletingLastPathComponent()
        folder = checkpointFolder
        if isDirectory.boolValue {
            let entries = ((try? manager.contentsOfDirectory(atPath: url.path)) ?? []).sorted()
            if entries.contains("model.safetensors.index.json") {
                modelFile = url.appendingPathComponent("model.safetensors.index.json")
            } else if entries.contains("model.safetensors") {
                modelFile = url.appendingPathComponent("model.safetensors")
            } else if entries.filter({ $0.hasSuffix(".safetensors") && !$0.hasPrefix(".") }).count == 1,
                      let only = entries.first(where: { $0.hasSuffix(".safetensors") && !$0.hasPrefix(".") }) {
                modelFile = url.appendingPathComponent(only)
            } else if let torch = ["pytorch_model.bin", "model.pt"].first(where: entries.contains) {
                modelFile = url.appendingPathComponent(torch)
            } else {
                throw fail("folder holds no model.safetensors, model.safetensors.index.json, single *.safetensors file, pytorch_model.bin or model.pt")
            }
            if entries.contains("optimizer.pt") { optimizer = url.appendingPathComponent("optimizer.pt") }
        } else {
            modelFile = url
        }
        path = url.path
        optimizerURL = optimizer
        let fileName = modelFile.lastPathComponent
        let isTorch = fileName.hasSuffix(".pt") || fileName.hasSuffix(".bin") || fileName.hasSuffix(".pth")
        if isTorch {
            modelOrderURL = modelFile
        } else {
            modelOrderURL = ["model.pt", "pytorch_model.bin"].map { checkpointFolder.appendingPathComponent($0) }
                .first { manager.fileExists(atPath: $0.path) }
        }

        let modelFiles: [URL]
        if fileName.hasSuffix(".json") {
            let index: ShardedSafeTensors
            do { index = try ShardedSafeTensors(indexURL: modelFile) } catch { throw CheckpointError(wrapping: error) }
            var files: [String: MappedSafeTensors] = [:]
            var shards: [Shard] = []
            var names: [String] = []
            for shardName in index.shardNames {
                let shardURL = index.url(ofShard: shardName)
                guard manager.fileExists(atPath: shardURL.path) else {
                    throw CheckpointError(path: modelFile.path, problem: "shard '\(shardName)' listed in the index is missing")
                }
                let mapped: MappedSafeTensors
                do { mapped = try MappedSafeTensors(shardURL) } catch { throw CheckpointError(path: "", problem: "\(error) (shard of \(modelFile.path))", cause: error) }
                let expected = Set(index.names.filter { index.weightMap[$0] == shardName })
                if let missing = index.names.first(where: { index.weightMap[$0] == shardName && mapped.file.entries[$0] == nil }) {
                    throw CheckpointError(path: shardURL.path, problem: "shard does not hold tensor '\(missing)', which the index maps to it")
                }
                if let extra = mapped.file.names.first(where: { !expected.contains($0) }) {
                    throw CheckpointError(path: shardURL.path, problem: "shard holds tensor '\(extra)', which the index does not map to it")
                }
                for name in mapped.file.names { files[name] = mapped }
                names += mapped.file.names
                shards.append(Shard(fileName: shardName, tensors: mapped.file.names))
            }
            self.files = files
            self.names = names
            layout = .sharded(indexFileName: fileName, shards: shards)
            memory = nil
            memoryDTypes = [:]
            var metadata: [String: [String: String]] = [:]
            for shard in shards { if let name = shard.tensors.first, let file = files[name] { metadata[shard.fileName] = file.file.metadata } }
            metadataByFile = metadata
            modelFiles = [modelFile] + index.shardNames.map(index.url(ofShard:))
        } else if isTorch {
            let stateDict: TorchStateDict
            do { stateDict = try TorchStateDict(contentsOf: modelFile) } catch { throw CheckpointError(wrapping: error) }
            var dtypes: [String: SafeTensorsDType] = [:]
            for (name, dtype) in stateDict.dtypes {
                guard let converted = SafeTensorsDType(torch: dtype) else { throw CheckpointError(path: url.path, problem: "tensor '\(name)' has dtype \(dtype.rawValue), which safetensors cannot hold") }
                dtypes[name] = converted
            }
            files = [:]
            names = stateDict.tensors.names
            memory = stateDict.tensors
            memoryDTypes = dtypes
            layout = .torchStateDict(fileName: fileName)
            metadataByFile = ["model.safetensors": ["format": "pt"]]
            modelFiles = [modelFile]
        } else {
            let mapped: MappedSafeTensors
            do { mapped = try MappedSafeTensors(modelFile) } catch { throw CheckpointError(wrapping: error) }
            files = Dictionary(uniqueKeysWithValues: mapped.file.names.map { ($0, mapped) })
            names = mapped.file.names
            memory = nil
            memoryDTypes = [:]
            layout = .single(fileName: fileName)
            metadataByFile = [fileName: mapped.file.metadata]
            modelFiles = [modelFile]
        }
        inputs = (isDirectory.boolValue ? [url] : []) + modelFiles + [optimizer, modelOrderURL].compactMap { $0 }
    }

    /// The element type and shape of tensor `name`.
    /// - Throws: ``CheckpointError`` when the model has no such tensor.
    public func entry(_ name: String) throws(CheckpointError) -> (dtype: SafeTensorsDType, shape: [Int]) {
        if let file = files[name], let entry = file.file.entries[name] { return (entry.dtype, entry.shape) }
        if let tensor = memory?[name], let dtype = memoryDTypes[name] { return (dtype, tensor.shape) }
        throw CheckpointError(path: path, problem: "no tensor named '\(name)'")
    }

    /// Decodes elements `range` (row-major) of floating-point tensor `name` into `out` as float32
    /// (`out.count == range.count`; exact for F32/F16/BF16, F64 rounded to nearest even).
    /// - Throws: ``CheckpointError`` when the tensor is missing, holds integers, or `range` lies
    ///   outside it.
    public func decode(_ name: String, range: Range<Int>, into out: UnsafeMutableBufferPointer<Float>) throws(CheckpointError) {
        let (dtype, shape) = try entry(name)
        guard dtype.isFloatingPoint else {
            throw CheckpointError(path: path, problem: "tensor '\(name)' is \(dtype.rawValue), not floating point")
        }
        let count = shape.reduce(1, *)
        guard range.lowerBound >= 0, range.upperBound <= count, out.count == range.count else {
            throw CheckpointError(path: path, problem: "tensor '\(name)' has \(count) elements; cannot read elements \(range) into \(out.count) values")
        }
        if let tensor = memory?[name] {
            tensor.scalars.withUnsafeBufferPointer { source in
                _ = out.initialize(fromContentsOf: UnsafeBufferPointer(rebasing: source[range]))
            }
            return
        }
        let file = files[name]!.file
        _ = try? file.withRawBytes(of: name) { raw in CheckpointDecoding.decode(raw, dtype: dtype, range: range, into: out) }
    }

    /// Elements `range` (row-major) of floating-point tensor `name`, converted to float32 (see
    /// ``decode(_:range:into:)``).
    /// - Throws: ``CheckpointError`` when the tensor is missing or holds integers.
    public func floats(_ name: String, range: Range<Int>) throws(CheckpointError) -> [Float] {
        var result = [Float](repeating: 0, count: range.count)
        try result.withUnsafeMutableBufferPointer { (buffer: inout UnsafeMutableBufferPointer<Float>) throws(CheckpointError) in
            try decode(name, range: range, into: buffer)
        }
        return result
    }

    /// Writes tensor `name` unchanged (same dtype and bytes) as the writer's next tensor.
    public func copy(_ name: String, to writer: SafeTensorsStreamWriter) throws(SafeTensorsError) {
        if let tensor = memory?[name] {
            try writer.write(name, tensor)
            return
        }
        guard let file = files[name]?.file else { throw SafeTensorsError(path: path, problem: "no tensor named '\(name)'") }
        let outcome: Result<Void, SafeTensorsError> = try file.withRawBytes(of: name) { raw in
            do throws(SafeTensorsError) { try writer.writeRaw(name, bytes: raw); return .success(()) } catch { return .failure(error) }
        }
        try outcome.get()
    }

    /// The `__metadata__` of output file `fileName` of the layout as the input holds it (`{"format":
    /// "pt"}` for a PyTorch state dict written as safetensors), empty when it has none.
    public func metadata(ofFile fileName: String) -> [String: String] { metadataByFile[fileName] ?? [:] }

    /// Starts reading tensor `name` from disk ahead of use, asynchronously (no effect for a state
    /// dict, which is in memory): a streaming pass calls it for the next tensor while it works on
    /// the current one.
    public func prefetch(_ name: String) { files[name]?.prefetch(name) }

    /// Hands the resident pages of tensor `name` back to the kernel (no effect for a state dict).
    public func release(_ name: String) { files[name]?.release(name) }

    /// The total number of elements of tensors `names` (all tensors by default).
    public func elementCount(of names: [String]? = nil) -> Int {
        (names ?? self.names).reduce(0) { $0 + ((try? entry($1).shape.reduce(1, *)) ?? 0) }
    }
}

extension SafeTensorsDType {
    /// The safetensors dtype of a PyTorch storage dtype (all ten have one).
    init?(torch dtype: TorchDType) {
        switch dtype {
        case .float32: self = .float32
        case .float64: self = .float64
        case .float16: self = .float16
        case .bfloat16: self = .bfloat16
        case .int64: self = .int64
        case .int32: self = .int32
        case .int16: self = .int16
        case .int8: self = .int8
        case .uint8: self = .uint8
        case .bool: self = .bool
        }
    }
}
