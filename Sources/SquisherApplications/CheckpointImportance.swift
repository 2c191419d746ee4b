import Foundation
import SquisherCheckpoints
import SquisherEstimators
import SquisherIO
import SquisherOptimizers
import SquisherTensor

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
/// Memory: an optimizer state is loaded whole (`TorchOptimizerState`, all buffers in float32). Give
/// a `scratchFolder` and the importance is written there as safetensors and memory-mapped back, so
/// the state is freed before the streaming pass: peak memory is then one optimizer state, whatever
/// the number of checkpoints.
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
    private let memory: NamedTensors?

    private init(path: String, conventions: [String: String], without: [String], mapped: MappedSafeTensors?, memory: NamedTensors?) {
        self.path = path
        self.conventions = conventions
        self.parametersWithoutImportance = without
        self.mapped = mapped
        self.memory = memory
    }

    /// Reads the importances of `model` from `source`.
    /// - Parameters:
    ///   - scratchFolder: where to spill an optimizer-derived importance (see the type's memory note);
    ///     the caller removes the folder afterwards.
    /// - Throws: ``ApplicationError`` naming the file: no `optimizer.pt`, an unreadable or hostile
    ///   file, an optimizer without a squared-gradient accumulator, an undecidable mapping.
    public init(
        _ source: CheckpointImportanceSource, model: CheckpointModel, options: OptimizerImportanceOptions = OptimizerImportanceOptions(),
        scratchFolder: URL? = nil
    ) throws(ApplicationError) {
        func wrap(_ error: any Error) -> ApplicationError { ApplicationError(application: "importance", problem: "\(error)") }
        let optimizerURL: URL
        switch source {
        case .importanceFile(let url):
            let file: MappedSafeTensors
            do { file = try MappedSafeTensors(url) } catch { throw wrap(error) }
            let entries = file.file.entries
            if let bad = file.file.names.first(where: { !entries[$0]!.dtype.isFloatingPoint }) {
                throw ApplicationError(application: "importance", problem: "\(url.path): tensor '\(bad)' is \(entries[bad]!.dtype.rawValue); an importance file holds floating-point tensors")
            }
            path = url.path
            var metadata = file.file.metadata
            metadata["source"] = metadata["source"] ?? "importance file"
            conventions = metadata
            parametersWithoutImportance = model.names.filter { entries[$0] == nil }
            mapped = file
            memory = nil
            return
        case .optimizer:
            optimizerURL = model.optimizerURL ?? model.folder  // any optimizer state the folder holds (OptimizerCheckpoint.open)
        case .optimizerFile(let url):
            optimizerURL = url
        }
        let values: NamedTensors
        var conventions: [String: String]
        var without: [String]
        do {
            (values, conventions, without) = try Self.fromOptimizer(optimizerURL, model: model, options: options)
        } catch let error as ApplicationError { throw error } catch { throw wrap(error) }
        without += model.names.filter { values[$0] == nil && !without.contains($0) }
        if !without.isEmpty { conventions["no_importance"] = without.joined(separator: ",") }
        path = optimizerURL.path
        self.conventions = conventions
        parametersWithoutImportance = model.names.filter { without.contains($0) }
        if let scratchFolder {
            let url = scratchFolder.appendingPathComponent("importance-\(UUID().uuidString).safetensors")
            do {
                try SafeTensorsWriter.write(values, metadata: conventions, to: url)
                mapped = try MappedSafeTensors(url)
            } catch { throw wrap(error) }
            memory = nil
        } else {
            mapped = nil
            memory = values
        }
    }

    /// The Squisher of a checkpoint's optimizer state (any format ``OptimizerCheckpoint`` reads),
    /// keyed by model parameter name, only for parameters with state; tied aliases the model holds
    /// get the importance of the parameter they share.
    static func fromOptimizer(
        _ url: URL, model: CheckpointModel, options: OptimizerImportanceOptions
    ) throws -> (NamedTensors, [String: String], [String]) {
        let explicit = try options.mappingFile.map(OptimizerParameterMapping.readMappingFile)
        let checkpoint = try OptimizerCheckpoint.open(url, mapping: explicit)
        var (values, conventions) = try squisher(of: checkpoint, options: options)
        for (alias, target) in checkpoint.tiedParameters.sorted(by: { $0.key < $1.key }) where values[alias] == nil && model.names.contains(alias) {
            if let shared = values[target] { values[alias] = shared }
        }
        return (values, conventions, checkpoint.moments.parametersWithoutState)
    }

    /// The Squisher [1] of every parameter with state in `checkpoint`: its second moment, divided by
    /// `1 − β₂ᵗ` with its own step and EMA decay when `options.biasCorrection`, times the scaling.
    /// Parameters are grouped by their EMA decay, each group estimated by ``Squisher``.
    /// - Returns: the importances by parameter name and the conventions (`source`, `scaling`,
    ///   `bias_correction`, `format`, `mapping`, `optimizer`, `tied`).
    /// - Throws: ``ApplicationError`` when bias correction is asked for an accumulator without a
    ///   constant decay (Adafactor's β₂ changes every step; Adagrad sums).
    public static func squisher(of checkpoint: OptimizerCheckpoint, options: OptimizerImportanceOptions) throws -> (NamedTensors, [String: String]) {
        let moments = checkpoint.moments
        let kind = moments.source == .squareAvg ? "RMSprop" : moments.source == .sum ? "Adagrad" : "Adam"
        let bufferName = kind == "RMSprop" ? "square_avg" : kind == "Adagrad" ? "sum" : "exp_avg_sq"
        if options.biasCorrection, kind != "Adagrad", let missing = moments.values.names.first(where: { moments.decay[$0] == nil }) {
            let why = checkpoint.optimizer == .adafactor
                ? "Adafactor's beta2 changes every step (1 - t^-0.8), so its second moment needs no bias correction"
                : "'\(missing)' has no EMA decay (betas) in its param group"
            throw ApplicationError(application: "importance", problem: "\(checkpoint.path): --bias-correction does not apply: \(why)")
        }
        var byDecay: [Double?: [String]] = [:]
        var decays: [Double?] = []
        for name in moments.values.names {
            let decay = moments.decay[name]
            if byDecay[decay] == nil { decays.append(decay) }
            byDecay[decay, default: []].append(name)
        }
        var values = NamedTensors()
        var conventions: [String: String] = [:]
        for decay in decays {
            let names = byDecay[decay]!
            var buffers = NamedTensors()
            for name in names { buffers[name] = moments.values[name]! }
            var hyperparameters: [String: Double] = [:]
            if let decay { hyperparameters[kind == "RMSprop" ? "alpha" : "beta2"] = decay }
            let state = OptimizerState(kind: kind, hyperparameters: hyperparameters, steps: moments.steps.filter { names.contains($0.key) }, buffers: [bufferName: buffers])
            let squisher = Squisher(source: .state(state), biasCorrection: options.biasCorrection, scaling: options.scaling)
            let importance = try squisher.estimate(parameters: names.map { ($0, buffers[$0]!.shape) })
            for name in names { values[name] = importance.values[name]! }
            conventions = importance.conventions
        }
        conventions["no_state"] = nil
        conventions["source"] = "\(checkpoint.optimizer.rawValue) \(moments.source.rawValue)"
        conventions["format"] = checkpoint.format.description
        conventions["mapping"] = checkpoint.nameSource.label
        conventions["names"] = checkpoint.nameSource.description
        conventions["optimizer"] = checkpoint.optimizer.rawValue
        if options.biasCorrection, let step = moments.steps.values.max() { conventions["steps"] = "\(step)" }
        if !checkpoint.tiedParameters.isEmpty {
            conventions["tied"] = checkpoint.tiedParameters.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
        }
        return (values, conventions)
    }

    /// Whether tensor `name` has an importance.
    public func covers(_ name: String) -> Bool {
        if let memory { return memory[name] != nil }
        return mapped!.file.entries[name] != nil
    }

    /// The shape of tensor `name`'s importance, or nil without one.
    public func shape(_ name: String) -> [Int]? {
        if let memory { return memory[name]?.shape }
        return mapped!.file.entries[name]?.shape
    }

    /// Elements `range` of the importance of `name` in float32, checked finite and non-negative.
    /// - Throws: ``ApplicationError`` naming the file, tensor and element for a negative or
    ///   non-finite value, or when there is no importance for `name`.
    public func floats(_ name: String, range: Range<Int>) throws(ApplicationError) -> [Float] {
        var values: [Float]
        if let memory {
            guard let tensor = memory[name] else { throw ApplicationError(application: "importance", problem: "\(path): no importance for '\(name)'") }
            values = Array(tensor.scalars[range])
        } else {
            let file = mapped!.file
            guard let entry = file.entries[name] else { throw ApplicationError(application: "importance", problem: "\(path): no importance for '\(name)'") }
            values = (try? file.withRawBytes(of: name) { raw in
                [Float](unsafeUninitializedCapacity: range.count) { buffer, initialized in
                    CheckpointDecoding.decode(raw, dtype: entry.dtype, range: range, into: buffer)
                    initialized = range.count
                }
            }) ?? []
        }
        if let bad = values.firstIndex(where: { !($0 >= 0) || !$0.isFinite }) {
            throw ApplicationError(application: "importance", problem: "\(path): importance of '\(name)' has entry \(range.lowerBound + bad) = \(values[bad]); expected finite and >= 0")
        }
        return values
    }

    /// Hands the resident pages of `name` back to the kernel.
    public func release(_ name: String) { mapped?.release(name) }
}
