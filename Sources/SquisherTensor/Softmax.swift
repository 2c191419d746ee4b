#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#elseif canImport(Musl)
import Musl
#endif

extension Tensor {
    /// Row-wise log-softmax of `[rows, classes]` logits, stable for large logits:
    /// `log p_c = z_c - max(z) - log sum_j exp(z_j - max(z))`, accumulated in `Double`.
    /// - Throws: ``TensorError/shapeMismatch(operation:expected:actual:)`` unless rank 2.
    public func logSoftmaxRows() throws(TensorError) -> Tensor {
        guard rank == 2 else { throw .shapeMismatch(operation: "logSoftmaxRows", expected: "rank-2 logits [rows, classes]", actual: shape) }
        let classes = shape[1]
        var result = self
        result.withUnsafeMutableBufferPointer { z in
            for r in 0..<shape[0] {
                let row = z.baseAddress! + r * classes
                var maximum = -Float.infinity
                for c in 0..<classes { maximum = Swift.max(maximum, row[c]) }
                if !maximum.isFinite { maximum = 0 }
                var total = 0.0
                for c in 0..<classes { total += exp(Double(row[c] - maximum)) }
                let logTotal = Float(log(total))
                for c in 0..<classes { row[c] = row[c] - maximum - logTotal }
            }
        }
        return result
    }

    /// Row-wise softmax of `[rows, classes]` logits; rows sum to 1 (stable for large logits).
    /// - Throws: ``TensorError/shapeMismatch(operation:expected:actual:)`` unless rank 2.
    public func softmaxRows() throws(TensorError) -> Tensor {
        try logSoftmaxRows().map { exp($0) }
    }
}
