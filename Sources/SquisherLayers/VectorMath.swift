import SquisherTensor

/// Elementary functions on 16 lanes at once, for the element-wise layers' hot loops (GELU,
/// softmax): no libm call per element, multiply-adds written `a * b + c` (see STYLE.md).
enum VectorMath {
    typealias Vector = SIMD16<Float>

    /// Whether a layer whose `kernelISALevel` is `level` runs the AVX-512 C kernels: the level asks for
    /// them (3) and the CPU has them; otherwise the Swift lanes of this enum run.
    static func usesAVX512Kernels(level: Int) -> Bool { min(level, GEMMKernelInfo.cpuISALevel) >= 3 }

    /// `e^x` per lane (Cephes `expf`: `x = n ln 2 + r`, `|r| <= ln2/2`, degree-6 polynomial in `r`,
    /// `2^n` from the exponent bits). Relative error below 2 ulp on `[-87, 88]`. Below -87 the
    /// result is exactly 0 and above 88 it is +∞: no subnormal results (a saturated softmax would
    /// otherwise feed values near 1e-38 into the backward products, whose subnormal partial
    /// products take microcode assists and slowed a GPT-2 backward pass sevenfold). NaN stays NaN.
    @inline(__always)
    static func exp(_ x: Vector) -> Vector {
        // Clamped with compare-and-select (`clamped(lowerBound:upperBound:)` is NaN-aware and runs lane by lane).
        let low = Vector(repeating: -87.0), high = Vector(repeating: 88.0)
        let clamped = x.replacing(with: low, where: x .< low).replacing(with: high, where: x .> high)
        // n = round(x / ln 2) via the 1.5·2^23 trick: the low mantissa bits of `shifted` hold n.
        let magic = Vector(repeating: 12_582_912)
        let shifted = clamped * Vector(repeating: 1.442_695_04) + magic
        let n = shifted - magic
        var r = n * Vector(repeating: -0.693_359_375) + clamped
        r = n * Vector(repeating: 2.121_944_4e-4) + r
        var p = Vector(repeating: 1.987_569_15e-4)
        p = p * r + Vector(repeating: 1.398_199_950_7e-3)
        p = p * r + Vector(repeating: 8.333_451_907_3e-3)
        p = p * r + Vector(repeating: 4.166_579_589_4e-2)
        p = p * r + Vector(repeating: 1.666_666_545_9e-1)
        p = p * r + Vector(repeating: 5.000_000_120_1e-1)
        p = p * (r * r) + r + Vector(repeating: 1)
        // 2^n: (n + 127) << 23 as a float's bits; n is in the low bits of `shifted`.
        let bits = unsafeBitCast(shifted, to: SIMD16<UInt32>.self) &- unsafeBitCast(magic, to: SIMD16<UInt32>.self)
        let scale = unsafeBitCast((bits &+ SIMD16<UInt32>(repeating: 127)) &<< SIMD16<UInt32>(repeating: 23), to: Vector.self)
        return (p * scale).replacing(with: 0, where: x .< low).replacing(with: .infinity, where: x .> high)
    }

    /// `1 / (1 + e^{-x})` per lane, accurate in relative terms for every sign of `x` (no `1 - ...` cancellation).
    @inline(__always)
    static func sigmoid(_ x: Vector) -> Vector {
        Vector(repeating: 1) / (Vector(repeating: 1) + exp(-x))
    }

