import Foundation
import SquisherCheckpoints
import SquisherEstimators
import SquisherIO
import SquisherOptimizers
import SquisherTensor
import Synchronization

/// Where a checkpoint's importances (diagonal Fisher estimates, one tensor per parameter name) come from.
public enum CheckpointImportanceSource: Sendable, Hashable {
    /// The checkpoint folder's optimizer state, in any format ``OptimizerCheckpoint`` reads
    /// (`optimizer.pt`, a DeepSpeed `global_stepN/`, a DCP folder, ...).
    case optimizer
    /// An explicit `torch.save` optimizer state file.
    case optimizerFile(URL)
    /// A safetensors file of non-negative tensors keyed by parameter name (written by
    /// `squisher estimate`, ``Importance/save(to:)``, or a previous run).
    case importanceFile(URL)

    /// Parses a command-line value: `optimizer`, a `.pt`/`.pth`/`.bin` optimizer file, or an
    /// importance `.safetensors` file.
    public init(argument: String) {
        if argument == "optimizer" { self = .optimizer; return }
        let url = URL(fileURLWithPath: argument)
        let ext = url.pathExtension
        self = ext == "pt" || ext == "pth" || ext == "bin" ? .optimizerFile(url) : .importanceFile(url)
    }
}

/// How an optimizer state's accumulator becomes an importance: the Squisher's options [1].
public struct OptimizerImportanceOptions: Sendable, Hashable {
    /// Raw `v`, `B·v`, `N·v` (see ``SquisherScaling``); only UBGM and EWC care about the scale.
    public var scaling: SquisherScaling
    /// Divide the EMA (`exp_avg_sq`, `square_avg`) by `1 − β₂ᵗ` with each parameter's step count and
    /// its param group's `β₂` (`alpha` for RMSprop). PyTorch stores `v` uncorrected.
    public var biasCorrection: Bool
    /// An explicit index → name mapping file (`{"0": "fc1.weight", ...}`), used when the state stores
    /// no names and the model order cannot decide.
    public var mappingFile: URL?

    /// Options; defaults are raw `v`, no bias correction, no mapping file.
    public init(scaling: SquisherScaling = .none, biasCorrection: Bool = false, mappingFile: URL? = nil) {
        self.scaling = scaling
        self.biasCorrection = biasCorrection
        self.mappingFile = mappingFile
    }
}

/// A checkpoint's importances, read tensor by tensor: from an importance safetensors file
/// (memory-mapped) or from an optimizer state in any format ``OptimizerCheckpoint`` reads (Hugging
/// Face Trainer, PEFT, DeepSpeed ZeRO, FSDP/DCP, Adafactor, bitsandbytes, torch), recycled with
/// ``Squisher`` (see ``squisher(of:options:)``).
///
/// Parameter names are recovered by ``OptimizerCheckpoint`` from what the folder holds (an explicit
/// mapping file takes precedence); when that cannot be decided it is an error naming why, never a
/// guess. Tied aliases the model file holds (`lm_head.weight` beside `transformer.wte.weight`) get
/// the importance of the parameter they share. Parameters the optimizer lists
/// without state (frozen, or never given a gradient) and model tensors the optimizer does not list
/// have **no importance** (``parametersWithoutImportance``); each application says what it does then.
///
/// Memory: an optimizer state stays memory-mapped (``SecondMoments`` reads each parameter's second
/// moment on demand); the importance of one parameter is computed when it is first read and kept
/// until ``release(_:)`` (or the next parameter), so a streaming pass holds one float32 tensor per
/// checkpoint, whatever the model size. Invalid values (NaN in `exp_avg_sq`) are found when read;
/// ``validate()`` reads everything up front.
///
/// [1]: Li, Dangel, Tam, Raffel 2025, Fishers for Free?
public final class CheckpointImportance: @unchecked Sendable {
    /// Where the values came from (a file path), for messages.
    public let path: String
    /// How the values were obtained (`source`, `scaling`, `bias_correction`, `mapping`, ...).
    public let conventions: [String: String]
    /// Model tensors without importance (no optimizer state, or absent from the file), in model order.
    public let parametersWithoutImportance: [String]
    private let mapped: MappedSafeTensors?
    private let optimizer: OptimizerSquisher?

