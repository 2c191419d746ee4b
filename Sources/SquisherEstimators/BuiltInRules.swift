import Dispatch
import SquisherLayers
import SquisherTensor

/// Registers the rules for the remaining built-in layer types.
func registerBuiltInRules(into registry: inout PerSampleRuleRegistry) {
    registry.register(Conv2dSquaredGradientRule(), for: Conv2d.self)
    registry.register(LayerNormSquaredGradientRule(), for: LayerNorm.self)
    registry.register(EmbeddingSquaredGradientRule(), for: Embedding.self)
    registry.register(TransposedLinearSquaredGradientRule(), for: TransposedLinear.self)
}

/// `Conv2d`: with the unfolded input `U_n` `[C·kh·kw, L]` (im2col, `L = outH·outW`) and the output
/// gradient `Δ_n` `[O, L]` of sample `n`, the per-sample weight gradient is `Δ_n U_nᵀ` (one small
/// matrix product per sample, as BackPACK's `BatchGrad` for convolutions) and the bias gradient
/// `Σ_l Δ_n[:, l]`; both are squared and summed over samples.
///
/// Over the passes of one batch (``PassSummableSquaredGradientRule``) the input is unfolded once
/// and each sample's per-pass gradients are computed in one stacked product (the square of a sum
/// over positions cannot be summed over passes first, so there is still one gradient per pass).
public struct Conv2dSquaredGradientRule: PassSummableSquaredGradientRule {
    public init() {}

    public func accumulateSquaredGradients(
        layer: any Layer, input: Tensor, outputGradient: Tensor, scale: Float, into accumulators: inout [String: Tensor]
    ) throws -> Int {
        guard let sum = try beginPasses(layer: layer, input: input, passes: 1, reusing: nil) else { return 0 }
        return try sum.add(outputGradient: outputGradient, scale: scale) + sum.finish(into: &accumulators) + sum.retainedBytes
    }

    public func beginPasses(
        layer: any Layer, input: Tensor, passes: Int, reusing previous: (any SquaredGradientPassSum)?
    ) throws -> (any SquaredGradientPassSum)? {
        guard let conv = layer as? Conv2d else { throw TensorError.invalidArgument(argument: "layer", reason: "expected Conv2d, got \(layer.typeName)") }
        return try Conv2dPassSum(conv: conv, unfolded: conv.unfold(input), passes: passes, reusing: previous as? Conv2dPassSum)
    }
}

/// The per-batch state of ``Conv2dSquaredGradientRule``: the unfolded input `[N, K, L]`
/// (`K = C·kh·kw`) and, per thread, `Σ_pass scale·Σ_n` of the squared per-sample weight and bias
/// gradients.
///
/// The passes' output gradients are copied into a sample-major buffer `[N, S, O, L]` of `S` slots
/// (as many as the batch's passes, at most 64 and ``bufferBytes`` in all; taken over from the
/// previous batch's state when large enough, so its pages stay mapped). When it is full or the
/// batch ends, each sample's `P <= S` gradients, one `[P·O, L]` matrix, are multiplied with `U_n`
/// in **one** product (`[P·O, K]`, as BackPACK's einsum batched over classes) instead of `P` small
/// ones: `U_n` is packed once per sample instead of once per pass, and the product fills the
/// GEMM's register tiles.
final class Conv2dPassSum: SquaredGradientPassSum {
    let conv: Conv2d
    /// The most bytes of output gradients buffered before they are multiplied out (64 MiB).
    static let bufferBytes = 64 << 20
    /// `[N, K, L]`; released (emptied) when finished.
    private var unfolded: Tensor
    private let n: Int, k: Int, l: Int, o: Int
    /// Samples are split between `parts` threads; part `p` owns `partial[p·stride ..< (p+1)·stride]`
    /// (weight sums `[O·K]`, then bias sums `[O]`).
    private let parts: Int
    private var partial: [Float]
    /// `[N, slots, O, L]` (`capacity` floats); `scales.count` slots are filled.
    private var buffer: UnsafeMutablePointer<Float>?
    private var capacity: Int
    private let slots: Int
    private var scales: [Float] = []

