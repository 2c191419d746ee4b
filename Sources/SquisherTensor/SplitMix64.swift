/// A seedable 64-bit generator (SplitMix64, Steele, Lea & Flood 2014), used for every random
/// choice in Squisher: initialization, shuffling, dropout, label sampling, random baselines.
///
/// The same seed gives the same sequence bit for bit on every platform. Derive independent
/// streams with ``fork()`` rather than reusing one generator across unrelated consumers.
public struct SplitMix64: RandomNumberGenerator, Sendable, Hashable {
    /// The internal state; advances by the golden-ratio increment on every draw.
    public var state: UInt64

    /// Creates a generator from a seed.
    @inlinable
    public init(seed: UInt64) { state = seed }

    @inlinable
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A new generator seeded from this one's next output (an independent stream).
    @inlinable
    public mutating func fork() -> SplitMix64 { SplitMix64(seed: next()) }

    /// A uniform `Float` in [0, 1) with 24 random bits.
    @inlinable
    public mutating func nextUniformFloat() -> Float { Float(next() >> 40) * 0x1p-24 }

    /// A uniform `Double` in [0, 1) with 53 random bits.
    @inlinable
    public mutating func nextUniformDouble() -> Double { Double(next() >> 11) * 0x1p-53 }

    /// A standard normal sample (Box-Muller on two uniform doubles).
    public mutating func nextNormal() -> Double {
        let u1 = 1 - nextUniformDouble()  // (0, 1]: log stays finite
        let u2 = nextUniformDouble()
        return (-2 * _log(u1)).squareRoot() * _cos(2 * Double.pi * u2)
    }
}


extension Tensor {
    /// Uniform samples in [low, high), drawn in row-major order from `generator`.
    public static func uniform(
        shape: [Int], low: Float, high: Float, using generator: inout SplitMix64
    ) -> Tensor {
        let count = shape.reduce(1, *)
        var scalars = [Float](repeating: 0, count: count)
        for i in 0..<count { scalars[i] = low + (high - low) * generator.nextUniformFloat() }
        return Tensor(uncheckedShape: shape, scalars: scalars)
    }

    /// Normal samples with the given mean and standard deviation, drawn in row-major order.
    public static func normal(
        shape: [Int], mean: Float = 0, standardDeviation: Float = 1, using generator: inout SplitMix64
    ) -> Tensor {
        let count = shape.reduce(1, *)
        var scalars = [Float](repeating: 0, count: count)
        for i in 0..<count { scalars[i] = mean + standardDeviation * Float(generator.nextNormal()) }
        return Tensor(uncheckedShape: shape, scalars: scalars)
    }
}
