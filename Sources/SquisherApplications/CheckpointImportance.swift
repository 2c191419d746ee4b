import Foundation
import SquisherCheckpoints
import SquisherEstimators
import SquisherIO
import SquisherOptimizers
import SquisherTensor

/// Where a checkpoint's importances (diagonal Fisher estimates, one tensor per parameter name) come from.
public enum CheckpointImportanceSource: Sendable, Hashable {
    /// The checkpoint folder's `optimizer.pt`.
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
/// (memory-mapped) or from an optimizer state (recycled with ``Squisher``: Adam/AdamW `exp_avg_sq`,
/// RMSprop `square_avg`, Adagrad `sum`).
///
/// Optimizer indices are mapped to names by ``OptimizerParameterMapping`` (an explicit mapping
/// file, else `param_names` stored in the state, else the model's registration order from
/// `model.pt`/`pytorch_model.bin` and the param groups, every shape checked); when that cannot be
/// decided it is an error asking for a mapping file, never a guess. Parameters the optimizer lists
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
        func wrap(_ error: any Error) -> ApplicationError { ApplicationError(application: "importance", cause: error) }
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
            guard let url = model.optimizerURL else {
                throw ApplicationError(application: "importance", problem: "\(model.path): no optimizer.pt in the checkpoint folder; give an importance file or an optimizer file with --importance-source")
            }
            optimizerURL = url
        case .optimizerFile(let url):
            optimizerURL = url
        }
        let values: NamedTensors
        var conventions: [String: String]
        var without: [String]
        do {
            (values, conventions, without) = try Self.fromOptimizer(optimizerURL, model: model, options: options)
        } catch let error as ApplicationError { throw error } catch let error as CheckpointError { throw wrap(error) } catch {
            throw ApplicationError(application: "importance", problem: "\(optimizerURL.path): \(error)", cause: error)  // name the file
        }
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

    /// The Squisher of an optimizer state file, keyed by model parameter name, per param group (each
    /// group has its own `β₂`), only for parameters with state.
    static func fromOptimizer(
        _ url: URL, model: CheckpointModel, options: OptimizerImportanceOptions
    ) throws -> (NamedTensors, [String: String], [String]) {
        let state = try TorchOptimizerState(contentsOf: url)
        let explicit = try options.mappingFile.map(OptimizerParameterMapping.readMappingFile)
        let storesNames = state.groups.contains { $0.parameterNames != nil }
        var order: [ModelTensorShape]
        if explicit != nil || storesNames {
            // Names come from the mapping or the file; check them against the model's names and shapes.
            order = try model.names.map { ModelTensorShape(name: $0, shape: try model.entry($0).shape) }
        } else {
            guard let orderURL = model.modelOrderURL else {
                throw ApplicationError(application: "importance", problem: "\(url.path): the optimizer state stores no parameter names and there is no model.pt or pytorch_model.bin beside the checkpoint to give the parameters' registration order (a safetensors file lists tensors sorted by name); pass --mapping file.json ({\"0\": \"fc1.weight\", ...})")
            }
            order = try TorchStateDict(contentsOf: orderURL).order
        }
        let byName = try state.byName(modelOrder: order, explicit: explicit, path: url.path)
        let kind: String
        switch byName.kind {
        case .adam, .adamOrAdamW: kind = "Adam"
        case .adamW: kind = "AdamW"
        case .rmsprop: kind = "RMSprop"
        case .adagrad: kind = "Adagrad"
        case .sgd, .unknown:
            throw ApplicationError(application: "importance", problem: "\(url.path): optimizer kind '\(byName.kind.rawValue)' (buffers \(byName.bufferNames)) has no squared-gradient accumulator; the Squisher needs Adam/AdamW exp_avg_sq, RMSprop square_avg or Adagrad sum")
        }
        var values = NamedTensors()
        var conventions: [String: String] = [:]
        for (number, group) in byName.groups.enumerated() {
            var hyperparameters: [String: Double] = [:]
            if let betas = group.betas { hyperparameters["beta2"] = betas.1 }
            if let alpha = group.hyperparameters[.string("alpha")]?.doubleValue { hyperparameters["alpha"] = alpha }
            let probe = OptimizerState(kind: kind, hyperparameters: hyperparameters)
            guard let (bufferName, _) = Squisher.accumulator(of: probe) else { continue }
            if options.biasCorrection, kind != "Adagrad" {
                let key = kind == "RMSprop" ? "alpha" : "beta2"
                guard let beta = hyperparameters[key] else {
                    throw ApplicationError(application: "importance", problem: "\(url.path): bias correction needs \(kind == "RMSprop" ? "alpha" : "betas") in param_groups[\(number)], which is missing")
                }
                guard beta >= 0, beta < 1 else {  // 1 - beta^t would be 0 (or negative): no correction exists
                    throw ApplicationError(application: "importance", problem: "\(url.path): bias correction needs \(key) in [0, 1), param_groups[\(number)] has \(beta)")
                }
            }
            let names = (group.parameterNames ?? []).filter { byName.buffers[bufferName]?[$0] != nil }
            guard !names.isEmpty else { continue }
            var buffers = NamedTensors()
            var steps: [String: Int] = [:]
            for name in names {
                buffers[name] = byName.buffers[bufferName]![name]!
                if let step = byName.steps[name] { steps[name] = Int(step) }
            }
            let squisher = Squisher(source: .state(OptimizerState(kind: kind, hyperparameters: hyperparameters, steps: steps, buffers: [bufferName: buffers])),
                                    biasCorrection: options.biasCorrection, scaling: options.scaling)
            let importance = try squisher.estimate(parameters: names.map { ($0, buffers[$0]!.shape) })
            for name in names { values[name] = importance.values[name]! }
            conventions = importance.conventions
            conventions["no_state"] = nil
            if options.biasCorrection, let step = byName.steps[names[0]] { conventions["steps"] = "\(Int(step))" }
        }
        conventions["mapping"] = byName.nameSource.rawValue
        conventions["optimizer"] = byName.kind.rawValue
        return (values, conventions, byName.parametersWithoutState)
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