    init(conv: Conv2d, unfolded: Tensor, passes: Int, reusing previous: Conv2dPassSum?) {
        self.conv = conv
        self.unfolded = unfolded
        (n, k, l, o) = (unfolded.shape[0], unfolded.shape[1], unfolded.shape[2], conv.outputChannels)
        parts = GEMMConfiguration.current.threadParts(for: n)
        partial = [Float](repeating: 0, count: parts * (o * k + o))
        slots = Swift.max(1, Swift.min(passes, 64, Self.bufferBytes / Swift.max(1, 4 * n * o * l)))
        let needed = Swift.max(1, n * slots * o * l)
        if let previous, let reused = previous.buffer, previous.capacity >= needed {
            buffer = reused
            capacity = previous.capacity
            previous.buffer = nil
        } else {
            buffer = .allocate(capacity: needed)
            capacity = needed
        }
    }

    deinit { buffer?.deallocate() }

    var retainedBytes: Int { 4 * (unfolded.count + partial.count + (buffer == nil ? 0 : capacity)) }

    func add(outputGradient: Tensor, scale: Float) throws -> Int {
        guard outputGradient.count == n * o * l else {
            throw TensorError.shapeMismatch(operation: "\(conv) per-sample rule", expected: "output gradient with \(n * o * l) entries", actual: outputGradient.shape)
        }
        guard let buffer, unfolded.count == n * k * l else {
            throw TensorError.invalidArgument(argument: "\(conv) pass sum", reason: "add after finish")
        }
        let slot = scales.count, size = o * l, slots = slots
        if size > 0 {
            outputGradient.withUnsafeBufferPointer { d in
                for sample in 0..<n {
                    (buffer + (sample * slots + slot) * size).update(from: d.baseAddress! + sample * size, count: size)
                }
            }
        }
        scales.append(scale)
        return scales.count == slots ? flush() : 0
    }

    /// Multiplies out the buffered gradients into the per-thread sums; returns the scratch bytes.
    private func flush() -> Int {
        defer { scales = [] }
        let (n, k, l, o) = (n, k, l, o)
        let passes = scales.count, slots = slots, scales = scales
        guard passes > 0, n > 0, o > 0, k > 0, l > 0, let buffer else { return 0 }
        let rows = passes * o, stride = o * k + o, parts = parts
        // G = A·U_nᵀ `[P·O, K]`, or Gᵀ = U_n·Aᵀ `[K, P·O]` when that wastes less of the GEMM's
        // 12 x 32 register tile (e.g. K = 9 for a 3x3 kernel on one channel).
        func padded(_ m: Int, _ n: Int) -> Int { (m + 11) / 12 * 12 * ((n + 31) / 32 * 32) }
        let transposed = padded(k, rows) < padded(rows, k)
        var configuration = GEMMConfiguration.current
        configuration.maximumThreads = 1  // already one thread per part
        let threadConfiguration = configuration
        unfolded.withUnsafeBufferPointer { u in
            partial.withUnsafeMutableBufferPointer { sums in
                let pointers = RulePointers(u: u.baseAddress!, d: UnsafePointer(buffer), sums: sums.baseAddress!)
                DispatchQueue.concurrentPerform(iterations: parts) { part in
                    let weightSum = pointers.sums + part * stride, biasSum = weightSum + o * k
                    let g = UnsafeMutablePointer<Float>.allocate(capacity: rows * k)
                    defer { g.deallocate() }
                    for sample in (n * part / parts)..<(n * (part + 1) / parts) {
                        let stacked = pointers.d + sample * slots * o * l  // [P·O, L]
                        for pass in 0..<passes {
                            let scale = scales[pass]
                            for channel in 0..<o {
                                let total = vectorSum(stacked + (pass * o + channel) * l, count: l)
                                biasSum[channel] = scale * total * total + biasSum[channel]
                            }
                        }
                        let unfoldedSample = pointers.u + sample * k * l
                        if transposed {
                            gemm(transposeA: false, transposeB: true, m: k, n: rows, k: l,
                                 a: unfoldedSample, lda: l, b: stacked, ldb: l, c: g, ldc: rows, configuration: threadConfiguration)
                            for kk in 0..<k {
                                for pass in 0..<passes {
                                    let scale = scales[pass], row = g + kk * rows + pass * o
                                    for channel in 0..<o {
                                        weightSum[channel * k + kk] = scale * row[channel] * row[channel] + weightSum[channel * k + kk]
                                    }
                                }
                            }
                        } else {
                            gemm(transposeA: false, transposeB: true, m: rows, n: k, k: l,
                                 a: stacked, lda: l, b: unfoldedSample, ldb: l, c: g, ldc: k, configuration: threadConfiguration)
                            for pass in 0..<passes {
                                addScaledSquares(count: o * k, scale: scales[pass], x: g + pass * o * k, y: weightSum)
                            }
                        }
                    }
                }
            }
        }
        return 4 * parts * rows * k
    }

