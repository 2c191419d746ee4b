import Foundation
import SquisherIO

/// A read-only view of a ZIP archive whose entries are **stored** (method 0, uncompressed), as written
/// by PyTorch's `torch.save` (the default zip container).
///
/// Opening reads the End Of Central Directory record (and the ZIP64 EOCD record through its locator,
/// when present), then the central directory. Each entry's data offset is computed from its *local*
/// header (`30 + name length + local extra length`), because `torch.save` pads local headers (extra
/// field `0x4642`) so that data starts 64-byte aligned, while the central directory carries no padding.
/// Sizes and offsets come from the central directory (torch sets bit 3 of the flags, so local headers
/// hold zero sizes). Everything is bounds-checked: entries inside the file and before the central
/// directory, no two entries overlapping, counts consistent with the directory size, names valid
/// UTF-8 and unique, no compression, no encryption, single disk.
///
/// Files are memory-mapped (``MappedFile``), so reading an entry copies nothing until the caller
/// converts its bytes, and pages already consumed can be released.
public struct ZipArchive: Sendable {
    /// One file in the archive.
    public struct Entry: Sendable, Hashable {
        /// The entry's name (a path inside the archive, `/`-separated).
        public var name: String
        /// Offset of the entry's local file header in the archive, in bytes.
        public var localHeaderOffset: Int
        /// The byte range of the entry's (stored, uncompressed) data in the archive.
        public var dataRange: Range<Int>
        /// The entry's size in bytes.
        public var size: Int { dataRange.count }
    }

    /// The file path (for messages).
    public let path: String
    /// Entries in central-directory order.
    public let entries: [Entry]
    private let data: Data
    private let indexByName: [String: Int]
    /// The mapping the bytes live in, when the archive was opened from a file (or is a range of one).
    let file: MappedFile?

    /// Opens and validates the archive at `url` (memory-mapped).
    /// - Throws: ``CheckpointError`` naming the file and the violated rule.
    public init(contentsOf url: URL) throws(CheckpointError) {
        let file = try MappedFile(url)
        try self.init(data: file.data, path: url.path, file: file)
    }

    /// Parses an archive already in memory; `path` is used in messages.
    /// - Throws: ``CheckpointError`` naming the file and the violated rule.
    public init(data: Data, path: String) throws(CheckpointError) {
        try self.init(data: data, path: path, file: nil)
    }

