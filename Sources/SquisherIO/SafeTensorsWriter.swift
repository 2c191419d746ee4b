import Foundation
import SquisherTensor

/// Writes whole safetensors files atomically (a temporary file in the same folder, renamed over
/// the destination), through ``SafeTensorsStreamWriter``.
///
/// Tensors are stored in the order of the ``NamedTensors``; the header lists `__metadata__` first
/// (keys sorted) and is padded with spaces to a multiple of 8 bytes. Float32 values are converted
/// to the chosen dtype with round-to-nearest-even (F64 is exact; F16 and BF16 have a relative
/// rounding error of at most 2⁻¹¹ and 2⁻⁸ in the normal range, see
/// ``SafeTensorsDType/unitRoundoff``); a finite value that overflows F16/BF16, or a non-integer
/// for an integer dtype, is an error naming the tensor and element.
public enum SafeTensorsWriter {
    /// Writes every tensor with one `dtype` (float32 by default), with optional string metadata.
    /// - Throws: ``SafeTensorsError`` naming the destination when it cannot be written or a value
    ///   does not fit `dtype`.
    public static func write(
        _ tensors: NamedTensors, metadata: [String: String] = [:], dtype: SafeTensorsDType = .float32, to url: URL
    ) throws(SafeTensorsError) {
        try write(tensors, metadata: metadata, dtypes: [:], defaultDType: dtype, to: url)
    }

    /// Writes each tensor with its own dtype from `dtypes` (by tensor name), `defaultDType` for
    /// tensors not in the map. To write "in the input's dtype", pass the entries' dtypes of the
    /// ``SafeTensorsFile`` the tensors came from.
    /// - Throws: ``SafeTensorsError`` naming the destination when `dtypes` names a tensor that is
    ///   not being written, the file cannot be written, or a value does not fit its dtype.
    public static func write(
        _ tensors: NamedTensors, metadata: [String: String] = [:], dtypes: [String: SafeTensorsDType],
        defaultDType: SafeTensorsDType = .float32, to url: URL
    ) throws(SafeTensorsError) {
        if let stray = dtypes.keys.sorted().first(where: { tensors[$0] == nil }) {
            throw SafeTensorsError(path: url.path, problem: "dtypes names tensor '\(stray)', which is not among the tensors written")
        }
        let specs = tensors.map { SafeTensorsStreamWriter.TensorSpec(name: $0.name, dtype: dtypes[$0.name] ?? defaultDType, shape: $0.tensor.shape) }
        let writer = try SafeTensorsStreamWriter(to: url, tensors: specs, metadata: metadata)
        for (name, tensor) in tensors { try writer.write(name, tensor) }
        try writer.finish()
    }
}
