import Foundation

/// Reads files written by `torch.save` (the default zip container, any pickle protocol 2-5) without
/// executing anything: the archive's `<prefix>/data.pkl` goes through ``RestrictedUnpickler`` and each
/// tensor's storage is read from `<prefix>/data/<key>`.
///
/// ```swift
/// let state = try TorchCheckpoint.load(URL(fileURLWithPath: "optimizer.pt"))
/// let groups = state["param_groups"]
/// ```
///
/// The legacy (non-zip, `_use_new_zipfile_serialization=False`) format is not supported.
public enum TorchCheckpoint {
    /// Loads the object saved in `url`.
    /// - Throws: ``CheckpointError`` naming the file and the problem (container, pickle, global, limit, tensor).
    /// - Parameter allowList: the format's extra classes (see ``PickleAllowList``); plain `torch.save` by default.
    public static func load(_ url: URL, limits: PickleLimits = PickleLimits(), allowList: PickleAllowList = .torchSave) throws(CheckpointError) -> PickleValue {
        try load(ZipArchive(contentsOf: url), limits: limits, allowList: allowList)
    }

    /// Loads the object saved in an archive already in memory; `path` names it in messages.
    public static func load(data: Data, path: String, limits: PickleLimits = PickleLimits(), allowList: PickleAllowList = .torchSave) throws(CheckpointError) -> PickleValue {
        try load(ZipArchive(data: data, path: path), limits: limits, allowList: allowList)
    }

    /// Loads an archive whose bytes lie in `file`'s mapping (a byte range of a DCP `.distcp` file).
    static func load(data: Data, path: String, file: MappedFile, allowList: PickleAllowList = .torchSave) throws(CheckpointError) -> PickleValue {
        try load(ZipArchive(data: data, path: path, file: file), allowList: allowList)
    }

    /// Loads the object saved in `archive`.
    public static func load(_ archive: ZipArchive, limits: PickleLimits = PickleLimits(), allowList: PickleAllowList = .torchSave) throws(CheckpointError) -> PickleValue {
        let prefix = try picklePrefix(of: archive)
        if let byteorder = archive.entry(named: prefix + "byteorder") {
            let order = try archive.withBytes(of: byteorder) { String(decoding: $0, as: UTF8.self) }
            guard order == "little" else {
                throw CheckpointError(path: archive.path, problem: "entry '\(prefix)byteorder' says '\(order.prefix(16))'; only little-endian checkpoints are supported")
            }
        }
        let pickle = try archive.contents(of: prefix + "data.pkl")
        return try RestrictedUnpickler.decode(pickle, path: "\(archive.path) (\(prefix)data.pkl)", limits: limits, allowList: allowList, storageFile: archive.file) { reference throws(CheckpointError) in
            let name = prefix + "data/" + reference.key
            guard let entry = archive.entry(named: name) else {
                throw CheckpointError(path: archive.path, problem: "storage '\(reference.key)' has no archive entry '\(name)'")
            }
            return archive.slice(of: entry)  // mapped bytes, converted to float32 without an intermediate copy
        }
    }

    /// The folder (with trailing `/`, or empty) of the archive's single entry named `data.pkl`.
    static func picklePrefix(of archive: ZipArchive) throws(CheckpointError) -> String {
        let candidates = archive.entries.map(\.name).filter { $0 == "data.pkl" || $0.hasSuffix("/data.pkl") }
        guard candidates.count == 1, let name = candidates.first else {
            throw CheckpointError(
                path: archive.path,
                problem: candidates.isEmpty
                    ? "archive has no entry ending in '/data.pkl'; not a torch.save checkpoint"
                    : "archive has \(candidates.count) entries ending in 'data.pkl' (\(candidates.prefix(4).joined(separator: ", "))); cannot tell which is the checkpoint")
        }
        return String(name.dropLast("data.pkl".count))
    }
}