    /// Parses `data`, which lies inside `file`'s mapping when `file` is given.
    init(data: Data, path: String, file: MappedFile?) throws(CheckpointError) {
        // Work with zero-based offsets whatever the Data's indices are.
        let bytes = data.startIndex == 0 ? data : Data(data)
        let reader = _ByteReader(bytes)
        func fail(_ problem: String) -> CheckpointError { CheckpointError(path: path, problem: problem) }
        let fileSize = bytes.count

        // 1. The classic EOCD: 22 bytes + a comment of up to 65535 bytes at the very end.
        guard fileSize >= 22 else {
            throw fail("file is \(fileSize) bytes, too short for a ZIP end of central directory record (22 bytes); not a torch.save zip file or truncated")
        }
        var eocdOffset: Int? = nil
        let earliest = max(0, fileSize - 22 - 0xFFFF)
        var candidate = fileSize - 22
        while candidate >= earliest {
            if reader.u32(candidate) == 0x0605_4B50, let commentLength = reader.u16(candidate + 20),
               candidate + 22 + Int(commentLength) == fileSize {
                eocdOffset = candidate
                break
            }
            candidate -= 1
        }
        guard let eocd = eocdOffset else {
            throw fail("no ZIP end of central directory record found (not a zip archive, or truncated); torch.save's legacy non-zip format is not supported")
        }
        let disk = Int(reader.u16(eocd + 4)!), cdDisk = Int(reader.u16(eocd + 6)!)
        var entryCount = Int(reader.u16(eocd + 10)!)
        var cdSize = Int(reader.u32(eocd + 12)!)
        var cdOffset = Int(reader.u32(eocd + 16)!)
        guard disk == 0, cdDisk == 0 || cdDisk == 0xFFFF else {
            throw fail("multi-disk (spanned) archives are not supported (disk \(disk), central directory on disk \(cdDisk))")
        }

        // 2. ZIP64: a locator right before the EOCD points to the ZIP64 EOCD record.
        if eocd >= 20, reader.u32(eocd - 20) == 0x0706_4B50 {
            let locator = eocd - 20
            guard let record64 = reader.u64(locator + 8), record64 <= UInt64(locator) else {
                throw fail("ZIP64 end of central directory locator points past the locator (offset \(reader.u64(locator + 8).map(String.init) ?? "?"))")
            }
            let r = Int(record64)
            guard reader.u32(r) == 0x0606_4B50, let count64 = reader.u64(r + 32), let size64 = reader.u64(r + 40),
                  let offset64 = reader.u64(r + 48), r + 56 <= locator
            else { throw fail("ZIP64 end of central directory record at offset \(r) is missing or truncated") }
            guard count64 <= UInt64(fileSize), size64 <= UInt64(fileSize), offset64 <= UInt64(fileSize) else {
                throw fail("ZIP64 end of central directory has values beyond the \(fileSize)-byte file (entries \(count64), directory size \(size64), offset \(offset64))")
            }
            entryCount = Int(count64)
            cdSize = Int(size64)
            cdOffset = Int(offset64)
            guard cdOffset + cdSize <= r else {
                throw fail("central directory [\(cdOffset), \(cdOffset + cdSize)) overlaps the ZIP64 end of central directory record at \(r)")
            }
        } else {
            guard cdOffset + cdSize <= eocd else {
                throw fail("central directory [\(cdOffset), \(cdOffset + cdSize)) reaches past the end of central directory record at \(eocd) (truncated file?)")
            }
        }
        // Every central directory record is at least 46 bytes.
        guard entryCount <= cdSize / 46 else {
            throw fail("end of central directory claims \(entryCount) entries, more than fit in its \(cdSize)-byte central directory")
        }

        // 3. The central directory.
        var entries: [Entry] = []
        entries.reserveCapacity(entryCount)
        var indexByName: [String: Int] = [:]
        var cursor = cdOffset
        let cdEnd = cdOffset + cdSize
        for number in 0..<entryCount {
            guard cursor + 46 <= cdEnd, reader.u32(cursor) == 0x0201_4B50 else {
                throw fail("central directory record #\(number) at offset \(cursor) is missing or truncated (bad signature or past the directory)")
            }
            let flags = reader.u16(cursor + 8)!
            let method = reader.u16(cursor + 10)!
            var compressedSize = UInt64(reader.u32(cursor + 20)!)
            var uncompressedSize = UInt64(reader.u32(cursor + 24)!)
            let nameLength = Int(reader.u16(cursor + 28)!)
            let extraLength = Int(reader.u16(cursor + 30)!)
            let commentLength = Int(reader.u16(cursor + 32)!)
            let startDisk = reader.u16(cursor + 34)!
            var localOffset = UInt64(reader.u32(cursor + 42)!)
            let recordEnd = cursor + 46 + nameLength + extraLength + commentLength
            guard recordEnd <= cdEnd else {
                throw fail("central directory record #\(number) (name, extra and comment: \(nameLength + extraLength + commentLength) bytes) runs past the central directory")
            }
            guard let name = String(validating: bytes[(cursor + 46)..<(cursor + 46 + nameLength)], as: UTF8.self) else {
                throw fail("entry #\(number) has a name that is not valid UTF-8")
            }
            // ZIP64 extended information (header ID 0x0001) replaces fields that are 0xFFFFFFFF.
            var extra = cursor + 46 + nameLength
            let extraEnd = extra + extraLength
            while extra + 4 <= extraEnd {
                let id = reader.u16(extra)!, length = Int(reader.u16(extra + 2)!)
                guard extra + 4 + length <= extraEnd else {
                    throw fail("entry '\(name)' has an extra field (ID 0x\(String(id, radix: 16))) running past its extra data")
                }
                if id == 0x0001 {
                    var field = extra + 4
                    func next() throws(CheckpointError) -> UInt64 {
                        guard field + 8 <= extra + 4 + length, let value = reader.u64(field) else {
                            throw fail("entry '\(name)' has a truncated ZIP64 extra field")
                        }
                        field += 8
                        return value
                    }
                    if uncompressedSize == 0xFFFF_FFFF { uncompressedSize = try next() }
                    if compressedSize == 0xFFFF_FFFF { compressedSize = try next() }
                    if localOffset == 0xFFFF_FFFF { localOffset = try next() }
                }
                extra += 4 + length
            }
            guard flags & 0x1 == 0 else { throw fail("entry '\(name)' is encrypted; encryption is not supported") }
            guard method == 0 else {
                throw fail("entry '\(name)' uses compression method \(method)\(method == 8 ? " (deflate)" : ""); only stored (method 0) entries are supported, as written by torch.save")
            }
            guard startDisk == 0 || startDisk == 0xFFFF else {
                throw fail("entry '\(name)' starts on disk \(startDisk); multi-disk archives are not supported")
            }
            guard compressedSize == uncompressedSize else {
                throw fail("stored entry '\(name)' has compressed size \(compressedSize) different from its size \(uncompressedSize)")
            }
            guard localOffset < UInt64(cdOffset), compressedSize <= UInt64(cdOffset) else {
                throw fail("entry '\(name)' local header offset \(localOffset) or size \(compressedSize) is out of bounds (central directory starts at \(cdOffset))")
            }
            // 4. The local header decides where the data begins.
            let local = Int(localOffset)
            guard local + 30 <= cdOffset, reader.u32(local) == 0x0403_4B50 else {
                throw fail("entry '\(name)' has no local file header at offset \(local) (bad signature or out of bounds)")
            }
            let localNameLength = Int(reader.u16(local + 26)!)
            let localExtraLength = Int(reader.u16(local + 28)!)
            let dataStart = local + 30 + localNameLength + localExtraLength
            let dataEnd = dataStart + Int(compressedSize)
            guard dataEnd <= cdOffset else {
                throw fail("entry '\(name)' data [\(dataStart), \(dataEnd)) is out of bounds (past the central directory at \(cdOffset); truncated file?)")
            }
            guard localNameLength == nameLength, bytes[(local + 30)..<(local + 30 + nameLength)] == bytes[(cursor + 46)..<(cursor + 46 + nameLength)] else {
                throw fail("entry '\(name)': the local header names a different file than the central directory")
            }
            guard indexByName[name] == nil else { throw fail("entry name '\(name)' appears twice") }
            indexByName[name] = entries.count
            entries.append(Entry(name: name, localHeaderOffset: local, dataRange: dataStart..<dataEnd))
            cursor = recordEnd
        }

        // 5. No two entries (local header through data) may overlap.
        let sorted = entries.sorted { $0.localHeaderOffset < $1.localHeaderOffset }
        for (a, b) in zip(sorted, sorted.dropFirst()) where a.dataRange.upperBound > b.localHeaderOffset {
            throw fail("entries '\(a.name)' (data ends at \(a.dataRange.upperBound)) and '\(b.name)' (header at \(b.localHeaderOffset)) overlap")
        }
        self.path = path
        self.entries = entries
        self.data = bytes
        self.indexByName = indexByName
        self.file = data.startIndex == 0 ? file : nil  // a rebased copy is not in the mapping
    }

