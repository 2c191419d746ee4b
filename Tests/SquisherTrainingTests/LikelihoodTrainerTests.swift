import Foundation
import Squisher
import Testing

@Suite("LikelihoodTrainer on sequences")
struct LikelihoodTrainerTests {
    /// A bigram model: an `Embedding(V, V)` whose row `k` is the logits after token `k`.
    /// The per-token cross-entropy gradient of row `k` is analytic:
    /// `Σ_{(n,t): x_{n,t} = k, t < T−1} (softmax(W[k]) − e_{x_{n,t+1}})`; one SGD step (lr 1) over
    /// one batch of all `N` sequences must move `W` by minus that sum over `N` (mean over sequences,
    /// sum over each sequence's tokens). The reference is computed in Double; tolerance 1e-5
    /// absolute: float32 rounding of entries of size ~1 (a sum-vs-mean mistake is off by a factor N = 5).
    @Test("one SGD step equals minus the analytic mean-over-sequences gradient")
    func oneStep() throws {
        let (v, n, t) = (6, 5, 7)
        var generator = SplitMix64(seed: 4)
        let embedding = try Embedding(numEmbeddings: v, embeddingDim: v, generator: &generator)
        let model = Sequential([embedding])
        let ids = (0..<(n * t)).map { _ in Float(generator.next() % UInt64(v)) }
        let tokens = Tensor(uncheckedShape: [n, t], scalars: ids)
        let data = try TensorDataset(inputs: tokens, targets: tokens)
        let before = embedding.weight.value.scalars.map(Double.init)
        var expected = before
        for sample in 0..<n {
            for step in 0..<(t - 1) {
                let k = Int(ids[sample * t + step]), next = Int(ids[sample * t + step + 1])
                let row = before[(k * v)..<((k + 1) * v)]
                let top = row.max()!
                let z = row.reduce(0) { $0 + exp($1 - top) }
                for c in 0..<v {
                    let p = exp(row[k * v + c] - top) / z
                    expected[k * v + c] -= (p - (c == next ? 1 : 0)) / Double(n)
                }
            }
        }
        let optimizer = try SGD(parameters: model.namedParameters, learningRate: 1)
        let losses = try LikelihoodTrainer.train(
            model: model, optimizer: optimizer, data: data, loss: CrossEntropyLikelihood(layout: .perToken(shifted: true)),
            configuration: TrainingConfiguration(epochs: 1, batchSize: n, seed: 0, shuffle: false))
        #expect(losses.count == 1 && losses[0].isFinite && losses[0] > 0)
        let after = embedding.weight.value.scalars.map(Double.init)
        let worst = zip(after, expected).enumerated().max { abs($0.element.0 - $0.element.1) < abs($1.element.0 - $1.element.1) }!
        #expect(abs(worst.element.0 - worst.element.1) < 1e-5, "entry \(worst.offset): \(worst.element.0) vs analytic \(worst.element.1)")
    }

    @Test("shuffled mini-batches are reproducible; a diverging run names the epoch and batch")
    func reproducibleAndDivergence() throws {
        let task = TokenTask(index: 1, length: 8)
        let data = try task.sequences(count: 40, seed: 2)
        func run() throws -> NamedTensors {
            var generator = SplitMix64(seed: 1)
            let model = Sequential([try Embedding(numEmbeddings: TokenTask.vocabulary, embeddingDim: TokenTask.vocabulary, generator: &generator)])
            let optimizer = try Adam(parameters: model.namedParameters, learningRate: 1e-2)
            try LikelihoodTrainer.train(model: model, optimizer: optimizer, data: data, loss: CrossEntropyLikelihood(layout: .perToken(shifted: true)),
                                        configuration: TrainingConfiguration(epochs: 2, batchSize: 16, seed: 9))
            return model.stateDict()
        }
        #expect(try run() == run())
        var generator = SplitMix64(seed: 1)
        let broken = Sequential([try Embedding(numEmbeddings: TokenTask.vocabulary, embeddingDim: TokenTask.vocabulary, generator: &generator)])
        broken.namedParameters[0].parameter.value = Tensor(repeating: .infinity, shape: [TokenTask.vocabulary, TokenTask.vocabulary])
        #expect {
            try LikelihoodTrainer.train(model: broken, optimizer: try SGD(parameters: broken.namedParameters), data: data,
                                        loss: CrossEntropyLikelihood(layout: .perToken(shifted: true)), configuration: TrainingConfiguration(epochs: 1, batchSize: 16))
        } throws: { "\($0)".contains("epoch 1, batch 1") }
    }
}
