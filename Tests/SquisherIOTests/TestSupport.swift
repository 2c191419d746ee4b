import Foundation
import SquisherIO

/// A fresh temporary folder per test (tests run in parallel; nothing is shared).
struct TemporaryFolder: ~Copyable {
    let url: URL

    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("SquisherIOTests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(at: url) }

    /// A path inside the folder.
    func file(_ name: String) -> URL { url.appendingPathComponent(name) }

    /// The folder's file names (to check that no temporary file was left behind).
    func contents() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: url.path)) ?? []).sorted()
    }

    /// Writes bytes to `name` and returns its URL.
    func write(_ bytes: [UInt8], to name: String) throws -> URL {
        let target = file(name)
        try Data(bytes).write(to: target)
        return target
    }
}

/// Builds safetensors bytes by hand: the 8-byte little-endian length (or `lengthOverride`), the
/// header text, then `data`.
func safetensorsBytes(header: String, data: [UInt8], lengthOverride: UInt64? = nil) -> [UInt8] {
    let headerBytes = Array(header.utf8)
    let length = lengthOverride ?? UInt64(headerBytes.count)
    var out: [UInt8] = []
    for i in 0..<8 { out.append(UInt8(truncatingIfNeeded: length >> (8 * UInt64(i)))) }
    return out + headerBytes + data
}

/// Little-endian bytes of float32 values (independent of the library's encoder).
func float32Bytes(_ values: [Float]) -> [UInt8] {
    values.flatMap { v -> [UInt8] in
        let bits = v.bitPattern
        return (0..<4).map { UInt8(truncatingIfNeeded: bits >> (8 * UInt32($0))) }
    }
}

/// The repository's test resources.
func resource(_ name: String, _ ext: String) throws -> URL {
    guard let url = Bundle.module.url(forResource: name, withExtension: ext, subdirectory: "Resources") else {
        throw CocoaError(.fileNoSuchFile, userInfo: [NSFilePathErrorKey: "Resources/\(name).\(ext)"])
    }
    return url
}
