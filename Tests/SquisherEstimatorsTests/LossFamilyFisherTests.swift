import Squisher
import Testing

/// Fisher variants of the loss family on a tiny causal transformer language model (token and
/// position embeddings, a pre-norm block with GPT-2's Conv1D attention and tanh-GELU MLP, a final
/// LayerNorm and a tied output embedding) and on a regression model, each against an independent
/// path that uses only the model's own backward:
///
/// - empirical Fisher: a per-sample loop (one sequence at a time), gradients squared in Double;
/// - exact true Fisher: brute-force enumeration of **every** label sequence `y` of each sample,
///   `Σ_y p(y|x) (∇ l(y))²`, which checks that the per-(position, class) passes are exact;
/// - joint Fisher: the squared summed gradient of one backward per batch;
/// - Gaussian true Fisher of a linear model: the closed form `Σ_n x_{n,j}² / σ²`.
///
/// Tolerance 1e-4 normwise per tensor: both sides are float32 sums of the same O(1) products in a
/// different order (errors ~1e-6 relative), while a wrong convention (a missing shift, squares of
/// token gradients instead of the square of their sum, a dropped use of the tied weight) changes
/// entries by O(1).
@Suite("Loss family: Fisher of a causal transformer LM and a regression model")
struct LossFamilyFisherTests {
    static let (vocabulary, length, width) = (3, 3, 4)

    static func languageModel(_ generator: inout SplitMix64) throws -> Sequential {
        let (v, d) = (vocabulary, width)
        let embeddings = try SequenceEmbedding(
            token: ("wte", Embedding(numEmbeddings: v, embeddingDim: d, generator: &generator)),
            position: ("wpe", Embedding(numEmbeddings: 8, embeddingDim: d, generator: &generator)))
        let attention = try MultiHeadSelfAttention(
            heads: 2, causal: true,
            projections: .fused(name: "c_attn", layer: TransposedLinear(inputFeatures: d, outputFeatures: 3 * d, generator: &generator)),
            output: ("c_proj", TransposedLinear(inputFeatures: d, outputFeatures: d, generator: &generator)))
        let block = try TransformerBlock(
            arrangement: .preNorm, attention: ("attn", attention), norm1: ("ln_1", LayerNorm(normalizedShape: [d])),
            mlp: [("mlp.c_fc", TransposedLinear(inputFeatures: d, outputFeatures: 2 * d, generator: &generator)), ("mlp.act", GELU(approximate: .tanh)),
                  ("mlp.c_proj", TransposedLinear(inputFeatures: 2 * d, outputFeatures: d, generator: &generator))],
            norm2: ("ln_2", LayerNorm(normalizedShape: [d])))
        let model = try Sequential(named: [
            ("transformer.emb", embeddings), ("transformer.h.0", block), ("transformer.ln_f", LayerNorm(normalizedShape: [d])),
            ("lm_head", Linear(weight: embeddings.token.layer.weight, bias: nil)),
        ])
        for (_, parameter) in model.namedParameters { parameter.value = Tensor.uniform(shape: parameter.value.shape, low: -0.9, high: 0.9, using: &generator) }
        return model
    }

    /// Token ids `[N, T]`; targets are the ids (shifted inside the loss) with a few `-100`.
    static func tokens(_ generator: inout SplitMix64, count: Int = 5) throws -> TensorDataset {
        let ids = (0..<(count * length)).map { _ in Float(generator.next() % UInt64(vocabulary)) }
        var targets = ids
        targets[4] = -100  // sample 1, position 1: position 0's prediction ignored
        return try TensorDataset(inputs: Tensor(uncheckedShape: [count, length], scalars: ids), targets: Tensor(uncheckedShape: [count, length], scalars: targets))
    }

    static let shifted = CrossEntropyLikelihood(layout: .perToken(shifted: true))

    /// One sample's parameter gradients (in Double) of `loss` at `targets`, through the model's own backward.
    static func sampleGradients(_ model: any Layer, input: Tensor, targets: Tensor, loss: any LikelihoodLoss) throws -> [[Double]] {
        model.zeroGradients()
        let output = try model.forward(input, mode: .evaluation)
        _ = try model.backward(loss.lossAndGradient(output: output, targets: targets).outputGradient, accumulateParameterGradients: true)
        return model.namedParameters.map { $0.parameter.gradient.scalars.map(Double.init) }
    }

    static func expectClose(_ ours: Importance, _ reference: [[Double]], _ model: any Layer, sourceLocation: SourceLocation = #_sourceLocation) {
        for (index, (name, _)) in model.namedParameters.enumerated() {
            guard let tensor = ours[name] else { Issue.record("\(name) missing", sourceLocation: sourceLocation); continue }
            #expect(reference[index].contains { $0 > 0 }, "\(name): reference all zero, comparison vacuous", sourceLocation: sourceLocation)
            let deviation = Deviation(tensor.scalars, reference[index])
            #expect(deviation.normwise < 1e-4, "\(ours.estimator) \(name): \(deviation)", sourceLocation: sourceLocation)
        }
    }

    static func add(_ total: inout [[Double]], _ gradients: [[Double]], weight: Double = 1) {
        if total.isEmpty { total = gradients.map { [Double](repeating: 0, count: $0.count) } }
        for i in total.indices { for j in total[i].indices { total[i][j] += weight * gradients[i][j] * gradients[i][j] } }
    }

