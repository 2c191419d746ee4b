import Foundation
import SquisherTensor

/// Writes safetensors files atomically (to a temporary file in the same folder, then renamed).
public enum SafeTensorsWriter {
    /// Writes float32 tensors in the order of `tensors`, with optional string metadata.
    /// - Throws: ``SafeTensorsError`` naming the destination when it cannot be written.
    public static func write(_ tensors: NamedTensors, metadata: [String: String] = [:], to url: URL) throws(SafeTensorsError) {
        var header: [String: Any] = [:]
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var offset = 0
        for (name, tensor) in tensors {
            header[name] = ["dtype": "F32", "shape": tensor.shape, "data_offsets": [offset, offset + 4 * tensor.count]]
            offset += 4 * tensor.count
        }
        var headerBytes: Data
        do { headerBytes = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys]) } catch {
            throw SafeTensorsError(path: url.path, problem: "cannot encode the header (\(error))")
        }
        // Pad the header with spaces to a multiple of 8 bytes (as the reference implementation does).
        while headerBytes.count % 8 != 0 { headerBytes.append(0x20) }
        var file = Data(capacity: 8 + headerBytes.count + offset)
        withUnsafeBytes(of: UInt64(headerBytes.count).littleEndian) { file.append(contentsOf: $0) }
        file.append(headerBytes)
        for (_, tensor) in tensors {
            tensor.withUnsafeBufferPointer { buffer in
                // Little-endian hosts only (x86-64, arm64): the bytes are already in file order.
                file.append(UnsafeBufferPointer(start: UnsafeRawPointer(buffer.baseAddress)?.assumingMemoryBound(to: UInt8.self), count: buffer.count * 4))
            }
        }
        try AtomicFile.write(file, to: url)
    }
}

/// Whole-file writes that never leave a half-written file under the final name.
public enum AtomicFile {
    /// Writes `data` to a temporary file beside `url`, then renames it over `url`.
    /// - Throws: ``SafeTensorsError`` naming `url` when the folder is not writable.
    public static func write(_ data: Data, to url: URL) throws(SafeTensorsError) {
        let temporary = url.deletingLastPathComponent()
            .appendingPathComponent(".\(url.lastPathComponent).tmp-\(ProcessInfo.processInfo.processIdentifier)-\(UInt32.random(in: 0...UInt32.max))")
        do {
            try data.write(to: temporary)
            if FileManager.default.fileExists(atPath: url.path) {
                _ = try FileManager.default.replaceItemAt(url, withItemAt: temporary)
            } else {
                try FileManager.default.moveItem(at: temporary, to: url)
            }
        } catch {
            try? FileManager.default.removeItem(at: temporary)
            throw SafeTensorsError(path: url.path, problem: "cannot write (\(error.localizedDescription))")
        }
    }
}