    /// Reads the importances of `model` from `source`.
    /// - Throws: ``CheckpointError`` naming the file: no `optimizer.pt`, an unreadable or hostile
    ///   file, an optimizer without a squared-gradient accumulator, an undecidable mapping.
    public init(
        _ source: CheckpointImportanceSource, model: CheckpointModel, options: OptimizerImportanceOptions = OptimizerImportanceOptions()
    ) throws(CheckpointError) {
        func wrap(_ error: any Error) -> CheckpointError { CheckpointError(wrapping: error) }
        let optimizerURL: URL
        switch source {
        case .importanceFile(let url):
            let file: MappedSafeTensors
            do { file = try MappedSafeTensors(url) } catch { throw wrap(error) }
            let entries = file.file.entries
            if let bad = file.file.names.first(where: { !entries[$0]!.dtype.isFloatingPoint }) {
                throw CheckpointError(path: url.path, problem: "tensor '\(bad)' is \(entries[bad]!.dtype.rawValue); an importance file holds floating-point tensors")
            }
            path = url.path
            var metadata = file.file.metadata
            metadata["source"] = metadata["source"] ?? "importance file"
            conventions = metadata
            parametersWithoutImportance = model.names.filter { entries[$0] == nil }
            mapped = file
            optimizer = nil
            return
        case .optimizer:
            optimizerURL = model.optimizerURL ?? model.folder  // any optimizer state the folder holds (OptimizerCheckpoint.open)
        case .optimizerFile(let url):
            optimizerURL = url
        }
        let checkpoint: OptimizerCheckpoint
        var conventions: [String: String]
        do {
            checkpoint = try OptimizerCheckpoint.open(optimizerURL, mapping: try options.mappingFile.map(OptimizerParameterMapping.readMappingFile))
            conventions = try Self.conventions(of: checkpoint, options: options)
        } catch let error as CheckpointError { throw error } catch { throw wrap(error) }
        // Tied aliases the model holds (lm_head.weight beside transformer.wte.weight) share the importance.
        let aliases = checkpoint.tiedParameters.filter { model.names.contains($0.key) && checkpoint.moments.shapes[$0.key] == nil && checkpoint.moments.shapes[$0.value] != nil }
        let covered = Set(checkpoint.moments.names).union(aliases.keys)
        var without = checkpoint.moments.parametersWithoutState
        without += model.names.filter { !covered.contains($0) && !without.contains($0) }
        if !without.isEmpty { conventions["no_importance"] = without.joined(separator: ",") }
        path = optimizerURL.path
        self.conventions = conventions
        parametersWithoutImportance = model.names.filter { without.contains($0) }
        mapped = nil
        optimizer = OptimizerSquisher(checkpoint: checkpoint, options: options, aliases: aliases)
    }

    /// Reads (and checks) every importance now: a value that is NaN, infinite or negative is
    /// reported here instead of in the middle of a streaming pass.
    /// - Throws: ``CheckpointError`` naming the file and parameter (see ``decode(_:range:into:)``).
    public func validate() throws(CheckpointError) {
        let names = optimizer.map { Array($0.checkpoint.moments.names) + $0.aliases.keys.sorted() } ?? mapped!.file.names
        for name in names {
            let count = shape(name)!.reduce(1, *)
            var buffer = [Float](repeating: 0, count: count)
            try buffer.withUnsafeMutableBufferPointer { (out: inout UnsafeMutableBufferPointer<Float>) throws(CheckpointError) in
                try decode(name, range: 0..<count, into: out)
            }
            release(name)
        }
    }

    /// The Squisher [1] of every parameter with state in `checkpoint`, in memory: see
    /// ``squisher(of:parameter:options:)``.
    /// - Returns: the importances by parameter name and ``conventions(of:options:)``.
    public static func squisher(of checkpoint: OptimizerCheckpoint, options: OptimizerImportanceOptions) throws -> (NamedTensors, [String: String]) {
        let conventions = try conventions(of: checkpoint, options: options)
        var values = NamedTensors()
        for name in checkpoint.moments.names { values[name] = try squisher(of: checkpoint, parameter: name, options: options) }
        return (values, conventions)
    }

    /// Writes the Squisher of every parameter with state in `checkpoint` (and `aliases`, alias → the
    /// parameter whose value it shares) to a safetensors file, one tensor at a time: the peak memory
    /// is one parameter's tensor, whatever the checkpoint size.
    public static func writeSquisher(
        of checkpoint: OptimizerCheckpoint, options: OptimizerImportanceOptions, aliases: [String: String] = [:], conventions: [String: String], to url: URL
    ) throws {
        let moments = checkpoint.moments
        let aliasList = aliases.sorted { $0.key < $1.key }
        let specs = moments.names.map { SafeTensorsStreamWriter.TensorSpec(name: $0, shape: moments.shapes[$0]!) }
            + aliasList.map { SafeTensorsStreamWriter.TensorSpec(name: $0.key, shape: moments.shapes[$0.value]!) }
        let writer = try SafeTensorsStreamWriter(to: url, tensors: specs, metadata: conventions)
        do {
            for name in moments.names { try writer.write(name, try squisher(of: checkpoint, parameter: name, options: options)) }
            for (alias, target) in aliasList { try writer.write(alias, try squisher(of: checkpoint, parameter: target, options: options)) }
            try writer.finish()
        } catch {
            writer.cancel()
            throw error
        }
    }

