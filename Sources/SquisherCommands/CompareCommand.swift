import Foundation
import Squisher

/// `squisher compare A B`: agreement metrics between two importance files, per tensor.
enum CompareCommand: Subcommand {
    static let name = "compare"
    static let summary = "Agreement (Pearson, Spearman, cosine, scaled error, top-k overlap) of two importance files."
    static let positionalUsage = "A.safetensors B.safetensors"
    static let discussion = "Compares two importance files (as written by 'squisher estimate' or 'train --save-squisher') over the tensors they share, overall and per tensor."
    static let options: [ParsedArguments.Option] = [
        .init("top-k", value: "fraction", help: "k of the top-k overlap as a fraction of entries (default 0.01)."),
        .init("json", help: "Print the result as JSON."),
    ]

    static func run(_ arguments: ParsedArguments, output: CommandOutput) throws -> Int32 {
        let paths = try arguments.requirePositional(["A", "B"])
        let topK = try arguments.double("top-k", default: 0.01, range: 1e-9...1)
        let a = try Importance.load(from: URL(fileURLWithPath: paths[0]))
        let b = try Importance.load(from: URL(fileURLWithPath: paths[1]))
        let report: AgreementReport
        do { report = try AgreementReport(a, b, topKFraction: topK) } catch {
            throw CommandError("squisher compare: \(paths[0]) vs \(paths[1]): \(error)", exitCode: 1, cause: error)
        }
        let rows = [("(all)", report.overall)] + report.perTensor.map { ($0.name, $0.agreement) }
        if arguments.flag("json") {
            let object = rows.map { name, m -> [String: Any] in
                ["tensor": name, "pearson": m.pearson, "spearman": m.spearman, "cosine": m.cosine,
                 "relative_error_after_scaling": m.relativeErrorAfterScaling, "top_k_overlap": m.topKOverlap, "count": m.count]
            }
            output.print(String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self))
        } else {
            output.print("A: \(paths[0]) (\(a.estimator))\nB: \(paths[1]) (\(b.estimator))")
            output.print(MarkdownTable(
                header: ["tensor", "entries", "pearson", "spearman", "cosine", "rel. error", "top-\(topK) overlap"],
                rows: rows.map { name, m in
                    [name, "\(m.count)", fmt(m.pearson), fmt(m.spearman), fmt(m.cosine), fmt(m.relativeErrorAfterScaling), fmt(m.topKOverlap)]
                }).render())
        }
        return 0
    }
}

func fmt(_ x: Double, _ digits: Int = 3) -> String { String(format: "%.\(digits)f", x) }

/// A GitHub-flavoured Markdown table (also readable as plain text).
struct MarkdownTable {
    var header: [String]
    var rows: [[String]]

    func render() -> String {
        var widths = header.map(\.count)
        for row in rows { for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.count) } }
        func line(_ cells: [String]) -> String {
            "| " + cells.enumerated().map { $0.element.padding(toLength: widths[$0.offset], withPad: " ", startingAt: 0) }.joined(separator: " | ") + " |"
        }
        return ([line(header), "|" + widths.map { String(repeating: "-", count: $0 + 2) }.joined(separator: "|") + "|"] + rows.map(line)).joined(separator: "\n")
    }
}
