import Foundation
import SquisherData
import SquisherIO
import SquisherLayers
import SquisherTensor

/// A Hugging Face model folder (`config.json` + `model.safetensors`) built into layers, with its
/// weights loaded by their Hugging Face names, and the matching token data.
///
/// Supported architectures: `GPT2LMHeadModel` (`model_type` `"gpt2"`) and
/// `BertForSequenceClassification` (`"bert"`). Parameter names of the built model are the file's
/// names, so estimates are keyed by them; a tied `lm_head.weight` is one parameter (named
/// `transformer.wte.weight`).
public struct HuggingFaceModelFolder {
    /// The built model.
    public let model: any Layer
    /// The loss Hugging Face's class applies with `labels`.
    public let loss: CrossEntropyLikelihood
    /// The parsed `config.json`.
    public let config: HuggingFaceConfig
    /// `"GPT2LMHeadModel"` or `"BertForSequenceClassification"`.
    public let architecture: String

    /// Buffers and tied copies a checkpoint may hold besides the parameters.
    static func isIgnorable(_ name: String, tied: Bool) -> Bool {
        (tied && name == "lm_head.weight") || name.hasSuffix(".attn.bias") || name.hasSuffix(".attn.masked_bias")
            || name.hasSuffix("embeddings.position_ids")
    }

    /// Reads `folder/config.json`, builds the architecture and loads `folder/model.safetensors`.
    /// - Throws: ``ModelLoadingError`` naming the file and the key or tensor: an unsupported
    ///   `model_type`, a missing or mis-shaped weight, a tensor the architecture does not have.
    public init(folder: URL) throws(ModelLoadingError) {
        config = try HuggingFaceConfig(contentsOf: folder.appendingPathComponent("config.json"))
        var generator = SplitMix64(seed: 0)
        switch config.modelType {
        case "gpt2":
            let gpt2 = try GPT2LMHeadModel(config: config, generator: &generator)
            (model, loss, architecture) = (gpt2, gpt2.loss, "GPT2LMHeadModel")
        case "bert":
            if let named = config.architecture, named != "BertForSequenceClassification" {
                throw ModelLoadingError(file: config.path, problem: "architecture \(named) is not supported for model_type bert (only BertForSequenceClassification)")
            }
            let bert = try BertForSequenceClassification(config: config, generator: &generator)
            (model, loss, architecture) = (bert, bert.loss, "BertForSequenceClassification")
        default:
            throw ModelLoadingError(file: config.path, problem: "model_type \"\(config.modelType)\" is not supported; supported: gpt2 (GPT2LMHeadModel), bert (BertForSequenceClassification)")
        }
        try Self.loadWeights(into: model, from: folder.appendingPathComponent("model.safetensors"))
    }

    static func loadWeights(into model: any Layer, from url: URL) throws(ModelLoadingError) {
        let file: SafeTensorsFile
        do { file = try SafeTensorsFile(contentsOf: url) } catch { throw ModelLoadingError(file: url.path, problem: "\(error)") }
        let parameters = model.namedParameters
        let tied = model.parameterUseCounts.values.contains { $0 > 1 }
        let known = Set(parameters.map(\.name))
        if let extra = file.names.first(where: { !known.contains($0) && !isIgnorable($0, tied: tied) }) {
            throw ModelLoadingError(file: url.path, problem: "tensor '\(extra)' is not a parameter of the built \(model.typeName) (a different architecture or config?)")
        }
        for (name, parameter) in parameters {
            guard file.entries[name] != nil else {
                throw ModelLoadingError(file: url.path, problem: "missing parameter '\(name)' of shape \(parameter.value.shape)")
            }
            do {
                let value = try file.tensor(name)
                guard value.isFinite else { throw ModelLoadingError(file: url.path, problem: "tensor '\(name)' has non-finite entries") }
                try parameter.load(value, name: name)
            } catch let error as ModelLoadingError {
                throw error
            } catch {
                throw ModelLoadingError(file: url.path, problem: "\(error)")
            }
        }
    }

    /// Token data for this model from a safetensors file: `input_ids` `[N, T]` (integers),
    /// optional `attention_mask` and `token_type_ids` `[N, T]`, and `labels`: for GPT-2 `[N, T]`
    /// (`-100` ignored; absent: the input ids with padding set to `-100`; the shift happens inside
    /// the loss), for BERT `[N]` class ids.
    /// - Throws: ``ModelLoadingError`` naming the tensor that is missing or mis-shaped.
    public func tokens(from url: URL) throws(ModelLoadingError) -> TensorDataset {
        let path = url.path
        do {
            let file = try SafeTensorsFile(contentsOf: url)
            func integers(_ name: String) throws -> Tensor? {
                guard let entry = file.entries[name] else { return nil }
                return Tensor(uncheckedShape: entry.shape, scalars: try file.integers(name).map(Float.init))
            }
            guard let ids = try integers("input_ids") else { throw ModelLoadingError(file: path, problem: "no tensor 'input_ids' [N, T]") }
            guard ids.rank == 2, ids.shape[0] > 0 else { throw ModelLoadingError(file: path, problem: "'input_ids' has shape \(ids.shape), expected [N, T] with N > 0") }
            let mask = try integers("attention_mask"), types = try integers("token_type_ids")
            let inputs = try SequenceModelInput.pack(inputIDs: ids, attentionMask: mask, tokenTypeIDs: architecture == "GPT2LMHeadModel" ? nil : types)
            var labels = try integers("labels")
            if labels == nil, architecture == "GPT2LMHeadModel" {
                let keep = mask?.scalars ?? [Float](repeating: 1, count: ids.count)
                labels = Tensor(uncheckedShape: ids.shape, scalars: zip(ids.scalars, keep).map { $1 == 0 ? -100 : $0 })
            }
            guard let labels else { throw ModelLoadingError(file: path, problem: "no tensor 'labels' ([N] class ids for \(architecture))") }
            let expected = architecture == "GPT2LMHeadModel" ? ids.shape : [ids.shape[0]]
            guard labels.shape == expected else { throw ModelLoadingError(file: path, problem: "'labels' has shape \(labels.shape), expected \(expected) for \(architecture)") }
            return try TensorDataset(inputs: inputs, targets: labels)
        } catch let error as ModelLoadingError {
            throw error
        } catch {
            throw ModelLoadingError(file: path, problem: "\(error)")
        }
    }
}
