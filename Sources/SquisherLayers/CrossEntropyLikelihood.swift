import SquisherTensor

/// Softmax cross-entropy as a likelihood: per sample (`[N, C]` logits, one class per sample) or per
/// token (`[N, T, C]` logits, one class per position), with label smoothing and ignored positions.
///
/// - Sample loss: `l_n = Σ_{t predicted} [(1−ε)(−log p_t(y_t)) + ε · mean_c(−log p_t(c))]`, the **sum**
///   over the sample's predicted tokens (one token for ``Layout/perSample``), `ε` the label smoothing
///   (PyTorch's `label_smoothing`); gradient `p_t − (1−ε)e_{y_t} − ε/C` at each predicted position.
/// - Ignored positions: target ``ignoreIndex`` (Hugging Face's `-100`) contributes nothing.
/// - ``Layout/perToken(shifted:)`` with `shifted` (a causal LM, Hugging Face's convention): logits at
///   position `t` predict the target at `t + 1`; the last position predicts nothing, so targets may
///   be the input ids themselves.
/// - True Fisher: the model's distribution is the softmax (label smoothing changes the targets,
///   not the model), with tokens independent given the input: `Σ_n Σ_t Σ_c p_t(c) (∇ −log p_t(c))²`
///   (the cross terms between positions have zero mean). One pass per (position, class),
///   `√p_t(c) (p_t − e_c)` at position `t` only.
public struct CrossEntropyLikelihood: LikelihoodLoss, Hashable {
    /// How logits and targets are laid out.
    public enum Layout: Sendable, Hashable {
        /// Logits `[N, C]`, targets `[N]`.
        case perSample
        /// Logits `[N, T, C]`, targets `[N, T]`; `shifted`: position `t` predicts target `t + 1`.
        case perToken(shifted: Bool)
    }

    /// The layout.
    public var layout: Layout
    /// Label smoothing `ε` in `[0, 1)`.
    public var labelSmoothing: Double
    /// Targets equal to this are ignored (per-token layout only).
    public var ignoreIndex: Int

    public init(layout: Layout = .perSample, labelSmoothing: Double = 0, ignoreIndex: Int = -100) {
        self.layout = layout
        self.labelSmoothing = labelSmoothing
        self.ignoreIndex = ignoreIndex
    }

    public var conventions: [String: String] {
        var result = ["loss": "softmax cross-entropy (natural log)", "reduction": "sum"]
        switch layout {
        case .perSample:
            result["sample loss"] = "one class per sample"
        case .perToken(let shifted):
            result["sample loss"] = "sum over the sequence's predicted tokens"
            result["targets"] = shifted ? "shifted inside: logits at t predict target t+1 (causal LM)" : "one per position"
            result["ignore index"] = "\(ignoreIndex)"
        }
        if labelSmoothing != 0 { result["label smoothing"] = "\(labelSmoothing)" }
        return result
    }

    /// The rows of the logits `[rows, C]`, and each row's class (`nil`: not predicted).
    func rowTargets(output: Tensor, targets: Tensor) throws(TensorError) -> (rows: Int, classes: Int, targets: [Int?]) {
        let name = "CrossEntropyLikelihood(\(layout))"
        guard labelSmoothing >= 0, labelSmoothing < 1 else {
            throw .invalidArgument(argument: "\(name) label smoothing \(labelSmoothing)", reason: "must be in [0, 1)")
        }
        let expectedRank = layout == .perSample ? 2 : 3
        guard output.rank == expectedRank, let classes = output.shape.last, classes > 0 else {
            throw .shapeMismatch(operation: name, expected: layout == .perSample ? "logits [N, classes]" : "logits [N, T, classes]", actual: output.shape)
        }
        let leading = Array(output.shape.dropLast())
        try targets.checkShape(leading, "\(name) targets (one per logit row)")
        let (rows, length) = (leading.reduce(1, *), leading.count == 2 ? leading[1] : 1)
        var result = [Int?](repeating: nil, count: rows)
        for row in 0..<rows {
            var source = row
            if case .perToken(true) = layout {
                guard row % length + 1 < length else { continue }
                source = row + 1
            }
            let value = targets.scalars[source]
            if layout != .perSample, value == Float(ignoreIndex) { continue }
            guard value.rounded() == value, value >= 0, value < Float(classes) else {
                throw .invalidArgument(
                    argument: "\(name) target \(value) at flat index \(source) of targets \(targets.shape)",
                    reason: "expected a class in 0..<\(classes)" + (layout == .perSample ? "" : " or \(ignoreIndex) (ignored)"))
            }
            result[row] = Int(value)
        }
        return (rows, classes, result)
    }

