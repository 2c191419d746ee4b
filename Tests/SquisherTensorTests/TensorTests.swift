import SquisherTensor
import Testing

@Suite("Tensor core")
struct TensorTests {
    @Test("SplitMix64 matches the reference sequence and is reproducible")
    func splitMix() {
        // Reference values of SplitMix64 seeded with 0 (Vigna's splitmix64.c, first three outputs).
        var generator = SplitMix64(seed: 0)
        #expect(generator.next() == 0xE220_A839_7B1D_CDAF)
        #expect(generator.next() == 0x6E78_9E6A_A1B9_65F4)
        #expect(generator.next() == 0x06C4_5D18_8009_454F)
        var a = SplitMix64(seed: 42), b = SplitMix64(seed: 42)
        #expect(Tensor.normal(shape: [100], using: &a) == Tensor.normal(shape: [100], using: &b))
        let uniform = Tensor.uniform(shape: [10_000], low: -1, high: 1, using: &a)
        #expect(uniform.scalars.allSatisfy { $0 >= -1 && $0 < 1 })
        #expect(abs(uniform.mean()) < 0.03)  // 4 standard errors of U(-1,1) over 10k draws: 4 * 0.577 / 100
    }

    @Test("shapes are checked: bad scalar counts, bad reshapes, mismatched element-wise operands")
    func shapes() throws {
        #expect(throws: TensorError.self) { try Tensor(shape: [2, 3], scalars: [1, 2]) }
        let t = try Tensor(shape: [2, 3], scalars: [1, 2, 3, 4, 5, 6])
        #expect(try t.reshaped([3, -1]).shape == [3, 2])
        #expect(throws: TensorError.self) { try t.reshaped([4, -1]) }
        #expect {
            try t + Tensor(zeros: [3, 2])
        } throws: { "\($0)".contains("expected shape [2, 3], got shape [3, 2]") }
        #expect(t[1, 2] == 6)
        #expect(try t.sumOverLeadingAxis().scalars == [5, 7, 9])
        #expect(try t.argmaxRows() == [2, 2])
    }

    @Test("softmax and log-softmax are stable for logits of ±1e4 and rows sum to 1")
    func softmax() throws {
        let logits = try Tensor(shape: [2, 3], scalars: [1e4, 0, -1e4, 3, 1, 2])
        let log = try logits.logSoftmaxRows()
        #expect(log.isFinite)
        #expect(log[0, 0] == 0 && log[0, 1] == -1e4)
        let p = try logits.softmaxRows()
        // Row 2 against the closed form exp(z - logsumexp(z)) in Double: 1e-6 relative (float32).
        let z = [3.0, 1, 2], lse = Foundation_log(z.map { Foundation_exp($0) }.reduce(0, +))
        for j in 0..<3 { #expect(abs(Double(p[1, j]) - Foundation_exp(z[j] - lse)) < 1e-6) }
    }

    @Test("matmul against hand-computed products in all four transpose combinations")
    func matmul() throws {
        let a = try Tensor(shape: [2, 3], scalars: [1, 2, 3, 4, 5, 6])
        let b = try Tensor(shape: [3, 2], scalars: [7, 8, 9, 10, 11, 12])
        let expected: [Float] = [58, 64, 139, 154]
        #expect(try Tensor.matmul(a, b).scalars == expected)
        let at = try Tensor(shape: [3, 2], scalars: [1, 4, 2, 5, 3, 6]), bt = try Tensor(shape: [2, 3], scalars: [7, 9, 11, 8, 10, 12])
        #expect(try Tensor.matmul(at, b, transposeA: true).scalars == expected)
        #expect(try Tensor.matmul(a, bt, transposeB: true).scalars == expected)
        #expect(try Tensor.matmul(at, bt, transposeA: true, transposeB: true).scalars == expected)
        #expect(throws: TensorError.self) { try Tensor.matmul(a, a) }
    }

    @Test("named tensors keep order and reject duplicates")
    func namedTensors() throws {
        var named = try NamedTensors([("b", Tensor(zeros: [1])), ("a", Tensor(zeros: [2]))])
        #expect(named.names == ["b", "a"] && named.scalarCount == 3)
        named["c"] = Tensor(zeros: [3])
        named["b"] = nil
        #expect(named.names == ["a", "c"])
        #expect(throws: TensorError.self) { try NamedTensors([("x", Tensor(zeros: [1])), ("x", Tensor(zeros: [1]))]) }
        #expect { try named.tensor(named: "zz") } throws: { "\($0)".contains("'zz'") }
    }
}

// Double-precision references without importing Foundation into the module under test.
import Foundation
func Foundation_log(_ x: Double) -> Double { Foundation.log(x) }
func Foundation_exp(_ x: Double) -> Double { Foundation.exp(x) }
