import Foundation
import SquisherCheckpoints

/// A `torch.save` archive whose `data.pkl` can be swapped for other bytes, keeping every other entry
/// (the storages) as it was: the fuzz targets mutate the pickle of a real checkpoint.
///
/// Written like `torch.save`: stored (uncompressed) entries whose data start 64-byte aligned (local
/// extra field `0x4642` as padding), CRC-32 filled in, then the central directory and the end record.
/// The other entries are laid out once; each ``replacingPickle(with:)`` appends only the pickle.
/// (Bytes are kept in arrays, not `Data`, so that LeakSanitizer sees the cached layout as reachable.)
struct StoredZipArchive {
    /// One entry's central-directory fields.
    private struct Record {
        var name: String
        var crc: UInt32
        var size: Int
        var localOffset: Int
    }

    private let pickleName: String
    private var head: [UInt8] = []
    private var records: [Record] = []

    /// Reads the archive at `url` (validated by ``ZipArchive``) and lays out all but its `data.pkl`.
    init(_ url: URL) throws {
        let archive = try ZipArchive(contentsOf: url)
        guard let pickle = archive.entries.first(where: { $0.name == "data.pkl" || $0.name.hasSuffix("/data.pkl") }) else {
            throw CheckpointError(path: url.path, problem: "no data.pkl entry")
        }
        pickleName = pickle.name
        for entry in archive.entries where entry.name != pickle.name {
            let bytes = [UInt8](try archive.contents(of: entry.name))
            Self.appendLocal(name: entry.name, bytes: bytes, to: &head, records: &records)
        }
    }

    /// The archive with `pickle` as its `data.pkl`.
    func replacingPickle(with pickle: Data) -> Data {
        var data = head
        var all = records
        Self.appendLocal(name: pickleName, bytes: [UInt8](pickle), to: &data, records: &all)
        let directoryStart = data.count
        for record in all {
            let name = Array(record.name.utf8)
            data.appendLittleEndian(UInt32(0x0201_4b50), UInt16(20), UInt16(20), UInt16(0), UInt16(0), UInt16(0), UInt16(0))
            data.appendLittleEndian(record.crc, UInt32(record.size), UInt32(record.size), UInt16(name.count), UInt16(0), UInt16(0), UInt16(0), UInt16(0))
            data.appendLittleEndian(UInt32(0), UInt32(record.localOffset))
            data.append(contentsOf: name)
        }
        let directorySize = data.count - directoryStart
        data.appendLittleEndian(UInt32(0x0605_4b50), UInt16(0), UInt16(0), UInt16(all.count), UInt16(all.count))
        data.appendLittleEndian(UInt32(directorySize), UInt32(directoryStart), UInt16(0))
        return Data(data)
    }

    /// Appends a local header (padded so the data start 64-byte aligned) and the data.
    private static func appendLocal(name: String, bytes: [UInt8], to data: inout [UInt8], records: inout [Record]) {
        let nameBytes = Array(name.utf8)
        let offset = data.count
        let unpadded = offset + 30 + nameBytes.count + 4
        let padding = (64 - unpadded % 64) % 64
        let crc = crc32(bytes)
        data.appendLittleEndian(UInt32(0x0403_4b50), UInt16(20), UInt16(0), UInt16(0), UInt16(0), UInt16(0))
        data.appendLittleEndian(crc, UInt32(bytes.count), UInt32(bytes.count), UInt16(nameBytes.count), UInt16(4 + padding))
        data.append(contentsOf: nameBytes)
        data.appendLittleEndian(UInt16(0x4642), UInt16(padding))
        data.append(contentsOf: repeatElement(0, count: padding))
        data.append(contentsOf: bytes)
        records.append(Record(name: name, crc: crc, size: bytes.count, localOffset: offset))
    }

    /// The ZIP CRC-32 (reflected polynomial 0xEDB88320).
    private static func crc32(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = (crc >> 1) ^ (0xEDB8_8320 & (0 &- (crc & 1))) }
        }
        return ~crc
    }
}

extension [UInt8] {
    /// Appends each integer's little-endian bytes.
    mutating func appendLittleEndian<each T: FixedWidthInteger>(_ values: repeat each T) {
        repeat appendLittleEndian(one: each values)
    }

    /// Appends one integer's little-endian bytes.
    mutating func appendLittleEndian<T: FixedWidthInteger>(one value: T) {
        Swift.withUnsafeBytes(of: value.littleEndian) { append(contentsOf: $0) }
    }
}
