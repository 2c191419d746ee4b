import Foundation
import Squisher
import SquisherCommands
import Testing

/// `squisher estimate --model <Hugging Face folder>` end to end on the tiny GPT-2 and BERT made by
/// transformers. The fixtures live once, in the estimator tests' resources (made by
/// Tests/Generators/make_hf_model_fixtures.py and make_hf_padded_fixtures.py); this test reads them
/// from the source tree.
/// Tolerance as the library test: 1e-4 normwise per tensor against the float64 PyTorch loops
/// (measured 5e-7 to 1.6e-6).
@Suite("squisher estimate on Hugging Face folders")
struct HuggingFaceEstimateTests {
    static let resources = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../SquisherEstimatorsTests/Resources").standardized

    @Test("GPT-2 and BERT (with and without padding): fisher, true-fisher, joint equal the PyTorch answer keys", arguments: [
        ("gpt2", "fisher", "fisher_empirical"), ("gpt2", "true-fisher", "fisher_true_exact"), ("gpt2", "joint", "fisher_joint"),
        ("bert", "fisher", "fisher_empirical"), ("bert", "true-fisher", "fisher_true_exact"), ("bert", "joint", "fisher_joint"),
    ], ["hf", "hf-padded"])
    func estimate(model: (String, String, String), root: String) throws {
        let (model, estimator, key) = model
        let folder = Self.resources.appendingPathComponent(root).appendingPathComponent(model)
        let out = temporaryPath("hf-importance.safetensors")
        defer { try? FileManager.default.removeItem(atPath: out) }
        let result = runTool(["estimate", "--model", folder.path, "--data", folder.appendingPathComponent("tokens.safetensors").path, "--estimator", estimator, "--output", out])
        #expect(result.status == 0, "stderr: \(result.stderr)")
        let ours = try Importance.load(from: URL(fileURLWithPath: out))
        let reference = try SafeTensorsFile(contentsOf: folder.appendingPathComponent(key + ".safetensors"))
        #expect(Set(ours.names) == Set(reference.names))
        let largest = try reference.names.map { try reference.doubles($0).map(abs).max() ?? 0 }.max() ?? 0
        for name in reference.names {
            let expected = try reference.doubles(name), scale = expected.map(abs).max() ?? 0
            let values = try #require(ours[name]).scalars
            let worst = zip(values, expected).map { abs(Double($0) - $1) }.max() ?? 0
            // Key biases are exactly zero in exact arithmetic (a constant shift of a softmax row).
            #expect(worst <= (scale < 1e-12 * largest ? 1e-6 * largest : 1e-4 * scale), "\(model) \(estimator) \(name): error \(worst), scale \(scale)")
        }
    }

    @Test("a model folder with --weights, or data without input_ids, is a clear error")
    func errors() throws {
        let folder = Self.resources.appendingPathComponent("hf-padded/gpt2")
        let withWeights = runTool(["estimate", "--model", folder.path, "--weights", "x.safetensors", "--data", "t.safetensors", "--output", temporaryPath("x")])
        #expect(withWeights.status != 0 && withWeights.stderr.contains("--weights is not used with a model folder"))
        let wrongData = runTool(["estimate", "--model", folder.path, "--data", folder.appendingPathComponent("fisher_joint.safetensors").path, "--output", temporaryPath("x")])
        #expect(wrongData.status != 0 && wrongData.stderr.contains("no tensor 'input_ids'"))
    }
}
