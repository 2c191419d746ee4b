import Foundation
import SquisherTensor

/// Loads numeric comma-separated files into a feature matrix and integer labels.
///
/// Format: one sample per line, fields separated by `,` (spaces or tabs around a field are
/// ignored), `\n` or `\r\n` line ends, an optional header line (skipped when `hasHeader`), and
/// blank lines allowed only at the end of the file. Every line must have the same number of
/// fields. Feature fields are decimal numbers (`3`, `-0.5`, `1e-3`), parsed with correct
/// rounding to float32 (`strtof`); NaN and infinities are rejected. The label field must be a
/// non-negative integer written with digits only.
///
/// Speed: the file is memory-mapped and scanned byte by byte; integer fields take a fast path
/// (exact for up to 7 digits) and other numbers go through `strtof`, so the 265 KB digits file
/// loads in a few milliseconds in release builds.
public enum CSVLoader {
    /// Which field holds the label.
    public enum LabelColumn: Sendable, Hashable {
        /// The last field of each line (the default; the digits file's layout).
        case last
        /// The first field.
        case first
        /// The field at a 0-based index.
        case index(Int)
        /// No label column: every field is a feature and ``Table/labels`` is empty.
        case none
    }

    /// A loaded table.
    public struct Table: Sendable {
        /// Features `[rows, columns]`, float32, in file order (the label column removed).
        public var features: Tensor
        /// One label per row (empty with ``LabelColumn/none``).
        public var labels: [Int]
        /// The header's field names without the label's (empty without a header line).
        public var featureNames: [String]
    }

    /// Loads the file at `url`.
    /// - Parameters:
    ///   - hasHeader: skip (and keep the names of) the first line.
    ///   - labelColumn: which field is the label.
    /// - Throws: ``DataFileError`` naming the file, the line and column and what was expected:
    ///   a non-numeric or non-finite feature, a wrong number of fields, a negative or non-integer
    ///   label, an empty file, a blank line between data lines.
    public static func load(_ url: URL, hasHeader: Bool = false, labelColumn: LabelColumn = .last) throws(DataFileError) -> Table {
        let data: Data
        do { data = try InputFile.read(url, mapped: true) } catch { throw DataFileError(error) }
        return try parse(data, path: url.path, hasHeader: hasHeader, labelColumn: labelColumn)
    }

    /// Parses CSV bytes already in memory; `path` is used in messages.
    public static func parse(_ data: Data, path: String, hasHeader: Bool = false, labelColumn: LabelColumn = .last) throws(DataFileError) -> Table {
        let result: Result<Table, DataFileError> = data.withUnsafeBytes { raw in
            do throws(DataFileError) {
                return .success(try parse(bytes: raw.bindMemory(to: UInt8.self), path: path, hasHeader: hasHeader, labelColumn: labelColumn))
            } catch { return .failure(error) }
        }
        return try result.get()
    }

    private static func isBlank(_ c: UInt8) -> Bool { c == 0x20 || c == 0x09 }

    private static func parse(
        bytes: UnsafeBufferPointer<UInt8>, path: String, hasHeader: Bool, labelColumn: LabelColumn
    ) throws(DataFileError) -> Table {
        let n = bytes.count
        var position = 0
        var lineNumber = 0
        var columnCount = -1
        var labelIndex = -1
        var scalars: [Float] = []
        var labels: [Int] = []
        var featureNames: [String] = []
        var blankLine = 0  // first blank line seen after data, to report if data follows
        var scratch = [CChar](repeating: 0, count: 64)

        func resolveLabelIndex(_ columns: Int, line: Int) throws(DataFileError) {
            switch labelColumn {
            case .last: labelIndex = columns - 1
            case .first: labelIndex = 0
            case .none: labelIndex = -1
            case .index(let i):
                guard i >= 0 && i < columns else {
                    throw DataFileError(path: path, line: line, problem: "label column index \(i) is outside the \(columns) fields of the line")
                }
                labelIndex = i
            }
            if labelIndex >= 0 && columns < 2 && labelColumn != .none {
                throw DataFileError(path: path, line: line, problem: "a line has \(columns) field; expected at least 2 (features and a label)")
            }
        }

        while position < n {
            lineNumber += 1
            var end = position
            while end < n && bytes[end] != 0x0A { end += 1 }
            var lineEnd = end
            if lineEnd > position && bytes[lineEnd - 1] == 0x0D { lineEnd -= 1 }
            let lineStart = position
            position = end + 1

            // Blank line: allowed only if nothing but blank lines follows.
            var k = lineStart
            while k < lineEnd && isBlank(bytes[k]) { k += 1 }
            if k == lineEnd {
                if blankLine == 0 { blankLine = lineNumber }
                continue
            }
            if blankLine != 0 {
                throw DataFileError(path: path, line: blankLine, problem: "blank line between data lines (expected a row of \(max(columnCount, 1)) fields)")
            }

            if hasHeader && lineNumber == 1 {
                let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[lineStart..<lineEnd]), as: UTF8.self)
                let fields = text.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
                columnCount = fields.count
                try resolveLabelIndex(columnCount, line: lineNumber)
                featureNames = fields.enumerated().filter { $0.offset != labelIndex }.map(\.element)
                continue
            }