    /// The Squisher [1] of one parameter: its second moment (``SecondMoments/value(of:)``), through
    /// ``Squisher`` with the parameter's own step and EMA decay (divided by `1 − β₂ᵗ` when
    /// `options.biasCorrection`), times the scaling.
    public static func squisher(of checkpoint: OptimizerCheckpoint, parameter name: String, options: OptimizerImportanceOptions) throws -> Tensor {
        let moments = checkpoint.moments
        let (kind, bufferName) = accumulator(of: moments.source)
        var hyperparameters: [String: Double] = [:]
        if let decay = moments.decay[name] { hyperparameters[kind == "RMSprop" ? "alpha" : "beta2"] = decay }
        let value = try moments.value(of: name)
        let state = OptimizerState(kind: kind, hyperparameters: hyperparameters, steps: moments.steps[name].map { [name: $0] } ?? [:],
                                   buffers: [bufferName: try NamedTensors([(name, value)])])
        let importance = try Squisher(source: .state(state), biasCorrection: options.biasCorrection, scaling: options.scaling)
            .estimate(parameters: [(name, value.shape)])
        return importance.values[name]!
    }

    /// The Squisher's accumulator kind and buffer for a second moment (NAdam, RAdam, Adafactor and
    /// bitsandbytes hold Adam's EMA `v`).
    static func accumulator(of source: SecondMomentSource) -> (kind: String, buffer: String) {
        switch source {
        case .squareAvg: ("RMSprop", "square_avg")
        case .sum: ("Adagrad", "sum")
        case .expAvgSq, .adafactorFactored, .bitsAndBytesState2: ("Adam", "exp_avg_sq")
        }
    }

    /// The conventions of the Squisher of `checkpoint`: `source`, `scaling`, `bias_correction`,
    /// `reduction`, `format`, `mapping`, `names`, `optimizer`, `tied`.
    /// - Throws: ``CheckpointError`` when bias correction is asked for an accumulator without a
    ///   constant decay (Adafactor's β₂ changes every step; Adagrad sums).
    public static func conventions(of checkpoint: OptimizerCheckpoint, options: OptimizerImportanceOptions) throws -> [String: String] {
        let moments = checkpoint.moments
        let kind = accumulator(of: moments.source).kind
        if options.biasCorrection, kind != "Adagrad", let missing = moments.names.first(where: { moments.decay[$0] == nil }) {
            let why = checkpoint.optimizer == .adafactor
                ? "Adafactor's beta2 changes every step (1 - t^-0.8), so its second moment needs no bias correction"
                : "'\(missing)' has no EMA decay (betas) in its param group"
            throw CheckpointError(path: checkpoint.path, problem: "--bias-correction does not apply: \(why)")
        }
        if options.biasCorrection, kind != "Adagrad", let bad = moments.names.first(where: { moments.decay[$0].map { !($0 >= 0 && $0 < 1) } ?? false }) {
            // 1 − β₂ᵗ would be 0 (or negative): no correction exists.
            throw CheckpointError(path: checkpoint.path, problem: "--bias-correction needs beta2 in [0, 1), '\(bad)' has \(moments.decay[bad]!)")
        }
        var conventions = [
            "source": "\(checkpoint.optimizer.rawValue) \(moments.source.rawValue)", "scaling": options.scaling.label,
            "bias_correction": options.biasCorrection ? "on" : "off", "reduction": "EMA of squared mean mini-batch gradients",
            "format": checkpoint.format.description, "mapping": checkpoint.nameSource.label,
            "names": checkpoint.nameSource.description, "optimizer": checkpoint.optimizer.rawValue,
        ]
        if moments.source == .sum { conventions["reduction"] = "sum of squared mean mini-batch gradients" }
        if options.biasCorrection, let step = moments.steps.values.max() { conventions["steps"] = "\(step)" }
        if !checkpoint.tiedParameters.isEmpty {
            conventions["tied"] = checkpoint.tiedParameters.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
        }
        return conventions
    }

    /// Whether tensor `name` has an importance.
    public func covers(_ name: String) -> Bool { shape(name) != nil }