    func finish(into accumulators: inout [String: Tensor]) throws -> Int {
        let scratchBytes = scales.isEmpty ? 0 : flush()
        unfolded = Tensor(zeros: [0])
        let stride = o * k + o
        var weightSum = Array(partial[0..<(o * k)]), biasSum = Array(partial[(o * k)..<stride])
        for part in 1..<parts {
            for i in 0..<(o * k) { weightSum[i] += partial[part * stride + i] }
            for i in 0..<o { biasSum[i] += partial[part * stride + o * k + i] }
        }
        if conv.weight.requiresGradient {
            try accumulators["weight", default: Tensor(zeros: conv.weight.value.shape)].addScaled(Tensor(uncheckedShape: conv.weight.value.shape, scalars: weightSum))
        }
        if let bias = conv.bias, bias.requiresGradient {
            try accumulators["bias", default: Tensor(zeros: [o])].addScaled(Tensor(uncheckedShape: [o], scalars: biasSum))
        }
        return scratchBytes + 4 * stride
    }
}

/// Raw pointers handed to the worker threads of a rule (each writes only its own part).
private struct RulePointers: @unchecked Sendable {
    let u: UnsafePointer<Float>
    let d: UnsafePointer<Float>
    let sums: UnsafeMutablePointer<Float>
}

/// `LayerNorm`: with the normalized input `x̂` and output gradient `Δ`, sample `n`'s gradients are
/// `Σ_positions Δ ⊙ x̂` (weight) and `Σ_positions Δ` (bias), squared and summed over samples.
public struct LayerNormSquaredGradientRule: PerSampleSquaredGradientRule {
    public init() {}

    public func accumulateSquaredGradients(
        layer: any Layer, input: Tensor, outputGradient: Tensor, scale: Float, into accumulators: inout [String: Tensor]
    ) throws -> Int {
        guard let norm = layer as? LayerNorm else { throw TensorError.invalidArgument(argument: "layer", reason: "expected LayerNorm, got \(layer.typeName)") }
        guard norm.weight != nil || norm.bias != nil else { return 0 }
        let xhat = try norm.normalized(input)
        try outputGradient.checkShape(input.shape, "\(norm) per-sample rule")
        let features = norm.featureCount, n = input.shape[0]
        let positions = input.count / max(n * features, 1)
        var weightSum = [Float](repeating: 0, count: features), biasSum = [Float](repeating: 0, count: features)
        var weightSample = [Float](repeating: 0, count: features), biasSample = [Float](repeating: 0, count: features)
        xhat.withUnsafeBufferPointer { x in
            outputGradient.withUnsafeBufferPointer { d in
                for sample in 0..<n {
                    for f in 0..<features { weightSample[f] = 0; biasSample[f] = 0 }
                    for position in 0..<positions {
                        let offset = (sample * positions + position) * features
                        for f in 0..<features {
                            weightSample[f] = d[offset + f] * x[offset + f] + weightSample[f]
                            biasSample[f] += d[offset + f]
                        }
                    }
                    for f in 0..<features {
                        weightSum[f] = weightSample[f] * weightSample[f] + weightSum[f]
                        biasSum[f] = biasSample[f] * biasSample[f] + biasSum[f]
                    }
                }
            }
        }
        if let weight = norm.weight, weight.requiresGradient {
            try accumulators["weight", default: Tensor(zeros: weight.value.shape)].addScaled(Tensor(uncheckedShape: weight.value.shape, scalars: weightSum), scale)
        }
        if let bias = norm.bias, bias.requiresGradient {
            try accumulators["bias", default: Tensor(zeros: bias.value.shape)].addScaled(Tensor(uncheckedShape: bias.value.shape, scalars: biasSum), scale)
        }
        return 4 * (xhat.count + 4 * features)
    }
}

