import Foundation
import SquisherIO
import SquisherLayers
import SquisherTensor
import Testing

/// The transformer layers and the loss family against PyTorch / transformers in float64
/// (Tests/Generators/make_transformer_layer_oracles.py): `F.scaled_dot_product_attention`,
/// transformers' `GPT2Block` and `BertLayer` with their own parameters (loaded by name), and
/// `F.cross_entropy` (label smoothing, ignore_index after the causal shift) and `F.mse_loss`,
/// all sum-reduced. Outputs within ``Tolerance/forwardRelative`` + ``Tolerance/forwardAbsolute``
/// (float32 roundoff of O(10)-term sums); gradients of `Σ r ⊙ output` within 1e-4 relative +
/// 1e-5 absolute (float32 backward through up to a dozen stages vs float64; a wrong index or a
/// missing term is O(0.1)).
@Suite("Transformer layers and losses vs PyTorch")
struct PyTorchTransformerOracleTests {
    static func oracle() throws -> SafeTensorsFile {
        guard let url = Bundle.module.url(forResource: "transformer_oracles", withExtension: "safetensors", subdirectory: "Resources") else {
            throw TensorError.invalidArgument(argument: "test resource", reason: "missing transformer_oracles.safetensors")
        }
        return try SafeTensorsFile(contentsOf: url)
    }

    static func gradientClose(_ ours: Tensor, _ reference: [Double], _ label: String, sourceLocation: SourceLocation = #_sourceLocation) {
        expectClose(doubles(ours), reference, relative: 1e-4, absolute: 1e-5, label, sourceLocation: sourceLocation)
    }

    /// Forward, then backward of `r`: output, input gradient and every parameter gradient vs the oracle.
    static func check(_ layer: any Layer, _ prefix: String, _ file: SafeTensorsFile, differentiableInput: Bool = true, sourceLocation: SourceLocation = #_sourceLocation) throws {
        for (name, parameter) in layer.namedParameters { try parameter.load(file.tensor("\(prefix)/param/\(name)"), name: name) }
        layer.zeroGradients()
        let output = try layer.forward(file.tensor("\(prefix)/input"), mode: .evaluation)
        expectClose(doubles(output), try file.doubles("\(prefix)/output"), relative: Tolerance.forwardRelative, absolute: Tolerance.forwardAbsolute, "\(prefix) output", sourceLocation: sourceLocation)
        let inputGradient = try layer.backward(file.tensor("\(prefix)/r"), accumulateParameterGradients: true)
        gradientClose(inputGradient, try file.doubles("\(prefix)/input_grad"), "\(prefix) input gradient", sourceLocation: sourceLocation)
        for (name, parameter) in layer.namedParameters {
            gradientClose(parameter.gradient, try file.doubles("\(prefix)/grad/\(name)"), "\(prefix) gradient of \(name)", sourceLocation: sourceLocation)
        }
    }

    @Test("scaled dot-product attention: causal, and bidirectional with a key padding mask")
    func attention() throws {
        let file = try Self.oracle()
        // At every softmax kernel level this CPU runs (AVX-512 C rows, Swift loops).
        for level in elementwiseKernelLevels {
            let causal = try ScaledDotProductAttention(heads: 3, causal: true)
            causal.kernelISALevel = level
            try Self.check(causal, "attention_causal", file)
            let masked = try ScaledDotProductAttention(heads: 3, causal: false)
            masked.kernelISALevel = level
            masked.attentionMask = try file.tensor("attention_masked/mask")
            try Self.check(masked, "attention_masked", file)
        }
    }

    @Test("GPT2Block (pre-norm, Conv1D, gelu_new) and BertLayer (post-norm, padding mask, gelu) from transformers")
    func blocks() throws {
        let file = try Self.oracle()
        var generator = SplitMix64(seed: 1)
        func conv(_ i: Int, _ o: Int) -> TransposedLinear { TransposedLinear(inputFeatures: i, outputFeatures: o, generator: &generator) }
        func linear(_ i: Int, _ o: Int) -> Linear { Linear(inputFeatures: i, outputFeatures: o, generator: &generator) }
        let gpt2 = try TransformerBlock(
            arrangement: .preNorm,
            attention: ("attn", MultiHeadSelfAttention(heads: 2, causal: true, projections: .fused(name: "c_attn", layer: conv(6, 18)), output: ("c_proj", conv(6, 6)))),
            norm1: ("ln_1", LayerNorm(normalizedShape: [6])), mlp: [("mlp.c_fc", conv(6, 24)), ("mlp.act", GELU(approximate: .tanh)), ("mlp.c_proj", conv(24, 6))],
            norm2: ("ln_2", LayerNorm(normalizedShape: [6])))
        try Self.check(gpt2, "gpt2_block", file)
        let bert = try TransformerBlock(
            arrangement: .postNorm,
            attention: ("attention", MultiHeadSelfAttention(
                heads: 2, causal: false, projections: .separate(query: ("self.query", linear(6, 6)), key: ("self.key", linear(6, 6)), value: ("self.value", linear(6, 6))),
                output: ("output.dense", linear(6, 6)))),
            norm1: ("attention.output.LayerNorm", LayerNorm(normalizedShape: [6], eps: 1e-12)),
            mlp: [("intermediate.dense", linear(6, 10)), ("intermediate.act", GELU()), ("output.dense", linear(10, 6))],
            norm2: ("output.LayerNorm", LayerNorm(normalizedShape: [6], eps: 1e-12)))
        bert.attentionMask = try file.tensor("bert_layer/mask")
        try Self.check(bert, "bert_layer", file)
    }

    @Test("losses: cross-entropy with label smoothing, per-token with shift and -100, MSE(sum) as a Gaussian with σ² = 1/2")
    func losses() throws {
        let file = try Self.oracle()
        let cases: [(String, any LikelihoodLoss, String, String)] = [
            ("loss_ce", CrossEntropyLikelihood(labelSmoothing: 0.1), "logits", "labels"),
            ("loss_token", CrossEntropyLikelihood(layout: .perToken(shifted: true)), "logits", "labels"),
            ("loss_mse", GaussianLikelihood(variance: 0.5), "prediction", "target"),
        ]
        for (prefix, loss, output, targets) in cases {
            let (value, gradient) = try loss.lossAndGradient(output: file.tensor("\(prefix)/\(output)"), targets: file.tensor("\(prefix)/\(targets)"))
            expectClose([value], try file.doubles("\(prefix)/loss"), relative: 1e-6, absolute: 1e-6, "\(prefix) value")
            Self.gradientClose(gradient, try file.doubles("\(prefix)/grad"), "\(prefix) gradient")
        }
    }
}
