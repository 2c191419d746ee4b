import SquisherLayers
import SquisherTensor
import Testing

/// Conv2d, ReLU, MaxPool2d, AvgPool2d and GELU reuse their output and input-gradient memory across passes
/// (``ReusableTensor``): a later pass must equal a fresh layer's result bit for bit (same arithmetic,
/// only the memory differs), must not change tensors the caller kept from an earlier pass, and must
/// reuse the memory once the caller lets go.
@Suite("Activation memory reused across passes")
struct ActivationReuseTests {
    static func address(_ tensor: Tensor) -> UnsafePointer<Float>? { tensor.withUnsafeBufferPointer { $0.baseAddress } }

    static func makeLayers() throws -> [any Layer] {
        var generator = SplitMix64(seed: 71)
        return [
            try Conv2d(inputChannels: 3, outputChannels: 5, kernelSize: 3, padding: 1, generator: &generator),
            try Conv2d(inputChannels: 40, outputChannels: 6, kernelSize: 2, stride: 2, generator: &generator),
            ReLU(), try MaxPool2d(kernelSize: 2), try MaxPool2d(kernelSize: 3, stride: 2),
            try AvgPool2d(kernelSize: 2), try AvgPool2d(kernelSize: (3, 2), stride: (1, 2)),
            GELU(approximate: .tanh), GELU(),
        ]
    }

    @Test("later passes equal a fresh layer's, keep held tensors and reuse released memory", arguments: 0..<9)
    func reuse(index: Int) throws {
        let layer = try Self.makeLayers()[index]
        let channels = index == 1 ? 40 : 3
        var generator = SplitMix64(seed: UInt64(80 + index))
        let inputs = (0..<3).map { _ in Tensor.uniform(shape: [4, channels, 10, 12], low: -1, high: 1, using: &generator) }
        // Pass 1, kept by the caller: pass 2 must not touch it.
        let y1 = try layer.forward(inputs[0], mode: .training)
        let dy = Tensor.uniform(shape: y1.shape, low: -1, high: 1, using: &generator)
        let dx1 = try layer.backward(dy, accumulateParameterGradients: false)
        let (savedY1, savedDx1) = (y1.scalars.map { $0 }, dx1.scalars.map { $0 })
        // Pass 2 in a function of its own: its tensors are let go at the end.
        func secondPass() throws -> (UnsafePointer<Float>?, UnsafePointer<Float>?) {
            let y2 = try layer.forward(inputs[1], mode: .training)
            let dx2 = try layer.backward(dy, accumulateParameterGradients: false)
            return (Self.address(y2), Self.address(dx2))
        }
        let (y2Address, dx2Address) = try secondPass()
        #expect(y1.scalars == savedY1 && dx1.scalars == savedDx1, "a held output or gradient was overwritten")
        // Pass 3 after the caller let go of pass 2: same memory, same values as a fresh layer.
        let y3 = try layer.forward(inputs[2], mode: .training)
        let dx3 = try layer.backward(dy, accumulateParameterGradients: false)
        #expect(Self.address(y3) == y2Address, "the output memory was not reused")
        #expect(Self.address(dx3) == dx2Address, "the input-gradient memory was not reused")
        let fresh = try Self.makeLayers()[index]
        let expectedY = try fresh.forward(inputs[2], mode: .training)
        let expectedDx = try fresh.backward(dy, accumulateParameterGradients: false)
        #expect(y3.scalars == expectedY.scalars)
        #expect(dx3.scalars == expectedDx.scalars)
        #expect(y1.scalars == savedY1 && dx1.scalars == savedDx1)
    }

    /// GELU keeps two output slots: the next layer holds the last output as its cached input until its
    /// own next forward, so the output before it is the one reused.
    @Test("GELU reuses the output before the last while the next layer still holds the last")
    func geluOutputWhileHeld() throws {
        let layer = GELU(approximate: .tanh)
        var generator = SplitMix64(seed: 91)
        let inputs = (0..<4).map { _ in Tensor.uniform(shape: [3, 40], low: -3, high: 3, using: &generator) }
        var held = try layer.forward(inputs[0], mode: .training)  // as c_proj's cached input
        let firstAddress = Self.address(held)
        held = try layer.forward(inputs[1], mode: .training)  // the first output is let go here
        let kept = held.scalars
        let third = try layer.forward(inputs[2], mode: .training)
        #expect(Self.address(third) == firstAddress, "the output before the last was not reused")
        #expect(held.scalars == kept, "the held output was overwritten")
        #expect(third.scalars == (try GELU(approximate: .tanh).forward(inputs[2], mode: .training)).scalars)
    }

    /// `Conv1D` reuses its output and input-gradient memory once nothing holds the last ones; the values
    /// equal a fresh layer's bit for bit, and tensors the caller keeps are never written.
    @Test("Conv1D (TransposedLinear) output and input-gradient memory reused across passes")
    func transposedLinear() throws {
        var generator = SplitMix64(seed: 92)
        let layer = TransposedLinear(inputFeatures: 12, outputFeatures: 7, generator: &generator)
        layer.bias.value = Tensor.uniform(shape: [7], low: -1, high: 1, using: &generator)
        let inputs = (0..<3).map { _ in Tensor.uniform(shape: [5, 4, 12], low: -1, high: 1, using: &generator) }
        let dy = Tensor.uniform(shape: [5, 4, 7], low: -1, high: 1, using: &generator)
        let y1 = try layer.forward(inputs[0], mode: .training)
        let dx1 = try layer.backward(dy, accumulateParameterGradients: false)
        let (savedY, savedDx) = (y1.scalars, dx1.scalars)
        func secondPass() throws -> (UnsafePointer<Float>?, UnsafePointer<Float>?) {
            let y2 = try layer.forward(inputs[1], mode: .training)
            return (Self.address(y2), Self.address(try layer.backward(dy, accumulateParameterGradients: false)))
        }
        let (y2Address, dx2Address) = try secondPass()
        #expect(Self.address(y1) != y2Address && Self.address(dx1) != dx2Address, "a held tensor was reused")
        let y3 = try layer.forward(inputs[2], mode: .training)
        let dx3 = try layer.backward(dy, accumulateParameterGradients: false)
        #expect(Self.address(y3) == y2Address, "the output memory was not reused")
        #expect(Self.address(dx3) == dx2Address, "the input-gradient memory was not reused")
        #expect(y1.scalars == savedY && dx1.scalars == savedDx)
        let fresh = TransposedLinear(inputFeatures: 12, outputFeatures: 7, generator: &generator)
        fresh.weight.value = layer.weight.value
        fresh.bias.value = layer.bias.value
        #expect(y3.scalars == (try fresh.forward(inputs[2], mode: .training)).scalars)
        #expect(dx3.scalars == (try fresh.backward(dy, accumulateParameterGradients: false)).scalars)
        // Empty shapes: no rows, no output features.
        let empty = TransposedLinear(inputFeatures: 3, outputFeatures: 0, generator: &generator)
        _ = try empty.forward(Tensor(zeros: [2, 3]), mode: .training)
        #expect(try empty.backward(Tensor(zeros: [2, 0]), accumulateParameterGradients: true).scalars == [0, 0, 0, 0, 0, 0])
    }
}