    /// The entry named `name`, or `nil`.
    public func entry(named name: String) -> Entry? { indexByName[name].map { entries[$0] } }

    /// The bytes of entry `name`, copied into a zero-based `Data`.
    /// - Throws: ``CheckpointError`` when there is no such entry.
    public func contents(of name: String) throws(CheckpointError) -> Data {
        guard let entry = entry(named: name) else {
            throw CheckpointError(path: path, problem: "archive has no entry '\(name)'")
        }
        return data.subdata(in: entry.dataRange)
    }

    /// The bytes of `entry` as a slice of the (mapped) archive: no copy; indices are archive offsets.
    func slice(of entry: Entry) -> Data { data[entry.dataRange] }

    /// Calls `body` with the raw bytes of `entry` (no copy).
    public func withBytes<R>(of entry: Entry, _ body: (UnsafeRawBufferPointer) throws(CheckpointError) -> R) throws(CheckpointError) -> R {
        let result: Result<R, CheckpointError> = data.withUnsafeBytes { raw in
            let slice = UnsafeRawBufferPointer(rebasing: raw[entry.dataRange])
            do throws(CheckpointError) { return .success(try body(slice)) } catch { return .failure(error) }
        }
        return try result.get()
    }
}

/// Bounds-checked little-endian reads at absolute offsets of zero-based `Data`; `nil` when out of bounds.
struct _ByteReader {
    let data: Data
    init(_ data: Data) { self.data = data }

    func u16(_ offset: Int) -> UInt16? {
        guard offset >= 0, offset + 2 <= data.count else { return nil }
        return UInt16(data[offset]) | UInt16(data[offset + 1]) << 8
    }

    func u32(_ offset: Int) -> UInt32? {
        guard offset >= 0, offset + 4 <= data.count else { return nil }
        var value: UInt32 = 0
        for i in 0..<4 { value |= UInt32(data[offset + i]) << (8 * UInt32(i)) }
        return value
    }

    func u64(_ offset: Int) -> UInt64? {
        guard offset >= 0, offset + 8 <= data.count else { return nil }
        var value: UInt64 = 0
        for i in 0..<8 { value |= UInt64(data[offset + i]) << (8 * UInt64(i)) }
        return value
    }
}
