import Foundation
import Testing
import SquisherIO

/// Small IDX files written by hand (big-endian header bytes spelled out) in a temporary folder.
@Suite("IDX (MNIST) loader")
struct IDXLoaderTests {
    /// Images: magic 00 00 08 03, n = 2, rows = 2, cols = 3, then 12 pixel bytes.
    static let imageBytes: [UInt8] = [0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 3]
        + [0, 255, 51, 102, 1, 254, 10, 20, 30, 40, 50, 60]
    /// Labels: magic 00 00 08 01, n = 2, then labels 7 and 3.
    static let labelBytes: [UInt8] = [0, 0, 8, 1, 0, 0, 0, 2, 7, 3]

    @Test func readsImagesAndLabels() throws {
        let folder = try TemporaryFolder()
        let images = try folder.write(Self.imageBytes, to: "images-idx3-ubyte")
        let labels = try folder.write(Self.labelBytes, to: "labels-idx1-ubyte")
        let loaded = try IDXLoader.load(images: images, labels: labels)
        #expect(loaded.images.shape == [2, 1, 2, 3])
        #expect(loaded.labels == [7, 3])
        // Pixels / 255, computed here in float32 the same way as the reference (torchvision ToTensor).
        #expect(loaded.images.scalars == Self.imageBytes.suffix(12).map { Float($0) / 255 })
        #expect(loaded.images.scalars[1] == 1 && loaded.images.scalars[0] == 0)
        let flat = try IDXLoader.images(images, layout: .flat)
        #expect(flat.shape == [2, 6])
        #expect(flat.scalars == loaded.images.scalars)
        #expect(IDXLoader.encode(type: .uint8, shape: [2, 2, 3], elementBytes: Array(Self.imageBytes.suffix(12))) == Data(Self.imageBytes))
    }

    @Test func otherElementTypes() throws {
        // Int16 [2] = -2, 300 and float64 [1] = 0.5, big-endian.
        let folder = try TemporaryFolder()
        let shorts = try IDXFile(contentsOf: folder.write([0, 0, 0x0B, 1, 0, 0, 0, 2, 0xFF, 0xFE, 0x01, 0x2C], to: "s"))
        #expect(shorts.elementType == .int16)
        #expect(shorts.doubles() == [-2, 300])
        let doubles = try IDXFile(contentsOf: folder.write([0, 0, 0x0E, 1, 0, 0, 0, 1, 0x3F, 0xE0, 0, 0, 0, 0, 0, 0], to: "d"))
        #expect(doubles.doubles() == [0.5])
        let floats = try IDXFile(contentsOf: folder.write([0, 0, 0x0D, 0, 0xC0, 0x40, 0, 0], to: "f"))
        #expect(floats.shape == [])
        #expect(floats.doubles() == [-3])
    }

    @Test func wrongMagicNamesBothInHex() throws {
        let folder = try TemporaryFolder()
        let labels = try folder.write(Self.labelBytes, to: "labels")
        // A label file where an image file is expected.
        let error = #expect(throws: DataFileError.self) { _ = try IDXLoader.images(labels) }
        #expect(error?.path == labels.path)
        #expect(error?.problem.contains("wrong magic number 0x00000801") == true)
        #expect(error?.problem.contains("expected 0x00000803") == true)
        // Not an IDX file at all (e.g. still gzip-compressed: 1f 8b 08 00).
        let gzip = try folder.write([0x1F, 0x8B, 0x08, 0x00, 0, 0, 0, 0], to: "gz")
        let notIDX = #expect(throws: DataFileError.self) { _ = try IDXLoader.labels(gzip) }
        #expect(notIDX?.problem.contains("magic number 0x1F8B0800 is not an IDX magic") == true)
        let badType = try folder.write([0, 0, 0x07, 1, 0, 0, 0, 0], to: "t")
        let unknown = #expect(throws: DataFileError.self) { _ = try IDXFile(contentsOf: badType) }
        #expect(unknown?.problem.contains("0x00000701") == true)
    }

    @Test func truncatedAndTrailingData() throws {
        let folder = try TemporaryFolder()
        let short = try folder.write(Array(Self.imageBytes.dropLast(1)), to: "short")
        let truncated = #expect(throws: DataFileError.self) { _ = try IDXLoader.images(short) }
        #expect(truncated?.path == short.path)
        #expect(truncated?.problem.contains("data truncated: dims [2, 2, 3]") == true)
        #expect(truncated?.problem.contains("need 28 bytes, the file has 27") == true)
        let header = try folder.write([0, 0, 8, 3, 0, 0, 0, 2], to: "header")
        let cut = #expect(throws: DataFileError.self) { _ = try IDXLoader.images(header) }
        #expect(cut?.problem.contains("shorter than the 16-byte header") == true)
        let long = try folder.write(Self.labelBytes + [9], to: "long")
        let trailing = #expect(throws: DataFileError.self) { _ = try IDXLoader.labels(long) }
        #expect(trailing?.problem.contains("1 trailing bytes") == true)
        let tiny = try folder.write([0, 0], to: "tiny")
        #expect(throws: DataFileError.self) { _ = try IDXLoader.labels(tiny) }
    }

    @Test func countMismatchBetweenImagesAndLabels() throws {
        let folder = try TemporaryFolder()
        let images = try folder.write(Self.imageBytes, to: "images")
        let labels = try folder.write([0, 0, 8, 1, 0, 0, 0, 3, 1, 2, 3], to: "labels")
        let error = #expect(throws: DataFileError.self) { _ = try IDXLoader.load(images: images, labels: labels) }
        #expect(error?.path == images.path)
        #expect(error?.problem.contains("holds 2 images but the label file \(labels.path) holds 3 labels") == true)
    }
}
