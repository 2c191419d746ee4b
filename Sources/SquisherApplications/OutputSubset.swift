import SquisherLayers
import SquisherTensor

/// Keeps only some columns of `[N, C]` logits: a task-specific head carved out of a shared output
/// layer ("active classes" in task-incremental continual learning). No parameters.
public final class OutputSubset: Layer {
    public let typeName = "OutputSubset"
    public var localParameters: [(name: String, parameter: Parameter)] { [] }
    /// The kept columns, in output order.
    public let columns: [Int]
    private var inputShape: [Int]?

    public init(columns: [Int]) { self.columns = columns }

    public func forward(_ input: Tensor, mode: LayerMode) throws(TensorError) -> Tensor {
        guard input.rank == 2, let maxColumn = columns.max(), maxColumn < input.shape[1], (columns.min() ?? 0) >= 0 else {
            throw .shapeMismatch(operation: "OutputSubset(\(columns)) forward", expected: "[N, C] with C > \(columns.max() ?? 0)", actual: input.shape)
        }
        inputShape = input.shape
        let n = input.shape[0], c = input.shape[1]
        var out = [Float](repeating: 0, count: n * columns.count)
        for row in 0..<n { for (k, column) in columns.enumerated() { out[row * columns.count + k] = input.scalars[row * c + column] } }
        return Tensor(uncheckedShape: [n, columns.count], scalars: out)
    }

    public func backward(_ outputGradient: Tensor, accumulateParameterGradients: Bool) throws(TensorError) -> Tensor {
        guard let shape = inputShape else { throw .invalidArgument(argument: "OutputSubset.backward", reason: "called before forward") }
        try outputGradient.checkShape([shape[0], columns.count], "OutputSubset backward")
        var gradient = [Float](repeating: 0, count: shape[0] * shape[1])
        for row in 0..<shape[0] { for (k, column) in columns.enumerated() { gradient[row * shape[1] + column] += outputGradient.scalars[row * columns.count + k] } }
        return Tensor(uncheckedShape: shape, scalars: gradient)
    }
}
