import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Path checks shared by every command that writes: an output may never be, contain or lie inside
/// one of the command's inputs, after resolving symlinks (so `--output link-to-ckpt/model.safetensors`
/// is caught as well as `--output ckpt/model.safetensors`).
public enum OutputPaths {
    /// The absolute, symlink-free form of `url`: the longest existing prefix is resolved with
    /// `realpath(3)` and the rest (not yet created) appended with `.` and `..` removed.
    public static func resolved(_ url: URL) -> String {
        let components = url.standardizedFileURL.path.split(separator: "/").map(String.init)
        var existing = components.count
        while existing > 0 {
            let prefix = "/" + components[..<existing].joined(separator: "/")
            if let real = realpath(prefix, nil) {
                defer { free(real) }
                let base = String(cString: real)
                let rest = components[existing...]
                return rest.isEmpty ? base : (base == "/" ? "" : base) + "/" + rest.joined(separator: "/")
            }
            existing -= 1
        }
        return "/" + components.joined(separator: "/")
    }

    /// Refuses `output` when, after resolving symlinks, it is one of `inputs`, lies inside one (an
    /// input folder) or contains one.
    /// - Parameters:
    ///   - argument: how the user gave the output (`"--output"`), for the message.
    /// - Throws: ``OutputError`` naming the output, the input and the relation.
    public static func refuseOverlap(output: URL, inputs: [URL], argument: String = "--output") throws(OutputError) {
        let target = resolved(output)
        for input in inputs {
            let source = resolved(input)
            let relation: String
            if target == source {
                relation = "is the input \(input.path)"
            } else if target.hasPrefix(source.hasSuffix("/") ? source : source + "/") {
                relation = "lies inside the input \(input.path)"
            } else if source.hasPrefix(target.hasSuffix("/") ? target : target + "/") {
                relation = "contains the input \(input.path)"
            } else {
                continue
            }
            throw OutputError(path: output.path, problem: "\(argument) \(relation); inputs are never modified, choose another output path")
        }
    }
}