    /// The shape of tensor `name`'s importance, or nil without one.
    public func shape(_ name: String) -> [Int]? {
        if let optimizer { return optimizer.shape(name) }
        return mapped!.file.entries[name]?.shape
    }

    /// Decodes elements `range` of the importance of `name` into `out` as float32
    /// (`out.count == range.count`), checked finite and non-negative.
    /// - Throws: ``CheckpointError`` naming the file, tensor and element for a negative or
    ///   non-finite value, or when there is no importance for `name` or `range` lies outside it.
    public func decode(_ name: String, range: Range<Int>, into out: UnsafeMutableBufferPointer<Float>) throws(CheckpointError) {
        guard let shape = shape(name) else { throw CheckpointError(path: path, problem: "no importance for '\(name)'") }
        let count = shape.reduce(1, *)
        guard range.lowerBound >= 0, range.upperBound <= count, out.count == range.count else {
            throw CheckpointError(path: path, problem: "importance of '\(name)' has \(count) elements; cannot read elements \(range) into \(out.count) values")
        }
        if let optimizer {
            let tensor = try optimizer.importance(of: name, path: path)
            tensor.scalars.withUnsafeBufferPointer { source in
                _ = out.initialize(fromContentsOf: UnsafeBufferPointer(rebasing: source[range]))
            }
        } else {
            let file = mapped!.file
            let dtype = file.entries[name]!.dtype
            _ = try? file.withRawBytes(of: name) { raw in CheckpointDecoding.decode(raw, dtype: dtype, range: range, into: out) }
        }
        if let bad = FloatScan.firstNegativeOrNonFinite(UnsafeBufferPointer(out)) {
            throw CheckpointError(path: path, problem: "importance of '\(name)' has entry \(range.lowerBound + bad) = \(out[bad]); expected finite and >= 0")
        }
    }

    /// Elements `range` of the importance of `name` in float32, checked finite and non-negative
    /// (see ``decode(_:range:into:)``).
    public func floats(_ name: String, range: Range<Int>) throws(CheckpointError) -> [Float] {
        var result = [Float](repeating: 0, count: range.count)
        try result.withUnsafeMutableBufferPointer { (buffer: inout UnsafeMutableBufferPointer<Float>) throws(CheckpointError) in
            try decode(name, range: range, into: buffer)
        }
        return result
    }

    /// Starts reading the importance of `name` (the file bytes it is computed from) ahead of use,
    /// asynchronously.
    public func prefetch(_ name: String) {
        mapped?.prefetch(name)
        if let optimizer { optimizer.checkpoint.moments.prefetch(optimizer.aliases[name] ?? name) }
    }

    /// Hands the resident pages of `name` back to the kernel.
    public func release(_ name: String) {
        mapped?.release(name)
        optimizer?.forget(name)
    }
}

/// The Squisher of an optimizer checkpoint, one parameter at a time: computed on first read and
/// kept until forgotten (or replaced by the next parameter), so threads reading chunks of the same
/// parameter share one computation.
final class OptimizerSquisher: Sendable {
    let checkpoint: OptimizerCheckpoint
    let options: OptimizerImportanceOptions
    /// Tied alias → the parameter whose state it shares.
    let aliases: [String: String]
    private let current = Mutex<(name: String, value: Tensor)?>(nil)

    init(checkpoint: OptimizerCheckpoint, options: OptimizerImportanceOptions, aliases: [String: String]) {
        self.checkpoint = checkpoint
        self.options = options
        self.aliases = aliases
    }

    func shape(_ name: String) -> [Int]? { checkpoint.moments.shapes[aliases[name] ?? name] }

    /// The importance of `name` (of its tied partner for an alias), computed once.
    func importance(of name: String, path: String) throws(CheckpointError) -> Tensor {
        let parameter = aliases[name] ?? name
        return try current.withLock { (slot: inout (name: String, value: Tensor)?) throws(CheckpointError) -> Tensor in
            if let slot, slot.name == parameter { return slot.value }
            let value: Tensor
            do { value = try CheckpointImportance.squisher(of: checkpoint, parameter: parameter, options: options) } catch {
                // Name the file: an invalid value (NaN in exp_avg_sq) is only found when it is read.
                throw CheckpointError(path: path, problem: "\(error)", cause: error)
            }
            slot = (parameter, value)
            return value
        }
    }

    /// Drops the kept value if it is `name`'s.
    func forget(_ name: String) {
        let parameter = aliases[name] ?? name
        current.withLock { if $0?.name == parameter { $0 = nil } }
    }
}
