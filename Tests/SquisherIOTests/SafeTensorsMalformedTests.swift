import Foundation
import Testing
import SquisherIO

/// Every class of malformed safetensors file is rejected with an error naming the file and the
/// problem. The bytes are built by hand in each test (not with the library's writer).
@Suite("SafeTensors malformed files")
struct SafeTensorsMalformedTests {
    /// A valid two-tensor header for reference: "a" F32 [2] then "b" F32 [1] (12 data bytes).
    static let validHeader = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#

    /// Opens `bytes` written to a temporary file and returns the error, checking that it names
    /// the file and that the problem contains every phrase.
    func rejection(_ bytes: [UInt8], _ phrases: [String], sourceLocation: SourceLocation = #_sourceLocation) throws {
        let folder = try TemporaryFolder()
        let url = try folder.write(bytes, to: "bad.safetensors")
        let error = #expect(throws: SafeTensorsError.self, sourceLocation: sourceLocation) {
            _ = try SafeTensorsFile(contentsOf: url)
        }
        #expect(error?.path == url.path, sourceLocation: sourceLocation)
        for phrase in phrases {
            #expect(error?.problem.contains(phrase) == true, "problem '\(error?.problem ?? "")' lacks '\(phrase)'", sourceLocation: sourceLocation)
        }
        #expect(error?.description.hasPrefix(url.path) == true, sourceLocation: sourceLocation)
    }

    @Test func validReferenceFileOpens() throws {
        // The control case: the same construction without a defect must open, so the rejection
        // tests below fail for the defect they introduce and nothing else.
        let folder = try TemporaryFolder()
        let url = try folder.write(safetensorsBytes(header: Self.validHeader, data: float32Bytes([1, 2, 3])), to: "ok.safetensors")
        let file = try SafeTensorsFile(contentsOf: url)
        #expect(file.names == ["a", "b"])
        #expect(try file.tensor("a").scalars == [1, 2])
        #expect(try file.tensor("b").scalars == [3])
    }

    @Test func fileShorterThanLengthField() throws {
        try rejection([1, 2, 3], ["shorter than the 8-byte header length"])
    }

    @Test func headerLengthBeyondFile() throws {
        try rejection(safetensorsBytes(header: Self.validHeader, data: float32Bytes([1, 2, 3]), lengthOverride: 10_000),
                      ["header length 10000 exceeds"])
    }

    @Test func headerLengthHuge() throws {
        try rejection(safetensorsBytes(header: "{}", data: [], lengthOverride: UInt64.max), ["header length", "exceeds"])
    }

    @Test func headerNotStartingWithBrace() throws {
        try rejection(safetensorsBytes(header: " " + Self.validHeader, data: float32Bytes([1, 2, 3])), ["does not start with '{'"])
        try rejection(safetensorsBytes(header: "[1, 2]", data: []), ["does not start with '{'"])
    }

    @Test func headerNotJSON() throws {
        try rejection(safetensorsBytes(header: #"{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]"#, data: float32Bytes([1, 2])),
                      ["not valid JSON", "byte"])
        try rejection(safetensorsBytes(header: "{not json}", data: []), ["not valid JSON"])
    }

    @Test func entryNotAnObject() throws {
        try rejection(safetensorsBytes(header: #"{"a": [0, 8]}"#, data: float32Bytes([1, 2])), ["tensor 'a'", "expected an object"])
    }

    @Test func unknownDType() throws {
        try rejection(safetensorsBytes(header: #"{"a":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}}"#, data: float32Bytes([1, 2])),
                      ["tensor 'a'", "unknown or unsupported dtype 'Q4'"])
        try rejection(safetensorsBytes(header: #"{"a":{"shape":[2],"data_offsets":[0,8]}}"#, data: float32Bytes([1, 2])),
                      ["tensor 'a' has no dtype"])
    }

    @Test(arguments: [#"[-1]"#, #"[1.5]"#, #""2""#, #"[true]"#, #"[2, null]"#, #"{"n":2}"#])
    func shapeNotListOfNonNegativeIntegers(shape: String) throws {
        try rejection(safetensorsBytes(header: #"{"a":{"dtype":"F32","shape":\#(shape),"data_offsets":[0,8]}}"#, data: float32Bytes([1, 2])),
                      ["tensor 'a'", "non-negative integers"])
    }

    @Test(arguments: [#"[0]"#, #"[0, 8, 9]"#, #"[-4, 8]"#, #""0-8""#, #"[0.0, 8]"#])
    func offsetsMalformed(offsets: String) throws {
        try rejection(safetensorsBytes(header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":\#(offsets)}}"#, data: float32Bytes([1, 2])),
                      ["tensor 'a'", "data_offsets"])
    }

    @Test func offsetsEndBeforeBegin() throws {
        try rejection(safetensorsBytes(header: #"{"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}"#, data: float32Bytes([1, 2])),
                      ["tensor 'a'", "end before they begin"])
    }

    @Test func offsetsOutOfBounds() throws {
        // "a" claims bytes [0, 16) but the file holds only 8 data bytes: a truncated file.
        try rejection(safetensorsBytes(header: #"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#, data: float32Bytes([1, 2])),
                      ["tensor 'a'", "reach past the 8 data bytes"])
    }

    @Test func overlappingTensors() throws {
        let header = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#
        try rejection(safetensorsBytes(header: header, data: float32Bytes([1, 2, 3])), ["tensor 'b' overlaps tensor 'a'"])
    }

    @Test func sameRangeTwice() throws {
        // Two names aliasing one byte range (the classic aliasing trick) is an overlap.
        let header = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#
        try rejection(safetensorsBytes(header: header, data: float32Bytes([1, 2])), ["overlaps"])
    }

    @Test func gapBetweenTensors() throws {
        let header = #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#
        try rejection(safetensorsBytes(header: header, data: float32Bytes([1, 2, 3])), ["gap of 4 bytes before tensor 'b'"])
    }

    @Test func gapAtStart() throws {
        try rejection(safetensorsBytes(header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, data: float32Bytes([1, 2])),
                      ["gap of 4 bytes before tensor 'a'"])
    }

    @Test func trailingBytesAfterTensors() throws {
        try rejection(safetensorsBytes(header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, data: float32Bytes([1, 2])),
                      ["8 bytes but the tensors cover only 4"])
    }

    @Test func sizeDoesNotMatchDTypeTimesShape() throws {
        // F64 [2] needs 16 bytes, the offsets span 8.
        try rejection(safetensorsBytes(header: #"{"a":{"dtype":"F64","shape":[2],"data_offsets":[0,8]}}"#, data: float32Bytes([1, 2])),
                      ["tensor 'a'", "span 8 bytes", "needs 16"])
    }

    @Test func shapeProductOverflows() throws {
        let header = #"{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}}"#
        try rejection(safetensorsBytes(header: header, data: float32Bytes([1, 2])), ["tensor 'a'", "more than Int.max"])
    }

    @Test func duplicateKeys() throws {
        let header = #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#
        try rejection(safetensorsBytes(header: header, data: float32Bytes([1, 2])), ["duplicate key \"a\""])
    }

    @Test func metadataNotStrings() throws {
        let header = #"{"__metadata__":{"step":3},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#
        try rejection(safetensorsBytes(header: header, data: float32Bytes([1])), ["__metadata__ value for 'step'", "expected a string"])
        try rejection(safetensorsBytes(header: #"{"__metadata__":"x"}"#, data: []), ["__metadata__ is a string"])
    }

    @Test func trailingSpacesAndEmptyTensorsAreValid() throws {
        // Padding spaces after the JSON are allowed (the reference pads to 8 bytes); a tensor with a
        // zero dimension occupies zero bytes and may share its offset with the next tensor.
        let header = #"{"__metadata__":{"format":"pt"},"e":{"dtype":"F32","shape":[0,3],"data_offsets":[0,0]},"a":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}"# + "    "
        let folder = try TemporaryFolder()
        let url = try folder.write(safetensorsBytes(header: header, data: float32Bytes([7])), to: "ok.safetensors")
        let file = try SafeTensorsFile(contentsOf: url)
        #expect(file.metadata == ["format": "pt"])
        #expect(try file.tensor("e").shape == [0, 3])
        #expect(try file.tensor("a").shape == [])
        #expect(try file.tensor("a").scalars == [7])
    }

    @Test func missingTensorAndWrongKindNameTheFile() throws {
        let folder = try TemporaryFolder()
        let url = try folder.write(safetensorsBytes(header: Self.validHeader, data: float32Bytes([1, 2, 3])), to: "ok.safetensors")
        let file = try SafeTensorsFile(contentsOf: url)
        let missing = #expect(throws: SafeTensorsError.self) { _ = try file.tensor("nope") }
        #expect(missing?.path == url.path)
        #expect(missing?.problem.contains("no tensor named 'nope'") == true)
        let kind = #expect(throws: SafeTensorsError.self) { _ = try file.integers("a") }
        #expect(kind?.problem.contains("tensor 'a' is F32, expected an integer dtype") == true)
    }

    @Test func unreadableFileNamesThePath() throws {
        let folder = try TemporaryFolder()
        let url = folder.file("absent.safetensors")
        let error = #expect(throws: SafeTensorsError.self) { _ = try SafeTensorsFile(contentsOf: url) }
        #expect(error?.path == url.path)
        #expect(error?.problem.contains("no such file") == true)
        #expect(error?.firstCause(ofType: FileAccessError.self)?.reason == .missing)
    }
}
