/// A table of experiment results for reports (Markdown) and CSV.
public struct ResultTable: Sendable, Codable, Hashable {
    /// A file-friendly identifier (`"merging"`), used for the CSV file name.
    public var identifier: String
    /// A heading (`"Fisher merging: accuracy on the union of tasks"`).
    public var title: String
    /// Column names.
    public var columns: [String]
    /// Rows of cells (already formatted).
    public var rows: [[String]]
    /// Sentences printed under the table (set-up, reading guide).
    public var notes: [String]

    public init(identifier: String, title: String, columns: [String], rows: [[String]], notes: [String] = []) {
        self.identifier = identifier
        self.title = title
        self.columns = columns
        self.rows = rows
        self.notes = notes
    }

    /// GitHub-flavoured Markdown.
    public func markdown() -> String {
        var widths = columns.map(\.count)
        for row in rows { for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.count) } }
        func line(_ cells: [String]) -> String {
            "| " + cells.enumerated().map { $0.element.padding(toLength: widths[min($0.offset, widths.count - 1)], withPad: " ", startingAt: 0) }.joined(separator: " | ") + " |"
        }
        var text = "### \(title)\n\n" + line(columns) + "\n|" + widths.map { String(repeating: "-", count: $0 + 2) }.joined(separator: "|") + "|\n"
        text += rows.map(line).joined(separator: "\n") + "\n"
        if !notes.isEmpty { text += "\n" + notes.joined(separator: "\n") + "\n" }
        return text
    }

    /// RFC 4180 CSV (fields with commas, quotes or newlines are quoted).
    public func csv() -> String {
        func field(_ s: String) -> String {
            s.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" }) ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s
        }
        return ([columns] + rows).map { $0.map(field).joined(separator: ",") }.joined(separator: "\n") + "\n"
    }
}

/// Mean and sample standard deviation of a list (std 0 for fewer than two values).
public struct Spread: Sendable, Codable, Hashable, CustomStringConvertible {
    public var mean: Double
    public var standardDeviation: Double
    public var values: [Double]

    public init(_ values: [Double]) {
        self.values = values
        mean = values.isEmpty ? .nan : values.reduce(0, +) / Double(values.count)
        let m = mean
        standardDeviation = values.count < 2 ? 0 : (values.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(values.count - 1)).squareRoot()
    }

    /// `mean ± std` in percent when the values are fractions.
    public var percent: String { values.count < 2 ? String(format: "%.2f", 100 * mean) : String(format: "%.2f ± %.2f", 100 * mean, 100 * standardDeviation) }
    public var description: String { String(format: "%.4g ± %.2g", mean, standardDeviation) }
}

/// The size of an experiment run: `quick` for tests and `--quick` (under a minute in total),
/// `full` for the report.
public enum ExperimentSize: String, Sendable, Codable, CaseIterable {
    case quick
    case full
}

extension String {
    func replacingOccurrences(of target: String, with replacement: String) -> String {
        var result = ""
        var rest = Substring(self)
        while let range = rest.range(of: target) {
            result += rest[..<range.lowerBound] + replacement
            rest = rest[range.upperBound...]
        }
        return result + rest
    }
}
