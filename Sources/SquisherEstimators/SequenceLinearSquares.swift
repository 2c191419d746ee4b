import Dispatch
import SquisherLayers
import SquisherTensor

/// Adds `scale · Σ_n G_n ⊙ G_n` for the per-sample gradients `G_n` of an affine map over a sequence
/// (``SequenceLinearGradients``), without a pass over memory per sample: the sums are made in blocks
/// that stay in the L2 cache (at most 512 KiB; `width` a multiple of 32 where the layer is wider)
/// while the samples pass over them. Blocks are columns of `G_n` when it has at least as many columns
/// as rows, else rows, so that the operand every block of a sample shares (the whole other side) is
/// the shorter one (GPT-2's `mlp.c_proj`, 3072 x 768: 20 row blocks sharing `Δ_n` of 768 columns).
///
/// On AVX-512 CPUs the micro-kernel squares each tile of `G_n` in registers and adds it to the sums
/// (``GEMMSquaresKernel``), so `G_n` is never stored, and each sample's shared operand is packed once
/// for all its blocks (up to ``packedOperandsLimit``). Elsewhere each block of `G_n` is computed into
/// a scratch buffer and squared into the sums right after its product (the same rounding).
///
/// With `G_n = A_nᵀ B_n` (`A_n` `[T, rows]`, `B_n` `[T, columns]` strided views of the batch; `X` and
/// `Δ` in the order of the weight's layout), the work is split over the threads by column blocks
/// when there are enough of them (each thread owns its columns of the sums), else by samples (each
/// thread its own sums, added at the end). Every product runs on one thread (`maximumThreads = 1`):
/// the threads already split the work, and small products gain nothing from a second thread.
///
/// Trailing positions whose output gradient is exactly zero add nothing to `G_n` and are left out
/// of its product (a sample with none left is skipped): in the exact true Fisher of a causal
/// language model, the pass of position `t` has zero gradient at every later position, so this
/// halves the products on average.
struct SequenceLinearSquares {
    let gradients: SequenceLinearGradients

    /// Floats of one block of `G_n` (512 KiB).
    static let blockFloats = 128 * 1024
    /// Most floats of the operands packed once per sample for all blocks (32 MiB); larger batches pack
    /// them per block.
    static let packedOperandsLimit = 8 << 20