    public func lossAndGradient(output: Tensor, targets: Tensor) throws(TensorError) -> (loss: Double, outputGradient: Tensor) {
        let (rows, classes, rowTargets) = try rowTargets(output: output, targets: targets)
        let epsilon = labelSmoothing, uniform = Float(epsilon / Double(classes))
        var loss = 0.0
        // Per row: m = max z, e = exp(z − m) (16 lanes), S = Σ e; −log p(c) = log S + m − z_c and
        // ∂/∂z = e/S − ε/C − (1 − ε) e_y. Rows without a target get 0.
        let gradient = Tensor(uninitializedShape: output.shape) { g in
            output.withUnsafeBufferPointer { z in
                for row in 0..<rows {
                    let zr = z.baseAddress! + row * classes, gr = g.baseAddress! + row * classes
                    guard let target = rowTargets[row] else {
                        gr.update(repeating: 0, count: classes)
                        continue
                    }
                    var maximum = -Float.infinity, total = 0.0
                    for c in 0..<classes { maximum = Swift.max(maximum, zr[c]) }
                    for c in 0..<classes { total += Double(zr[c]) }
                    let shift = VectorMath.Vector(repeating: maximum)
                    VectorMath.map(count: classes, zr, gr) { VectorMath.exp($0 - shift) }
                    var sum = 0.0
                    for c in 0..<classes { sum += Double(gr[c]) }
                    let logSum = ScalarMath.log(sum) + Double(maximum)
                    let inverse = Float(1 / sum)
                    VectorMath.map(count: classes, gr, gr) { $0 * inverse - VectorMath.Vector(repeating: uniform) }
                    gr[target] -= Float(1 - epsilon)
                    loss += (1 - epsilon) * (logSum - Double(zr[target])) + epsilon * (logSum - total / Double(classes))
                }
            }
        }
        return (loss, gradient)
    }

    public func exactFisherPasses(output: Tensor, targets: Tensor) throws(TensorError) -> FisherPasses {
        let (rows, classes, rowTargets) = try rowTargets(output: output, targets: targets)
        let probabilities = try output.reshaped([rows, classes]).softmaxRows().scalars.map(Double.init)
        let length = output.rank == 3 ? output.shape[1] : 1
        // Positions predicted by at least one sample; one pass per (position, class).
        let positions = (0..<length).filter { t in stride(from: t, to: rows, by: length).contains { rowTargets[$0] != nil } }
        let shape = output.shape
        return FisherPasses(count: positions.count * classes) { k in
            let (t, c) = (positions[k / classes], k % classes)
            var gradient = [Float](repeating: 0, count: rows * classes)
            for row in stride(from: t, to: rows, by: length) where rowTargets[row] != nil {
                let base = row * classes, weight = probabilities[base + c].squareRoot()
                for j in 0..<classes { gradient[base + j] = Float(weight * (probabilities[base + j] - (j == c ? 1 : 0))) }
            }
            return (Tensor(uncheckedShape: shape, scalars: gradient), 1)
        }
    }

    public func sampledGradients(output: Tensor, targets: Tensor, samples: Int, using generator: inout SplitMix64) throws(TensorError) -> [Tensor] {
        let (rows, classes, rowTargets) = try rowTargets(output: output, targets: targets)
        let probabilities = try output.reshaped([rows, classes]).softmaxRows().scalars.map(Double.init)
        var gradients = [[Float]](repeating: [Float](repeating: 0, count: rows * classes), count: samples)
        for row in 0..<rows where rowTargets[row] != nil {
            let base = row * classes
            for s in 0..<samples {
                let u = generator.nextUniformDouble()
                var cumulative = 0.0, label = classes - 1
                for c in 0..<classes {
                    cumulative += probabilities[base + c]
                    if u < cumulative { label = c; break }
                }
                for c in 0..<classes { gradients[s][base + c] = Float(probabilities[base + c]) }
                gradients[s][base + label] -= 1
            }
        }
        return gradients.map { Tensor(uncheckedShape: output.shape, scalars: $0) }
    }
}