            if columnCount < 0 {
                // First data line without a header: count its fields.
                var commas = 0
                for j in lineStart..<lineEnd where bytes[j] == 0x2C { commas += 1 }
                columnCount = commas + 1
                try resolveLabelIndex(columnCount, line: lineNumber)
            }
            // Scan the fields of this line.
            var column = 0
            var fieldStart = lineStart
            while true {
                var fieldEnd = fieldStart
                while fieldEnd < lineEnd && bytes[fieldEnd] != 0x2C { fieldEnd += 1 }
                column += 1
                var a = fieldStart
                var b = fieldEnd
                while a < b && isBlank(bytes[a]) { a += 1 }
                while b > a && isBlank(bytes[b - 1]) { b -= 1 }
                if column > columnCount {
                    throw DataFileError(path: path, line: lineNumber, column: column, problem: "line has more than the \(columnCount) fields of the first line")
                }
                if column - 1 == labelIndex {
                    guard a < b else {
                        throw DataFileError(path: path, line: lineNumber, column: column, problem: "empty label field; expected a non-negative integer label")
                    }
                    var value = 0
                    var ok = true
                    for i in a..<b {
                        let d = bytes[i] &- 0x30
                        guard d < 10 else { ok = false; break }
                        let (m, o1) = value.multipliedReportingOverflow(by: 10)
                        let (s, o2) = m.addingReportingOverflow(Int(d))
                        if o1 || o2 { ok = false; break }
                        value = s
                    }
                    guard ok else {
                        let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[a..<b]), as: UTF8.self)
                        throw DataFileError(path: path, line: lineNumber, column: column, problem: "label '\(text)' is not a non-negative integer")
                    }
                    labels.append(value)
                } else {
                    guard a < b else {
                        throw DataFileError(path: path, line: lineNumber, column: column, problem: "empty field; expected a number")
                    }
                    scalars.append(try parseNumber(bytes, a, b, scratch: &scratch, path: path, line: lineNumber, column: column))
                }
                if fieldEnd >= lineEnd { break }
                fieldStart = fieldEnd + 1
            }
            if column != columnCount {
                throw DataFileError(path: path, line: lineNumber, column: column, problem: "line has \(column) fields, expected \(columnCount) like the first line")
            }
        }
        let rows = labelColumn == .none ? (columnCount > 0 ? scalars.count / columnCount : 0) : labels.count
        guard rows > 0 else {
            throw DataFileError(path: path, problem: n == 0 ? "file is empty; expected CSV rows" : "file has no data rows")
        }
        let width = scalars.count / rows
        return Table(features: Tensor(uncheckedShape: [rows, width], scalars: scalars), labels: labels, featureNames: featureNames)
    }

    /// Parses one numeric field `bytes[a..<b]` to float32.
    @inline(__always)
    private static func parseNumber(
        _ bytes: UnsafeBufferPointer<UInt8>, _ a: Int, _ b: Int, scratch: inout [CChar], path: String, line: Int, column: Int
    ) throws(DataFileError) -> Float {
        // Fast path: optional '-' then up to 7 digits (exact in float32).
        var i = a
        let negative = bytes[i] == 0x2D
        if negative || bytes[i] == 0x2B { i += 1 }
        if i < b && b - i <= 7 {
            var value = 0
            var allDigits = true
            for j in i..<b {
                let d = bytes[j] &- 0x30
                if d >= 10 { allDigits = false; break }
                value = value * 10 + Int(d)
            }
            if allDigits { return negative ? -Float(value) : Float(value) }
        }
        // General path: strtof on a NUL-terminated copy, which must consume the whole field.
        let length = b - a
        if scratch.count < length + 1 { scratch = [CChar](repeating: 0, count: length + 1) }
        let parsed: (Float, Int) = scratch.withUnsafeMutableBufferPointer { buffer in
            for j in 0..<length { buffer[j] = CChar(bitPattern: bytes[a + j]) }
            buffer[length] = 0
            var endPointer: UnsafeMutablePointer<CChar>? = nil
            let value = strtof(buffer.baseAddress!, &endPointer)
            return (value, endPointer.map { $0 - buffer.baseAddress! } ?? 0)
        }
        let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[a..<b]), as: UTF8.self)
        guard parsed.1 == length else {
            throw DataFileError(path: path, line: line, column: column, problem: "expected a number, found '\(text)'")
        }
        guard parsed.0.isFinite else {
            throw DataFileError(path: path, line: line, column: column, problem: "'\(text)' is not a finite float32 number")
        }
        return parsed.0
    }
}
