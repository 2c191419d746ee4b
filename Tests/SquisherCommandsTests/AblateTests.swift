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
        let cost = try rows("cost.csv")
        let squisherSeconds = cost.first { $0[0] == "squisher" }.flatMap { Double($0[1]) }
        #expect(squisherSeconds != nil && squisherSeconds! < 0.01, "the Squisher's cost should be ~0 s, got \(String(describing: squisherSeconds))")
    }
}

extension Tag {
    @Tag static var endToEnd: Self
}
