import Foundation
import Squisher
import Testing

/// Hugging Face models in the engine: tiny `GPT2LMHeadModel`s (tied LM head) and
/// `BertForSequenceClassification`s made by transformers with seeded random weights, in two sets:
/// `hf/` (Tests/Generators/make_hf_model_fixtures.py: GPT-2 without padding, BERT with [CLS] and
/// padding) and `hf-padded/` (make_hf_padded_fixtures.py: GPT-2 with right padding and -100 labels,
/// BERT with token types and the pad id inside real positions), loaded by their Hugging Face names; empirical, exact true and joint Fisher against float64
/// PyTorch per-sample loops (autograd, one sample at a time; the true Fisher one (token, class) at
/// a time).
///
/// Tolerance 1e-4 normwise per tensor (`max|ours − ref| / max|ref|`): our forward and backward run
/// in float32 (unit roundoff 6e-8) through ~10 layers of width 8-33, so gradients carry relative
/// errors ~1e-6 and their squares ~2e-6; a wrong convention (a missing shift, a per-token instead of
/// a per-sequence square, a dropped use of the tied embedding, a mask ignored) is O(1).
@Suite("Hugging Face GPT-2 and BERT vs PyTorch per-sample loops")
struct HuggingFaceModelTests {
    static func folder(_ name: String, in root: String = "hf") throws -> URL {
        guard let url = Bundle.module.url(forResource: name, withExtension: nil, subdirectory: "Resources/\(root)") else {
            throw EstimatorError(estimator: "test", problem: "missing test resource \(root)/\(name)")
        }
        return url
    }

    /// Normwise per tensor. A tensor whose reference is zero up to float64 rounding (the attention
    /// key bias: adding `q·b` to every score of a row cancels in the softmax, so its gradient is
    /// exactly zero) is checked to be below float32 rounding of the largest entry instead.
    static func compare(_ ours: Importance, _ key: String, in folder: URL, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let reference = try SafeTensorsFile(contentsOf: folder.appendingPathComponent(key + ".safetensors"))
        #expect(Set(ours.names) == Set(reference.names), "\(key): names differ", sourceLocation: sourceLocation)
        let largest = try reference.names.map { try reference.doubles($0).map(abs).max() ?? 0 }.max() ?? 0
        #expect(largest > 0, "\(key): reference all zero", sourceLocation: sourceLocation)
        for name in reference.names {
            let expected = try reference.doubles(name)
            let tensor = try #require(ours[name], "\(key): no \(name)", sourceLocation: sourceLocation)
            if expected.map(abs).max() ?? 0 < 1e-12 * largest {
                let worst = tensor.scalars.map { Double(abs($0)) }.max() ?? 0
                #expect(worst < 1e-6 * largest, "\(key) \(name): zero in the reference, \(worst) here", sourceLocation: sourceLocation)
                continue
            }
            let deviation = Deviation(tensor.scalars, expected)
            #expect(deviation.normwise < 1e-4, "\(key) \(name): \(deviation)", sourceLocation: sourceLocation)
        }
    }

    @Test("GPT2LMHeadModel: HF names, tied head once, Fisher = PyTorch (empirical, true exact, joint)", arguments: ["hf", "hf-padded"])
    func gpt2(root: String) throws {
        let url = try Self.folder("gpt2", in: root)
        let loaded = try HuggingFaceModelFolder(folder: url)
        #expect(loaded.architecture == "GPT2LMHeadModel")
        let names = loaded.model.namedParameters.map(\.name)
        #expect(names.contains("transformer.wte.weight") && names.contains("transformer.h.1.mlp.c_proj.bias") && !names.contains("lm_head.weight"))
        let data = try loaded.tokens(from: url.appendingPathComponent("tokens.safetensors"))
        #expect(data.inputs.rank == 3 && data.inputs.shape[1] == 2)  // ids and attention mask
        try Self.compare(EmpiricalFisher(batchSize: 4, loss: loaded.loss).estimate(model: loaded.model, data: data), "fisher_empirical", in: url)
        try Self.compare(TrueFisherExact(batchSize: 4, loss: loaded.loss).estimate(model: loaded.model, data: data), "fisher_true_exact", in: url)
        try Self.compare(JointEmpiricalFisher(loss: loaded.loss).estimate(model: loaded.model, data: data), "fisher_joint", in: url)
    }

    @Test("BertForSequenceClassification: HF names, padding mask and token types, Fisher = PyTorch", arguments: ["hf", "hf-padded"])
    func bert(root: String) throws {
        let url = try Self.folder("bert", in: root)
        let loaded = try HuggingFaceModelFolder(folder: url)
        #expect(loaded.model.namedParameters.map(\.name).contains("bert.encoder.layer.1.attention.self.value.weight"))
        let data = try loaded.tokens(from: url.appendingPathComponent("tokens.safetensors"))
        #expect(data.inputs.rank == 3 && data.targets.rank == 1)
        try Self.compare(EmpiricalFisher(batchSize: 3, loss: loaded.loss).estimate(model: loaded.model, data: data), "fisher_empirical", in: url)
        try Self.compare(TrueFisherExact(batchSize: 3, loss: loaded.loss).estimate(model: loaded.model, data: data), "fisher_true_exact", in: url)
        try Self.compare(JointEmpiricalFisher(loss: loaded.loss).estimate(model: loaded.model, data: data), "fisher_joint", in: url)
    }

    @Test("Monte-Carlo true Fisher of GPT-2 (one label per token per draw) averages to the exact one")
    func gpt2MonteCarlo() throws {
        let url = try Self.folder("gpt2", in: "hf-padded")
        let loaded = try HuggingFaceModelFolder(folder: url)
        let data = try loaded.tokens(from: url.appendingPathComponent("tokens.safetensors"))
        let exact = try TrueFisherExact(loss: loaded.loss).estimate(model: loaded.model, data: data).flattened.map(Double.init)
        let sampled = try TrueFisherMonteCarlo(samples: 400, seed: 3, loss: loaded.loss).estimate(model: loaded.model, data: data).flattened.map(Double.init)
        // Unbiased: with 400 draws per token the relative L1 error is a few percent (measured 0.035); a
        // wrong expectation (a missing shift, squares of a sum over tokens without independence) is O(1).
        let relative = zip(exact, sampled).reduce(0) { $0 + abs($1.0 - $1.1) } / exact.reduce(0, +)
        #expect(relative < 0.1, "relative L1 \(relative)")
    }

    @Test("a folder that does not fit is an error naming the file and the tensor or key")
    func errors() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("squisher-hf-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let source = try Self.folder("gpt2", in: "hf-padded")
        try FileManager.default.copyItem(at: source.appendingPathComponent("model.safetensors"), to: directory.appendingPathComponent("model.safetensors"))
        var config = try String(contentsOf: source.appendingPathComponent("config.json"), encoding: .utf8)
        config = config.replacingOccurrences(of: "\"n_layer\": 2", with: "\"n_layer\": 1")
        try config.write(to: directory.appendingPathComponent("config.json"), atomically: true, encoding: .utf8)
        #expect { _ = try HuggingFaceModelFolder(folder: directory) } throws: { "\($0)".contains("'transformer.h.1.") && "\($0)".contains("model.safetensors") }
        try config.replacingOccurrences(of: "\"gpt2\"", with: "\"llama\"").write(to: directory.appendingPathComponent("config.json"), atomically: true, encoding: .utf8)
        #expect { _ = try HuggingFaceModelFolder(folder: directory) } throws: { "\($0)".contains("model_type \"llama\" is not supported") }
    }
}
