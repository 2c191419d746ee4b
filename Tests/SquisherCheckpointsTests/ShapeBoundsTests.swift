import Foundation
import SquisherCheckpoints
import SquisherTensor
import Testing

/// Shapes that a hostile checkpoint can claim without holding the data: each must be refused with a
/// message naming the parameter, before any arithmetic overflows or any buffer is allocated. The
/// DeepSpeed and DCP cases are replayed by the corpus (`crash-*` inputs of the format targets).
@Suite("Shape bounds")
struct ShapeBoundsTests {
    /// Adafactor factors of 2^20 entries each (8 MB in all; a stride-0 view needs 4 bytes) describe a
    /// 2^40-element second moment: refused, where the reconstruction once asked for 4 TB and trapped.
    @Test func adafactorFactorsWithAnUnboundedProduct() throws {
        let n = 1 << 20
        #expect(throws: CheckpointError.self) { try AdafactorState.shape(row: [n], column: [n], parameter: "w", path: "optimizer.pt") }
        let row = Tensor(repeating: 1, shape: [n]), column = Tensor(repeating: 1, shape: [n])
        do {
            _ = try AdafactorState.reconstruct(row: row, column: column, parameter: "w", path: "optimizer.pt")
            Issue.record("a 2^40-element reconstruction was attempted")
        } catch {
            #expect(error.problem.contains("'w'") && error.problem.contains("more than the \(AdafactorState.maxElements) elements"), "\(error)")
        }
        // Just within the bound (2^15 x 2^15 = 2^30) the shape is accepted: the bound is the tensor limit, not lower.
        #expect(try AdafactorState.shape(row: [1 << 15], column: [1 << 15], parameter: "w", path: "optimizer.pt") == [1 << 15, 1 << 15])
    }
}
