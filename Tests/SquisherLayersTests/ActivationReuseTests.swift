import SquisherLayers
import SquisherTensor
import Testing

/// Conv2d, ReLU, MaxPool2d and AvgPool2d reuse their output and input-gradient memory across passes
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
        ]
    }

    @Test("later passes equal a fresh layer's, keep held tensors and reuse released memory", arguments: 0..<7)
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
}