    /// Adds `scale · Σ_n G_n ⊙ G_n` into `weight` (the weight's layout, `[in, out]` or `[out, in]`) and
    /// `scale · Σ_n (Σ_t Δ_n[t])²` into `bias` (`[out]`), where given: in place, so that no sums of the
    /// batch are allocated, zeroed and added separately (each product tile's scaled squares go straight
    /// into the caller's accumulator). Returns the bytes of the temporaries it allocated.
    @discardableResult
    func add(input: Tensor, outputGradient: Tensor, scale: Float, weight: UnsafeMutablePointer<Float>?, bias: UnsafeMutablePointer<Float>?) -> Int {
        let g = gradients
        let (n, t, i, o) = (g.samples, g.positions, g.inFeatures, g.outFeatures)
        // G = A_nᵀ B_n: [in, out] = X_nᵀ Δ_n (HF Conv1D) or [out, in] = Δ_nᵀ X_n (Linear).
        let (rows, columns) = g.transposed ? (i, o) : (o, i)
        let products = g.products ?? GEMMConfiguration.current
        var bytes = 0
        if let bias { bytes += addBiasSums(outputGradient: outputGradient, scale: scale, products: products, into: bias) }
        guard let weight, n > 0, t > 0, rows > 0, columns > 0 else { return bytes }
        // Blocks run along the longer side of G_n, so the operand every block of a sample shares (A_n
        // for column blocks, B_n for row blocks) is the one along the shorter side.
        let byRows = rows > columns
        let extent = Swift.max(32, Self.blockFloats / (byRows ? columns : rows) / 32 * 32)
        let width = Swift.min(byRows ? rows : columns, extent)
        let positions = activePositions(outputGradient)
        let blocks = ((byRows ? rows : columns) + width - 1) / width
        var single = products
        single.maximumThreads = 1
        let parts = products.threadParts(for: Swift.max(blocks, n))
        let splitColumns = blocks >= 2 * parts || n < parts
        let threads = splitColumns ? Swift.min(parts, blocks) : parts
        // Sample split: every thread but the first adds into its own copy of the sums.
        var partial = [Float](repeating: 0, count: splitColumns ? 0 : (threads - 1) * rows * columns)
        input.withUnsafeBufferPointer { x in
            outputGradient.withUnsafeBufferPointer { d in
                partial.withUnsafeMutableBufferPointer { extra in
                    let (a, b) = g.transposed ? (x.baseAddress!, d.baseAddress!) : (d.baseAddress!, x.baseAddress!)
                    let (lda, ldb) = g.transposed ? (i, o) : (o, i)
                    let pointers = SquaresPointers(a: a, b: b, sums: weight, extra: extra.baseAddress)
                    let configuration = single
                    // AVX-512: the product's tiles are squared in registers (GEMMSquaresKernel). The operand
                    // every block of a sample shares (A_n over all rows for column blocks, B_n over all
                    // columns for row blocks) is packed once per sample, by all threads, before the blocks.
                    let squares = t <= gemmSquaresMaximumDepth ? GEMMSquaresKernel(configuration: configuration) : nil
                    let sharedCount = squares.map { byRows ? $0.packedBCount(n: columns, k: t) : $0.packedACount(m: rows, k: t) } ?? 0
                    let shared = squares != nil && n * sharedCount <= Self.packedOperandsLimit
                        ? UnsafeMutablePointer<Float>.allocate(capacity: n * sharedCount) : nil
                    defer { shared?.deallocate() }
                    // A block's own packed operand, or (without the squares kernel) its block of G_n.
                    let scratchCount = Swift.max(
                        squares.map { byRows ? $0.packedACount(m: width, k: t) : $0.packedBCount(n: width, k: t) } ?? 0,
                        width * (byRows ? columns : rows))
                    bytes += 4 * (extra.count + (shared == nil ? 0 : n * sharedCount) + threads * scratchCount)
                    if let squares, let shared {
                        let packed = SharedOperands(base: shared)
                        DispatchQueue.concurrentPerform(iterations: parts) { part in
                            for sample in (n * part / parts)..<(n * (part + 1) / parts) where positions[sample] > 0 {
                                let into = packed.base + sample * sharedCount
                                if byRows {
                                    squares.packB(transposed: false, n: columns, k: positions[sample], b: pointers.b + sample * t * ldb, ldb: ldb, into: into)
                                } else {
                                    squares.packA(transposed: true, m: rows, k: positions[sample], a: pointers.a + sample * t * lda, lda: lda, into: into)
                                }
                            }
                        }
                    }
                    let packedShared = shared.map { SharedOperands(base: $0) }
                    DispatchQueue.concurrentPerform(iterations: threads) { part in
                        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: scratchCount)
                        defer { scratch.deallocate() }
                        /// Rows `start..<start + width` of G_n (all columns: one contiguous run of the sums).
                        func rowBlock(_ start: Int, sample: Int, k: Int, into sums: UnsafeMutablePointer<Float>) {
                            let rowCount = Swift.min(width, rows - start)
                            let a: UnsafePointer<Float> = pointers.a + sample * t * lda + start
                            let b: UnsafePointer<Float> = pointers.b + sample * t * ldb
                            let target: UnsafeMutablePointer<Float> = sums + start * columns
                            if let squares, let packedShared {
                                squares.packA(transposed: true, m: rowCount, k: k, a: a, lda: lda, into: scratch)
                                squares.addScaledSquares(
                                    packedA: scratch, m: rowCount, packedB: packedShared.base + sample * sharedCount, n: columns, k: k,
                                    scale: scale, sums: target, ldSums: columns)
                            } else if let squares {
                                squares.addScaledSquares(
                                    transposeA: true, transposeB: false, m: rowCount, n: columns, k: k, scale: scale,
                                    a: a, lda: lda, b: b, ldb: ldb, sums: target, ldSums: columns)
                            } else {
                                gemm(transposeA: true, transposeB: false, m: rowCount, n: columns, k: k,
                                     a: a, lda: lda, b: b, ldb: ldb, c: scratch, ldc: columns, configuration: configuration)
                                addScaledSquares(count: rowCount * columns, scale: scale, x: scratch, y: target)
                            }
                        }
                        /// Columns `column..<column + width` of G_n (all rows).
                        func columnBlock(_ column: Int, sample: Int, k: Int, into sums: UnsafeMutablePointer<Float>) {
                            let columnCount = Swift.min(width, columns - column)
                            let a: UnsafePointer<Float> = pointers.a + sample * t * lda
                            let b: UnsafePointer<Float> = pointers.b + sample * t * ldb + column
                            if let squares, let packedShared {
                                squares.packB(transposed: false, n: columnCount, k: k, b: b, ldb: ldb, into: scratch)
                                squares.addScaledSquares(
                                    packedA: packedShared.base + sample * sharedCount, m: rows, packedB: scratch, n: columnCount, k: k,
                                    scale: scale, sums: sums + column, ldSums: columns)
                            } else if let squares {
                                squares.addScaledSquares(
                                    transposeA: true, transposeB: false, m: rows, n: columnCount, k: k, scale: scale,
                                    a: a, lda: lda, b: b, ldb: ldb, sums: sums + column, ldSums: columns)
                            } else {
                                gemm(transposeA: true, transposeB: false, m: rows, n: columnCount, k: k,
                                     a: a, lda: lda, b: b, ldb: ldb, c: scratch, ldc: columnCount, configuration: configuration)
                                for row in 0..<rows {
                                    addScaledSquares(count: columnCount, scale: scale, x: scratch + row * columnCount, y: sums + row * columns + column)
                                }
                            }
                        }
                        func block(_ start: Int, sample: Int, into sums: UnsafeMutablePointer<Float>) {
                            let k = positions[sample]
                            guard k > 0 else { return }
                            if byRows { rowBlock(start, sample: sample, k: k, into: sums) } else { columnBlock(start, sample: sample, k: k, into: sums) }
                        }
                        if splitColumns {
                            for index in stride(from: part, to: blocks, by: threads) {
                                for sample in 0..<n { block(index * width, sample: sample, into: pointers.sums) }
                            }
                        } else {
                            let sums = part == 0 ? pointers.sums : pointers.extra! + (part - 1) * rows * columns
                            for sample in (n * part / threads)..<(n * (part + 1) / threads) {
                                for index in 0..<blocks { block(index * width, sample: sample, into: sums) }
                            }
                        }
                    }
                    for part in 0..<(threads - (splitColumns ? threads : 1)) {
                        axpy(count: rows * columns, alpha: 1, x: extra.baseAddress! + part * rows * columns, y: weight)
                    }
                }
            }
        }
        return bytes
    }

    /// For each sample, the number of leading positions up to its last non-zero output-gradient row.
    private func activePositions(_ outputGradient: Tensor) -> [Int] {
        let (n, t, o) = (gradients.samples, gradients.positions, gradients.outFeatures)
        return outputGradient.withUnsafeBufferPointer { d in
            (0..<n).map { sample in
                var active = t
                while active > 0 {
                    let row = d.baseAddress! + (sample * t + active - 1) * o
                    if (0..<o).contains(where: { row[$0] != 0 }) { break }
                    active -= 1
                }
                return active
            }
        }
    }

    /// Adds `scale · Σ_n (Σ_t Δ_n[t])²` into `sums` (`[out]`): each sample's sum over positions on the
    /// threads (samples split between them), then the scaled squares added in sample order (the same
    /// rounding on any number of threads). Returns the bytes of the per-sample sums.
    private func addBiasSums(outputGradient: Tensor, scale: Float, products: GEMMConfiguration, into sums: UnsafeMutablePointer<Float>) -> Int {
        let (n, t, o) = (gradients.samples, gradients.positions, gradients.outFeatures)
        guard o > 0, n > 0 else { return 0 }
        var samples = [Float](repeating: 0, count: n * o)
        let parts = products.threadParts(for: n)
        outputGradient.withUnsafeBufferPointer { d in
            samples.withUnsafeMutableBufferPointer { s in
                let pointers = BiasSumPointers(outputGradient: d.baseAddress!, sampleSums: s.baseAddress!)
                DispatchQueue.concurrentPerform(iterations: parts) { part in
                    for index in (n * part / parts)..<(n * (part + 1) / parts) {
                        for position in 0..<t {
                            axpy(count: o, alpha: 1, x: pointers.outputGradient + (index * t + position) * o, y: pointers.sampleSums + index * o)
                        }
                    }
                }
            }
        }
        samples.withUnsafeBufferPointer { s in
            for index in 0..<n { addScaledSquares(count: o, scale: scale, x: s.baseAddress! + index * o, y: sums) }
        }
        return 4 * n * o
    }
}

/// The output gradient `[N, T, out]` and the per-sample sums `[N, out]` of ``SequenceLinearSquares``'s
/// bias sums, handed to the threads (each writes only its own samples' sums).
private struct BiasSumPointers: @unchecked Sendable {
    let outputGradient: UnsafePointer<Float>
    let sampleSums: UnsafeMutablePointer<Float>
}

/// The operands packed once per sample, handed to the threads of ``SequenceLinearSquares`` (each
/// sample's packed copy is written by one thread, then only read).
private struct SharedOperands: @unchecked Sendable {
    let base: UnsafeMutablePointer<Float>
}

/// Raw pointers handed to the threads of ``SequenceLinearSquares``; each writes only its own
/// columns of `sums` or its own copy in `extra`.
private struct SquaresPointers: @unchecked Sendable {
    let a: UnsafePointer<Float>
    let b: UnsafePointer<Float>
    let sums: UnsafeMutablePointer<Float>
    let extra: UnsafeMutablePointer<Float>?
}