    /// `erfc(|z|)` per lane (Numerical Recipes' Chebyshev fit `erfcc`, fractional error below 1.2e-7
    /// everywhere), so that `Φ(x) = erfc(-x/√2)/2` keeps its relative accuracy in both tails.
    @inline(__always)
    static func erfcOfMagnitude(_ z: Vector) -> Vector {
        let a = z.replacing(with: -z, where: z .< 0)
        let t = Vector(repeating: 1) / (a * Vector(repeating: 0.5) + Vector(repeating: 1))
        var p = Vector(repeating: 0.170_872_77)
        p = p * t + Vector(repeating: -0.822_152_23)
        p = p * t + Vector(repeating: 1.488_515_87)
        p = p * t + Vector(repeating: -1.135_203_98)
        p = p * t + Vector(repeating: 0.278_868_07)
        p = p * t + Vector(repeating: -0.186_288_06)
        p = p * t + Vector(repeating: 0.096_784_18)
        p = p * t + Vector(repeating: 0.374_091_96)
        p = p * t + Vector(repeating: 1.000_023_68)
        p = p * t + Vector(repeating: -1.265_512_23)
        return t * exp(p - a * a)
    }

    /// The standard normal CDF `Φ(x) = (1 + erf(x/√2))/2` per lane.
    @inline(__always)
    static func normalCDF(_ x: Vector) -> Vector {
        let half = erfcOfMagnitude(x * Vector(repeating: 0.707_106_781_186_547_52)) * Vector(repeating: 0.5)
        return half.replacing(with: Vector(repeating: 1) - half, where: x .> Vector())
    }

    /// Loads 16 floats (unaligned).
    @inline(__always)
    static func load(_ p: UnsafePointer<Float>) -> Vector { UnsafeRawPointer(p).loadUnaligned(as: Vector.self) }

    /// The first `count < 16` floats at `p`, the other lanes 0 (one copy, not lane by lane).
    @inline(__always)
    static func loadTail(_ p: UnsafePointer<Float>, _ count: Int) -> Vector {
        var v = Vector()
        withUnsafeMutableBytes(of: &v) { $0.baseAddress!.copyMemory(from: p, byteCount: 4 * count) }
        return v
    }

    /// Stores the first `count < 16` lanes of `v` at `p`.
    @inline(__always)
    static func storeTail(_ v: Vector, _ p: UnsafeMutablePointer<Float>, _ count: Int) {
        withUnsafeBytes(of: v) { UnsafeMutableRawPointer(p).copyMemory(from: $0.baseAddress!, byteCount: 4 * count) }
    }

    /// Stores 16 floats (unaligned).
    @inline(__always)
    static func store(_ v: Vector, _ p: UnsafeMutablePointer<Float>) { UnsafeMutableRawPointer(p).storeBytes(of: v, as: Vector.self) }

    /// Applies a 16-lane function to `count` floats of `x` into `y` (a zero-padded tail vector for
    /// the last `count % 16`); `x` and `y` may be the same buffer.
    @inline(__always)
    static func map(count: Int, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ f: (Vector) -> Vector) {
        var i = 0
        while i + 16 <= count {
            store(f(load(x + i)), y + i)
            i += 16
        }
        if i < count {
            let result = f(loadTail(x + i, count - i))
            storeTail(result, y + i, count - i)
        }
    }

    /// As ``map(count:_:_:_:)`` for a function returning a value and its derivative, stored in `y` and `dy`.
    @inline(__always)
    static func mapWithDerivative(
        count: Int, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ dy: UnsafeMutablePointer<Float>,
        _ f: (Vector) -> (Vector, Vector)
    ) {
        var i = 0
        while i + 16 <= count {
            let (value, slope) = f(load(x + i))
            store(value, y + i)
            store(slope, dy + i)
            i += 16
        }
        if i < count {
            let (value, slope) = f(loadTail(x + i, count - i))
            storeTail(value, y + i, count - i)
            storeTail(slope, dy + i, count - i)
        }
    }

    /// As ``map(count:_:_:_:)`` with two inputs (gradient and cached input of a backward).
    @inline(__always)
    static func map2(
        count: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ f: (Vector, Vector) -> Vector
    ) {
        var i = 0
        while i + 16 <= count {
            store(f(load(a + i), load(b + i)), y + i)
            i += 16
        }
        if i < count {
            storeTail(f(loadTail(a + i, count - i), loadTail(b + i, count - i)), y + i, count - i)
        }
    }
}