    @Test("empirical Fisher (per-token loss, shift, -100, label smoothing) equals a per-sample loop", arguments: [0.0, 0.1])
    func empirical(smoothing: Double) throws {
        var generator = SplitMix64(seed: 601)
        let model = try Self.languageModel(&generator)
        let data = try Self.tokens(&generator)
        let loss = CrossEntropyLikelihood(layout: .perToken(shifted: true), labelSmoothing: smoothing)
        var reference: [[Double]] = []
        for n in 0..<data.count {
            let sample = try data.slice(n..<(n + 1))
            Self.add(&reference, try Self.sampleGradients(model, input: sample.inputs, targets: sample.targets, loss: loss))
        }
        let ours = try EmpiricalFisher(batchSize: 2, loss: loss).estimate(model: model, data: data)
        #expect(ours.names == ["transformer.emb.wte.weight", "transformer.emb.wpe.weight"] + ours.names.dropFirst(2))
        #expect(!ours.names.contains("lm_head.weight"))
        #expect(ours.conventions["sample loss"] == "sum over the sequence's predicted tokens")
        Self.expectClose(ours, reference, model)
    }

    @Test("exact true Fisher equals the expectation over every label sequence, enumerated")
    func trueExact() throws {
        var generator = SplitMix64(seed: 602)
        let model = try Self.languageModel(&generator)
        let data = try Self.tokens(&generator, count: 3)
        var reference: [[Double]] = []
        for n in 0..<data.count {
            let sample = try data.slice(n..<(n + 1))
            let logits = try model.forward(sample.inputs, mode: .evaluation)
            let p = try logits.reshaped([Self.length, Self.vocabulary]).softmaxRows()
            let mask = sample.targets.scalars
            // Targets at positions 1..<T (predicted by positions 0..<T-1); ignored ones stay ignored.
            let free = (1..<Self.length).filter { mask[$0] != -100 }
            var labels = [Int](repeating: 0, count: free.count)
            repeat {
                var targets = mask
                var probability = 1.0
                for (slot, position) in free.enumerated() {
                    targets[position] = Float(labels[slot])
                    probability *= Double(p[position - 1, labels[slot]])
                }
                let gradients = try Self.sampleGradients(model, input: sample.inputs, targets: Tensor(uncheckedShape: [1, Self.length], scalars: targets), loss: Self.shifted)
                Self.add(&reference, gradients, weight: probability)
            } while Self.next(&labels, base: Self.vocabulary)
        }
        let ours = try TrueFisherExact(batchSize: 2, loss: Self.shifted).estimate(model: model, data: data)
        #expect(ours.cost.backwardPasses == 2 * (Self.length - 1) * Self.vocabulary)
        Self.expectClose(ours, reference, model)
    }

    /// Odometer increment; false after the last combination.
    static func next(_ digits: inout [Int], base: Int) -> Bool {
        for i in digits.indices {
            digits[i] += 1
            if digits[i] < base { return true }
            digits[i] = 0
        }
        return false
    }

    @Test("joint Fisher: the squared summed gradient of each batch; Monte-Carlo averages to the exact Fisher")
    func jointAndMonteCarlo() throws {
        var generator = SplitMix64(seed: 603)
        let model = try Self.languageModel(&generator)
        let data = try Self.tokens(&generator, count: 4)
        var reference: [[Double]] = []
        for start in stride(from: 0, to: 4, by: 2) {
            let batch = try data.slice(start..<(start + 2))
            Self.add(&reference, try Self.sampleGradients(model, input: batch.inputs, targets: batch.targets, loss: Self.shifted))
        }
        Self.expectClose(try JointEmpiricalFisher(batchSize: 2, loss: Self.shifted).estimate(model: model, data: data), reference, model)
        // Monte Carlo with many label draws is within a few percent of the exact value (unbiased).
        let exact = try TrueFisherExact(loss: Self.shifted).estimate(model: model, data: data)
        let sampled = try TrueFisherMonteCarlo(samples: 400, seed: 9, loss: Self.shifted).estimate(model: model, data: data)
        let e = exact.flattened.map(Double.init), s = sampled.flattened.map(Double.init)
        let relative = zip(e, s).reduce(0) { $0 + abs($1.0 - $1.1) } / e.reduce(0, +)
        #expect(relative < 0.1, "Monte-Carlo vs exact, relative L1 \(relative)")
    }

    @Test("Gaussian likelihood: exact true Fisher of a linear model is Σ_n x_nj² / σ²; empirical matches a per-sample loop")
    func gaussian() throws {
        var generator = SplitMix64(seed: 604)
        let model = Sequential([Linear(inputFeatures: 3, outputFeatures: 2, generator: &generator)])
        let inputs = Tensor.normal(shape: [6, 3], using: &generator)
        let data = try TensorDataset(inputs: inputs, targets: Tensor.normal(shape: [6, 2], using: &generator))
        let loss = GaussianLikelihood(variance: 0.5)
        let exact = try TrueFisherExact(batchSize: 4, loss: loss).estimate(model: model, data: data)
        var weight = [Double](repeating: 0, count: 6)
        for n in 0..<6 { for o in 0..<2 { for j in 0..<3 { weight[o * 3 + j] += Double(inputs[n, j]) * Double(inputs[n, j]) / 0.5 } } }
        Self.expectClose(exact, [weight, [Double](repeating: 6 / 0.5, count: 2)], model)
        var reference: [[Double]] = []
        for n in 0..<6 {
            let sample = try data.slice(n..<(n + 1))
            Self.add(&reference, try Self.sampleGradients(model, input: sample.inputs, targets: sample.targets, loss: loss))
        }
        Self.expectClose(try EmpiricalFisher(batchSize: 4, loss: loss).estimate(model: model, data: data), reference, model)
    }
}