/// `Embedding`: sample `n`'s gradient of row `r` is the sum of the output gradients at the
/// positions where its ids equal `r` (rows it does not use get 0, and so does the
/// ``Embedding/paddingIndex`` row); squared and summed over samples.
///
/// Per-sample gradients (``PerSampleGradientRule``, for a tied embedding) are made one sample at a
/// time (a sample touches only the rows of its ids).
public struct EmbeddingSquaredGradientRule: PerSampleGradientRule {
    public init() {}

    public func perSampleGradients(layer: any Layer, input: Tensor, outputGradient: Tensor) throws -> [String: PerSampleGradients] {
        guard let embedding = layer as? Embedding else { throw TensorError.invalidArgument(argument: "layer", reason: "expected Embedding, got \(layer.typeName)") }
        guard embedding.weight.requiresGradient else { return [:] }
        let dim = embedding.embeddingDim, n = input.shape.first ?? 0
        try outputGradient.checkShape(input.shape + [dim], "\(embedding) per-sample rule")
        let ids = try embedding.ids(input), padding = embedding.paddingIndex
        let positions = n == 0 ? 0 : input.count / n
        return ["weight": PerSampleGradients(samples: n, shape: embedding.weight.value.shape) { sample, destination in
            outputGradient.withUnsafeBufferPointer { dy in
                for index in (sample * positions)..<((sample + 1) * positions) where ids[index] != padding {
                    axpy(count: dim, alpha: 1, x: dy.baseAddress! + index * dim, y: destination + ids[index] * dim)
                }
            }
        }]
    }

    public func accumulateSquaredGradients(
        layer: any Layer, input: Tensor, outputGradient: Tensor, scale: Float, into accumulators: inout [String: Tensor]
    ) throws -> Int {
        guard let embedding = layer as? Embedding else { throw TensorError.invalidArgument(argument: "layer", reason: "expected Embedding, got \(layer.typeName)") }
        guard embedding.weight.requiresGradient else { return 0 }
        let dim = embedding.embeddingDim, n = input.shape.first ?? 0
        try outputGradient.checkShape(input.shape + [dim], "\(embedding) per-sample rule")
        let positions = n == 0 ? 0 : input.count / n
        var total = [Float](repeating: 0, count: embedding.numEmbeddings * dim)
        var perRow: [Int: [Float]] = [:]
        for sample in 0..<n {
            perRow.removeAll(keepingCapacity: true)
            for position in 0..<positions {
                let index = sample * positions + position
                let id = input.scalars[index]
                guard id >= 0, id < Float(embedding.numEmbeddings), id == id.rounded() else {
                    throw TensorError.invalidArgument(argument: "\(embedding) input id at \(index)", reason: "\(id) is not an integer in 0..<\(embedding.numEmbeddings)")
                }
                if Int(id) == embedding.paddingIndex { continue }
                var row = perRow[Int(id)] ?? [Float](repeating: 0, count: dim)
                for j in 0..<dim { row[j] += outputGradient.scalars[index * dim + j] }
                perRow[Int(id)] = row
            }
            for (id, row) in perRow { for j in 0..<dim { total[id * dim + j] = row[j] * row[j] + total[id * dim + j] } }
        }
        try accumulators["weight", default: Tensor(zeros: embedding.weight.value.shape)].addScaled(Tensor(uncheckedShape: embedding.weight.value.shape, scalars: total), scale)
        return 4 * (total.count + positions * dim)
    }
}
