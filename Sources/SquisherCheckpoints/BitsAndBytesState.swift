import SquisherTensor

/// The second moment of a bitsandbytes optimizer (`AdamW8bit`, `AdamW32bit`, `PagedAdamW8bit`, ...),
/// read from `state2` of its `__bnb_optimizer_quant_state__`.
///
/// 8-bit states (parameters with at least `min_8bit_size` = 4096 elements) are blockwise-quantized
/// with blocks of 256 elements: `state2` holds uint8 codes, `qmap2` the 256-entry (unsigned dynamic)
/// code book, `absmax2` one scale per block, and
///
///     v[i] = qmap2[state2[i]] · absmax2[i / 256]
///
/// exactly as `bitsandbytes.functional.dequantize_blockwise` (a float32 product). 32-bit states
/// (and small parameters of 8-bit optimizers) hold `v` in `state2` directly.
public enum BitsAndBytesState {
    /// Elements per quantization block of bitsandbytes' blockwise 8-bit optimizers.
    public static let blockSize = 256

    /// Checks that `state2` can be dequantized: float state, or uint8 codes with a 256-entry code book
    /// and one scale per block of 256.
    /// - Throws: ``CheckpointError`` naming `parameter` otherwise.
    public static func check(state2: TorchTensor, qmap: TorchTensor?, absmax: TorchTensor?, parameter: String, path: String) throws(CheckpointError) {
        func fail(_ problem: String) -> CheckpointError {
            CheckpointError(path: path, problem: "bitsandbytes state of '\(parameter)': \(problem)")
        }
        switch state2.dtype {
        case .float32, .float16, .bfloat16: return
        case .uint8:
            guard let qmap, qmap.count == 256 else {
                throw fail("state2 holds 8-bit codes but qmap2 is \(qmap.map { "of \($0.count) entries" } ?? "missing"); expected the 256-entry code book")
            }
            let blocks = (state2.count + blockSize - 1) / blockSize
            guard let absmax, absmax.count == blocks else {
                throw fail("state2 has \(state2.count) 8-bit codes, which needs \(blocks) absmax2 scales (blocks of \(blockSize)), but absmax2 has \(absmax.map { "\($0.count)" } ?? "none")")
            }
        default:
            throw fail("state2 is \(state2.dtype.rawValue); expected uint8 codes (8-bit) or float32 (32-bit)")
        }
    }

    /// `v` of one parameter from its `state2` and, for uint8 codes, `qmap2` and `absmax2`.
    /// - Throws: ``CheckpointError`` naming `parameter` when the code book or scales are missing or
    ///   have the wrong size, or `state2` has an unexpected dtype.
    public static func secondMoment(
        state2: TorchTensor, qmap: TorchTensor?, absmax: TorchTensor?, parameter: String, path: String
    ) throws(CheckpointError) -> Tensor {
        func fail(_ problem: String) -> CheckpointError {
            CheckpointError(path: path, problem: "bitsandbytes state of '\(parameter)': \(problem)")
        }
        switch state2.dtype {
        case .float32, .float16, .bfloat16:
            return state2.tensor
        case .uint8:
            guard let qmap, qmap.tensor.count == 256 else {
                throw fail("state2 holds 8-bit codes but qmap2 is \(qmap.map { "of \($0.tensor.count) entries" } ?? "missing"); expected the 256-entry code book")
            }
            let count = state2.tensor.count
            let blocks = (count + blockSize - 1) / blockSize
            guard let absmax, absmax.tensor.count == blocks else {
                throw fail("state2 has \(count) 8-bit codes, which needs \(blocks) absmax2 scales (blocks of \(blockSize)), but absmax2 has \(absmax.map { "\($0.tensor.count)" } ?? "none")")
            }
            var out = [Float](repeating: 0, count: count)
            qmap.tensor.scalars.withUnsafeBufferPointer { code in
                absmax.tensor.scalars.withUnsafeBufferPointer { scale in
                    state2.tensor.scalars.withUnsafeBufferPointer { q in
                        out.withUnsafeMutableBufferPointer { o in
                            for i in 0..<count { o[i] = code[Int(q[i])] * scale[i / blockSize] }
                        }
                    }
                }
            }
            return Tensor(uncheckedShape: state2.shape, scalars: out)
        default:
            throw fail("state2 is \(state2.dtype.rawValue); expected uint8 codes (8-bit) or float32 (32-bit)")
        }
    }
}
