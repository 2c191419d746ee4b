import Foundation

/// The model weights of a PyTorch-serialized checkpoint, read lazily from memory-mapped files: a
/// `torch.save` state dict (`pytorch_model.bin`, `model.pt`, a `{"model": ...}` bundle), the `module`
/// of a DeepSpeed ZeRO 1/2 checkpoint, or the `model.*` entries of a `torch.distributed.checkpoint`
/// (DCP) folder with its dimension-0 shards reassembled.
///
/// ```swift
/// let weights = try TorchModelWeights.distributedCheckpoint(URL(fileURLWithPath: "step-500"))
/// var chunk = [Float](repeating: 0, count: 4096)
/// for name in weights.names {
///     let count = try weights.shape(name).reduce(1, *)
///     for start in stride(from: 0, to: count, by: 4096) {
///         let range = start..<min(count, start + 4096)
///         try chunk.withUnsafeMutableBufferPointer { try weights.decode(name, range: range, into: $0) }
///     }
///     weights.release(name)
/// }
/// ```
///
/// Opening parses only pickles and headers; no tensor is converted. ``decode(_:range:into:)``
/// converts row-major elements of one tensor straight from the mapped bytes (float32, float16 and
/// bfloat16 exactly), and ``release(_:)`` hands its pages back to the kernel, so a pass over the model
/// keeps resident memory near the chunk in flight, not the file size. Storage offsets and strides are
/// honoured (a non-contiguous tensor is gathered element by element in row-major order). Pickles go
/// through ``RestrictedUnpickler`` with the format's ``PickleAllowList``; nothing is executed.
///
/// - Complexity: opening is linear in the pickles' size; `decode` is linear in `range.count`.
public struct TorchModelWeights: Sendable {
    /// Where the weights were read from.
    public enum Source: Sendable, Hashable {
        /// A `torch.save` state dict; `key` is the entry of the saved dictionary that holds it (`"model"`
        /// of a `dcp_to_torch_save` file), or nil for a plain state dict.
        case torchStateDict(key: String?)
        /// The `module` of a DeepSpeed ZeRO checkpoint's model-states file (stage 1 or 2, any world size).
        case deepSpeed(stage: Int, huggingFaceFolder: Bool)
        /// The entries with a key prefix (`"model."`) of a DCP folder, read from `files` `.distcp` files.
        case distributedCheckpoint(prefix: String, files: Int)
    }

    /// Every tensor name, in the file's data order: the model's registration order (`state_dict()`
    /// order) for all three sources. Includes buffers (BatchNorm statistics) and tied aliases that the
    /// file stores (DeepSpeed keeps `lm_head.weight` beside `transformer.wte.weight`).
    public let names: [String]
    /// Every file read (the state dict, the model-states file, `.metadata` and the `.distcp` files).
    public let inputs: [URL]
    /// The format read.
    public let source: Source
    /// Tied aliases the checkpoint declares: alias → the parameter it shares storage with (DeepSpeed's
    /// `shared_params`, e.g. `lm_head.weight` → `transformer.wte.weight`); empty when none are declared.
    public let tiedParameters: [String: String]
    /// The file or folder read, for messages.
    public let path: String
    let tensors: [String: TorchTensor]

    init(names: [String], tensors: [String: TorchTensor], inputs: [URL], source: Source, tiedParameters: [String: String], path: String) {
        self.names = names
        self.tensors = tensors
        self.inputs = inputs
        self.source = source
        self.tiedParameters = tiedParameters
        self.path = path
    }

    /// The tensor `name`, or an error naming it and the file.
    func tensor(_ name: String) throws(CheckpointError) -> TorchTensor {
        guard let tensor = tensors[name] else {
            throw CheckpointError(path: path, problem: "has no tensor '\(name)' (\(names.count) tensors, e.g. \(names.prefix(3).joined(separator: ", ")))")
        }
        return tensor
    }

    /// The element type of `name` in the file.
    /// - Throws: ``CheckpointError`` when there is no tensor `name`.
    public func dtype(_ name: String) throws(CheckpointError) -> TorchDType { try tensor(name).dtype }

    /// The shape of `name` (`[]` for a 0-dim tensor).
    /// - Throws: ``CheckpointError`` when there is no tensor `name`.
    public func shape(_ name: String) throws(CheckpointError) -> [Int] { try tensor(name).shape }

    /// The number of elements of `names` (every tensor when nil); unknown names count 0.
    public func elementCount(of names: [String]? = nil) -> Int {
        (names ?? self.names).reduce(0) { $0 + (tensors[$1]?.count ?? 0) }
    }

    /// Decodes row-major elements `range` of tensor `name` to float32 into `out[0..<range.count]`.
    ///
    /// Exact for float32, float16, bfloat16, 8- and 16-bit integers and bool; float64 rounds to nearest
    /// even and 32/64-bit integers beyond 2^24 in magnitude round. A contiguous float32 tensor is a
    /// `memcpy`; other contiguous types one tight conversion loop; no per-element allocation.
    /// - Throws: ``CheckpointError`` naming the tensor when there is no such tensor, `range` is not
    ///   inside `0..<elementCount`, or `out` is shorter than `range`.
    public func decode(_ name: String, range: Range<Int>, into out: UnsafeMutableBufferPointer<Float>) throws(CheckpointError) {
        let tensor = try tensor(name)
        guard range.lowerBound >= 0, range.upperBound <= tensor.count else {
            throw CheckpointError(path: path, problem: "elements \(range) of '\(name)' requested, but it has \(tensor.count) (shape \(tensor.shape))")
        }
        guard out.count >= range.count else {
            throw CheckpointError(path: path, problem: "decoding \(range.count) elements of '\(name)' into a buffer of \(out.count)")
        }
        tensor.decode(range, into: out)
    }

    /// Elements `range` of `name` (all of them when nil) as a new float32 array; see ``decode(_:range:into:)``.
    /// - Throws: ``CheckpointError`` as ``decode(_:range:into:)``.
    public func floats(_ name: String, range: Range<Int>? = nil) throws(CheckpointError) -> [Float] {
        let count = try tensor(name).count
        let range = range ?? 0..<count
        var failure: CheckpointError?
        let values = [Float](unsafeUninitializedCapacity: max(range.count, 0)) { buffer, initialized in
            do throws(CheckpointError) { try decode(name, range: range, into: buffer) } catch { failure = error; return }
            initialized = range.count
        }
        if let failure { throw failure }
        return values
    }

    /// Calls `body` with tensor `name`'s bytes when they are one contiguous run of little-endian
    /// elements in row-major order (dtype ``dtype(_:)``), for copying the tensor unchanged; returns nil
    /// without calling `body` when they are not (a strided view, a tensor assembled from shards).
    /// - Throws: ``CheckpointError`` when there is no tensor `name`, or what `body` throws.
    public func withContiguousBytes<R>(_ name: String, _ body: (UnsafeRawBufferPointer) throws(CheckpointError) -> R) throws(CheckpointError) -> R? {
        try tensor(name).withContiguousBytes(body)
    }

    /// Hands the pages of tensor `name` back to the kernel (`madvise(MADV_DONTNEED)` on its mapped
    /// bytes; re-read from the page cache if the tensor is decoded again). Unknown names are ignored.
    public func release(_ name: String) { tensors[name]?.releasePages() }

    /// Starts reading tensor `name`'s mapped bytes ahead, asynchronously (`madvise(MADV_WILLNEED)`),
    /// so a streaming pass reads the next tensor while it works on the current one. Unknown names are
    /// ignored.
    public func prefetch(_ name: String) { tensors[name]?.prefetchPages() }
}
