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

/// The model half of a checkpoint: its tensors by name, read one at a time, and its file layout.
///
/// A checkpoint is a folder or an explicit file:
/// - folder: `model.safetensors.index.json` (+ shards) if present, else `model.safetensors`, else
///   the only `*.safetensors` file, else `pytorch_model.bin` / `model.pt`, else a DeepSpeed ZeRO 1/2
///   checkpoint (`latest` + `global_stepN/`, or a `global_stepN/` folder: the `module` of
///   `mp_rank_00_model_states.pt`), else a `torch.distributed.checkpoint` folder (`.metadata` +
///   `*.distcp`: its `model.*` entries, FSDP shards reassembled). Beside it, `optimizer.pt`
///   (``optimizerURL``) and `model.pt` / `pytorch_model.bin` (``modelOrderURL``, the parameter
///   registration order that maps optimizer indices to names).
/// - file: `*.safetensors`, `*.index.json` (a shard index), or `*.pt` / `*.bin` (a state dict).
///
/// Every file is memory-mapped and validated on open; tensors are decoded on demand, in chunks,
/// read ahead (``prefetch(_:)``) and their pages released after use (``release(_:)``), so resident
/// memory stays bounded by the tensors in flight. Tensor order (``names``) is the data order of each
/// file, shard after shard in the index's order of first appearance (the registration order for
/// PyTorch formats): the order in which outputs are written.
public final class CheckpointModel: @unchecked Sendable {
    /// How the model's tensors are laid out in files; outputs repeat it.
    public enum Layout: Sendable, Hashable {
        /// One safetensors file (its file name).
        case single(fileName: String)
        /// Shards listed by an index file: the index file name and each shard's file name with its
        /// tensors in data order.
        case sharded(indexFileName: String, shards: [Shard])
        /// A PyTorch state dict (outputs are written as `model.safetensors`).
        case torchStateDict(fileName: String)
        /// The module of a DeepSpeed ZeRO 1/2 checkpoint, read from the tag folder named (outputs are
        /// written as `model.safetensors`).
        case deepSpeed(tag: String)
        /// The `model.*` entries of a DCP folder (outputs are written as `model.safetensors`).
        case distributedCheckpoint
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
    private let torch: TorchModelWeights?
    private let torchDTypes: [String: SafeTensorsDType]

    /// Opens a checkpoint folder or model file (see the type's documentation).
    /// - Throws: ``CheckpointError`` naming the path: nothing recognizable, a malformed or missing
    ///   file (the safetensors or checkpoint reader's message), shards that disagree with the index.
    public init(contentsOf url: URL) throws(CheckpointError) {
        let located = try CheckpointModelFiles.locate(url)
        path = url.path
        folder = located.folder
        optimizerURL = located.optimizer
        modelOrderURL = located.modelOrder
        var modelFiles: [URL]
        switch located.model {
        case .safetensors(let file):
            let mapped = try CheckpointModelFiles.mapped(file)
            files = Dictionary(uniqueKeysWithValues: mapped.file.names.map { ($0, mapped) })
            names = mapped.file.names
            layout = .single(fileName: file.lastPathComponent)
            metadataByFile = [file.lastPathComponent: mapped.file.metadata]
            (torch, torchDTypes) = (nil, [:])
            modelFiles = [file]
        case .shardIndex(let index):
            let shards = try CheckpointModelFiles.shards(index)
            files = shards.files
            names = shards.layout.flatMap(\.tensors)
            layout = .sharded(indexFileName: index.lastPathComponent, shards: shards.layout)
            metadataByFile = shards.metadata
            (torch, torchDTypes) = (nil, [:])
            modelFiles = shards.urls
        case .torch(let weights, let layout):
            files = [:]
            names = weights.names
            self.layout = layout
            metadataByFile = ["model.safetensors": ["format": "pt"]]
            torch = weights
            torchDTypes = try CheckpointModelFiles.safetensorsDTypes(of: weights)
            modelFiles = weights.inputs
        }
        inputs = (located.isFolder ? [url] : []) + modelFiles + [optimizerURL, modelOrderURL].compactMap { $0 }
    }

    /// The element type and shape of tensor `name`.
    /// - Throws: ``CheckpointError`` when the model has no such tensor.
    public func entry(_ name: String) throws(CheckpointError) -> (dtype: SafeTensorsDType, shape: [Int]) {
        if let file = files[name], let entry = file.file.entries[name] { return (entry.dtype, entry.shape) }
        if let torch, let dtype = torchDTypes[name] { return (dtype, try torch.shape(name)) }
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
        if let torch {
            try torch.decode(name, range: range, into: out)
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
        if let torch {
            let copied: Void?
            do {
                copied = try torch.withContiguousBytes(name) { (raw: UnsafeRawBufferPointer) throws(CheckpointError) in
                    do { try writer.writeRaw(name, bytes: raw) } catch { throw CheckpointError(wrapping: error) }
                }
            } catch { throw SafeTensorsError(path: path, problem: "\(error)", cause: error) }
            if copied != nil { return }
            // A strided view or a tensor assembled from shards: through float32 (exact for floats
            // and integers up to 2^24 in magnitude).
            do { try writer.write(name, Tensor(uncheckedShape: try torch.shape(name), scalars: try torch.floats(name))) } catch let error as SafeTensorsError {
                throw error
            } catch { throw SafeTensorsError(path: path, problem: "\(error)", cause: error) }
            return
        }
        guard let file = files[name]?.file else { throw SafeTensorsError(path: path, problem: "no tensor named '\(name)'") }
        let outcome: Result<Void, SafeTensorsError> = try file.withRawBytes(of: name) { raw in
            do throws(SafeTensorsError) { try writer.writeRaw(name, bytes: raw); return .success(()) } catch { return .failure(error) }
        }
        try outcome.get()
    }

    /// The `__metadata__` of output file `fileName` of the layout as the input holds it (`{"format":
    /// "pt"}` for a PyTorch format written as safetensors), empty when it has none.
    public func metadata(ofFile fileName: String) -> [String: String] { metadataByFile[fileName] ?? [:] }

    /// Starts reading tensor `name` from disk ahead of use, asynchronously: a streaming pass calls it
    /// for the next tensor while it works on the current one.
    public func prefetch(_ name: String) {
        files[name]?.prefetch(name)
        torch?.prefetch(name)
    }

    /// Hands the resident pages of tensor `name` back to the kernel.
    public func release(_ name: String) {
        files[name]?.release(name)
        torch?.release(name)
    }

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
