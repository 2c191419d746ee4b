import Foundation
import Squisher
import SquisherCommands
import Testing

/// Must show 2 of the command-line issue: `squisher ablate --quick` produces the report's structure
/// (the three tables of the paper's comparisons, CSVs, SVG plots) and the direction of its headline
/// results (the Squisher beats each application's Fisher-free baseline).
@Suite("squisher ablate --quick", .tags(.endToEnd))
struct AblateTests {
    /// The first number in a cell like "96.40 ± 0.88".
    static func number(_ cell: String) -> Double? { Double(cell.split(separator: " ").first ?? "") }

    @Test("report structure and headline directions")
    func quickStudy() throws {
        let folder = temporaryPath("report")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let result = runTool(["ablate", "--quick", "--output", folder])
        #expect(result.status == 0, "stderr: \(result.stderr)")
        for title in ["Cost of each estimator", "Fisher merging", "UBGM merging", "Fisher pruning", "FISH mask", "Task2Vec", "EWC"] {
            #expect(result.stdout.contains(title), "stdout lacks '\(title)'")
        }
        let files = try FileManager.default.contentsOfDirectory(atPath: folder)
        for expected in ["report.md", "cost.csv", "merging.csv", "ubgm.csv", "pruning.csv", "fish_mask.csv", "scatter_fisher_vs_squisher.svg", "pruning_accuracy_vs_sparsity.svg"] {
            #expect(files.contains(expected), "report folder lacks \(expected): \(files.sorted())")
        }
        #expect(files.contains { $0.hasPrefix("task2vec") && $0.hasSuffix(".svg") })
        #expect(files.contains { $0.hasPrefix("ewc") && $0.hasSuffix(".svg") }, "no EWC plot in \(files.sorted())")
        // Every SVG is a complete document.
        for svg in files where svg.hasSuffix(".svg") {
            let text = try String(contentsOfFile: folder + "/" + svg, encoding: .utf8)
            #expect(text.hasPrefix("<?xml") && text.hasSuffix("</svg>\n"), "\(svg) is not a complete SVG")
        }
        // Directions: the Squisher beats the baseline in merging and pruning (90%).
        func rows(_ csv: String) throws -> [[String]] {
            try String(contentsOfFile: folder + "/" + csv, encoding: .utf8).split(separator: "\n").map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) }
        }
        let merging = try rows("merging.csv")
        let squisherMerged = merging.first { $0[0].hasPrefix("Squisher") }.flatMap { Self.number($0[1]) }
        let averaged = merging.first { $0[0].contains("baseline") }.flatMap { Self.number($0[1]) }
        #expect(squisherMerged != nil && averaged != nil && squisherMerged! > averaged!, "merging: Squisher \(String(describing: squisherMerged)) vs averaging \(String(describing: averaged))")
        let pruning = try rows("pruning.csv")
        let squisherPruned = pruning.first { $0[0].hasPrefix("Squisher") }.flatMap { Self.number($0[4]) }
        let random = pruning.first { $0[0].contains("baseline") }.flatMap { Self.number($0[4]) }
        #expect(squisherPruned != nil && random != nil && squisherPruned! > random! + 10, "pruning at 90%: Squisher \(String(describing: squisherPruned)) vs random \(String(describing: random))")
        // Costs: the Squisher needs no pass at all; times are on stdout, not in the files.
        let cost = try rows("cost.csv")
        #expect(cost.first == ["estimator", "forward passes", "backward passes", "samples", "peak extra KiB"], "\(cost.first ?? [])")
        let squisherPasses = cost.first { $0[0] == "squisher" }.map { [$0[1], $0[2]] }
        #expect(squisherPasses == ["0", "0"], "the Squisher's cost should be no pass, got \(String(describing: squisherPasses))")
        #expect(result.stdout.contains("| seconds"), "the cost table with times is printed")
    }

    /// The README's main command, twice into one folder: the second run replaces the first report
    /// atomically (on Linux, Foundation's replaceItemAt deleted report.md and failed) and writes
    /// byte-identical files (no wall-clock time in them).
    @Test("the same ablate twice into one folder: replaced, byte-identical")
    func twiceIntoOneFolder() throws {
        let root = temporaryPath("twice")
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let folder = root + "/report"
        let arguments = ["ablate", "--quick", "--output", folder]  // every application: no wall-clock value in any result file
        let first = runTool(arguments)
        #expect(first.status == 0, "stderr: \(first.stderr)")
        let files = try FileManager.default.contentsOfDirectory(atPath: folder).sorted()
        let bytes = try files.map { try Data(contentsOf: URL(fileURLWithPath: folder + "/" + $0)) }
        let second = runTool(arguments)
        #expect(second.status == 0, "the second run must replace the report: \(second.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder).sorted() == files)
        for (name, data) in zip(files, bytes) {
            #expect(try Data(contentsOf: URL(fileURLWithPath: folder + "/" + name)) == data, "\(name) differs between two runs")
        }
        #expect(files.contains("report.md"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: root) == ["report"], "staging left beside the report")
    }
}

extension Tag {
    @Tag static var endToEnd: Self
}
