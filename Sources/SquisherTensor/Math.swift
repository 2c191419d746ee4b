#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#elseif canImport(Musl)
import Musl
#endif

/// Elementary functions for the rest of the package, so that other modules need no libc import.
public enum ScalarMath {
    @inlinable public static func exp(_ x: Float) -> Float { _expf(x) }
    @inlinable public static func log(_ x: Float) -> Float { _logf(x) }
    @inlinable public static func tanh(_ x: Float) -> Float { _tanhf(x) }
    @inlinable public static func erf(_ x: Float) -> Float { _erff(x) }
    @inlinable public static func exp(_ x: Double) -> Double { _exp(x) }
    @inlinable public static func log(_ x: Double) -> Double { _log(x) }
    @inlinable public static func tanh(_ x: Double) -> Double { _tanh(x) }
    @inlinable public static func erf(_ x: Double) -> Double { _erf(x) }
}

@usableFromInline func _expf(_ x: Float) -> Float { expf(x) }
@usableFromInline func _logf(_ x: Float) -> Float { logf(x) }
@usableFromInline func _tanhf(_ x: Float) -> Float { tanhf(x) }
@usableFromInline func _erff(_ x: Float) -> Float { erff(x) }
@usableFromInline func _exp(_ x: Double) -> Double { exp(x) }
@usableFromInline func _tanh(_ x: Double) -> Double { tanh(x) }
@usableFromInline func _erf(_ x: Double) -> Double { erf(x) }
@usableFromInline func _log(_ x: Double) -> Double { log(x) }
@usableFromInline func _cos(_ x: Double) -> Double { cos(x) }
