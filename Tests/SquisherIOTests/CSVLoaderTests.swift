import Foundation
import Testing
import SquisherIO

@Suite("CSV loader")
struct CSVLoaderTests {
    func load(_ text: String, hasHeader: Bool = false, labelColumn: CSVLoader.LabelColumn = .last) throws -> CSVLoader.Table {
        let folder = try TemporaryFolder()
        return try CSVLoader.load(folder.write(Array(text.utf8), to: "t.csv"), hasHeader: hasHeader, labelColumn: labelColumn)
    }

    /// Loads `text`, expects a ``DataFileError`` naming the file, `line` and `column`, with every
    /// phrase in its problem.
    func rejection(_ text: String, line: Int?, column: Int?, _ phrases: [String], hasHeader: Bool = false,
                   labelColumn: CSVLoader.LabelColumn = .last, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let folder = try TemporaryFolder()
        let url = try folder.write(Array(text.utf8), to: "bad.csv")
        let error = #expect(throws: DataFileError.self, sourceLocation: sourceLocation) {
            _ = try CSVLoader.load(url, hasHeader: hasHeader, labelColumn: labelColumn)
        }
        #expect(error?.path == url.path, sourceLocation: sourceLocation)
        #expect(error?.line == line, sourceLocation: sourceLocation)
        #expect(error?.column == column, sourceLocation: sourceLocation)
        for phrase in phrases {
            #expect(error?.problem.contains(phrase) == true, "'\(error?.problem ?? "")' lacks '\(phrase)'", sourceLocation: sourceLocation)
        }
    }

    @Test func digitsFile() throws {
        let table = try CSVLoader.load(resource("digits", "csv"))
        #expect(table.features.shape == [1797, 64])
        #expect(table.labels.count == 1797)
        // Class counts: balanced, 174-183 per digit (data/README.md).
        var counts = [Int](repeating: 0, count: 10)
        for label in table.labels { counts[label] += 1 }
        #expect(counts.allSatisfy { (174...183).contains($0) }, "\(counts)")
        #expect(counts.reduce(0, +) == 1797)
        // The first line of digits.csv, copied literally: 64 pixels then label 0.
        let firstLine: [Float] = [0, 0, 5, 13, 9, 1, 0, 0, 0, 0, 13, 15, 10, 15, 5, 0, 0, 3, 15, 2, 0, 11, 8, 0, 0, 4, 12, 0, 0, 8, 8, 0,
                                  0, 5, 8, 0, 0, 9, 8, 0, 0, 4, 11, 0, 1, 12, 7, 0, 0, 2, 14, 5, 10, 12, 0, 0, 0, 0, 6, 13, 10, 0, 0, 0]
        #expect(Array(table.features.scalars.prefix(64)) == firstLine)
        #expect(table.labels.prefix(3) == [0, 1, 2])
    }

    @Test func decimalsHeaderLabelColumnAndLineEnds() throws {
        // Values chosen to need the strtof path; the references are Swift's Float("..."), itself
        // correctly rounded, so the comparison is exact.
        let table = try load("a, b ,label,c\r\n1.5,-2e-3,3,0.1\r\n-0.25, 1e3 ,0,+7\r\n\r\n", hasHeader: true, labelColumn: .index(2))
        #expect(table.featureNames == ["a", "b", "c"])
        #expect(table.features.shape == [2, 3])
        #expect(table.features.scalars == [1.5, Float("-2e-3")!, Float("0.1")!, -0.25, 1000, 7])
        #expect(table.labels == [3, 0])
        let first = try load("4,1,2\n5,3,4", labelColumn: .first)
        #expect(first.labels == [4, 5])
        #expect(first.features.scalars == [1, 2, 3, 4])
        let none = try load("1,2\n3,4\n", labelColumn: CSVLoader.LabelColumn.none)
        #expect(none.labels.isEmpty)
        #expect(none.features.shape == [2, 2])
    }

    @Test func nonNumericField() throws {
        try rejection("1,2,0\n3,abc,1\n", line: 2, column: 2, ["expected a number, found 'abc'"])
        try rejection("1,2,0\n3,1.5x,1\n", line: 2, column: 2, ["expected a number, found '1.5x'"])
        try rejection("1,,0\n", line: 1, column: 2, ["empty field; expected a number"])
    }

    @Test func nonFiniteNumbers() throws {
        try rejection("1,nan,0\n", line: 1, column: 2, ["not a finite"])
        try rejection("1,1e60,0\n", line: 1, column: 2, ["not a finite"])
    }

    @Test func wrongColumnCount() throws {
        try rejection("1,2,0\n3,1\n", line: 2, column: 2, ["line has 2 fields, expected 3"])
        try rejection("1,2,0\n3,1,4,5\n", line: 2, column: 4, ["more than the 3 fields"])
    }

    @Test func badLabels() throws {
        try rejection("1,2,0\n3,4,1.5\n", line: 2, column: 3, ["label '1.5' is not a non-negative integer"])
        try rejection("1,2,-1\n", line: 1, column: 3, ["label '-1' is not a non-negative integer"])
        try rejection("1,2,\n", line: 1, column: 3, ["empty label field"])
        try rejection("1,2,99999999999999999999999\n", line: 1, column: 3, ["not a non-negative integer"])
    }

    @Test func emptyAndBlankLines() throws {
        try rejection("", line: nil, column: nil, ["file is empty"])
        try rejection("\n\n", line: nil, column: nil, ["no data rows"])
        try rejection("a,b\n", line: nil, column: nil, ["no data rows"], hasHeader: true)
        try rejection("1,0\n\n2,1\n", line: 2, column: nil, ["blank line between data lines"])
        try rejection("1,0\n", line: 1, column: nil, ["label column index 5"], labelColumn: .index(5))
        try rejection("1\n2\n", line: 1, column: nil, ["expected at least 2"])
    }

    @Test func missingFile() throws {
        let folder = try TemporaryFolder()
        let url = folder.file("none.csv")
        let error = #expect(throws: DataFileError.self) { _ = try CSVLoader.load(url) }
        #expect(error?.path == url.path)
        #expect(error?.description.hasPrefix(url.path) == true)
    }
}
