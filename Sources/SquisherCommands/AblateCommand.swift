import Foundation
import Squisher

/// `squisher ablate`: the main job. Trains the models, computes every estimator, runs the six
/// applications on the bundled digits, prints the paper's comparisons and writes a report folder.
enum AblateCommand: Subcommand {
    static let name = "ablate"
    static let summary = "The main job: every estimator in all six applications on digits, with a report."
    static let positionalUsage = ""
    static let discussion = """
        Reproduces the comparisons of 'Fishers for Free?' (Li, Dangel, Tam, Raffel, ICML 2025) on the bundled \
        digits: per application the empirical, true and joint empirical Fisher, the Squisher (Adam's exp_avg_sq) \
        and the Fisher-free baseline (Figure 2), each estimator's cost (Table 1) and the EWC ablations (Table 2); \
        'lm' repeats merging and FISH mask with a tiny GPT on generated next-token tasks. \
        Tables go to stdout; report.md, one CSV per table and SVG plots go to the output folder.
        """
    static let options: [ParsedArguments.Option] = [
        .init("quick", help: "A small run (one seed, fewer epochs) that finishes in about a minute."),
        .init("seeds", value: "n", help: "Number of seeds (default 3, or 1 with --quick)."),
        .init("applications", value: "list", help: "Comma-separated subset of: \(AblationStudy.Application.allCases.map(\.rawValue).joined(separator: ", "))."),
        .init("estimators", value: "list", help: "Comma-separated subset of: \(AblationEstimator.builtIns.map(\.name).joined(separator: ", "))."),
        .init("output", value: "folder", help: "Report folder (default ./report)."),
        .init("no-report", help: "Print the tables only; write no files."),
        .init("json", help: "Print the tables as JSON instead of Markdown."),
    ]

    /// The report as written to files: without wall-clock times (the run times and the cost
    /// table's `seconds` column, which stay on stdout and stderr), so that the same command gives
    /// byte-identical files.
    static func reportFiles(of report: AblationStudy.Report) -> AblationStudy.Report {
        var files = report
        files.seconds = []
        // Durations quoted in notes, like "training (50.09 s) already filled".
        let duration = try! NSRegularExpression(pattern: #" \([0-9]+(\.[0-9]+)? m?s\)"#)
        files.tables = report.tables.map { table in
            var table = table
            table.notes = table.notes.map { duration.stringByReplacingMatches(in: $0, range: NSRange($0.startIndex..., in: $0), withTemplate: "") }
            let timed = Set(table.columns.indices.filter { table.columns[$0] == "seconds" })
            guard !timed.isEmpty else { return table }
            var copy = table
            copy.columns = table.columns.enumerated().filter { !timed.contains($0.offset) }.map(\.element)
            copy.rows = table.rows.map { $0.enumerated().filter { !timed.contains($0.offset) }.map(\.element) }
            copy.notes.append("Times are measured per run and printed on stdout (not written here, so that reports of the same run are identical).")
            return copy
        }
        return files
    }

    static func run(_ arguments: ParsedArguments, output: CommandOutput) throws -> Int32 {
        _ = try arguments.requirePositional([])
        let quick = arguments.flag("quick")
        let seedCount = try arguments.integer("seeds", default: quick ? 1 : 3, range: 1...100)
        let applications = try arguments.list("applications", default: AblationStudy.Application.allCases.map(\.rawValue), allowed: AblationStudy.Application.allCases.map(\.rawValue))
            .compactMap(AblationStudy.Application.init(rawValue:))
        let estimators = try arguments.list("estimators", default: AblationEstimator.builtIns.map(\.name), allowed: AblationEstimator.builtIns.map(\.name))
            .compactMap(AblationEstimator.builtIn(named:))
        guard !applications.isEmpty else { throw CommandError("squisher ablate: --applications is empty") }
        guard !estimators.isEmpty else { throw CommandError("squisher ablate: --estimators is empty") }
        let study = AblationStudy(applications: applications, estimators: estimators, seeds: (0..<UInt64(seedCount)).map { $0 }, size: quick ? .quick : .full)
        let report = try study.run(progress: output.progress)
        if !arguments.flag("no-report") {
            let folder = URL(fileURLWithPath: arguments.value("output") ?? "report")
            do {
                // All files or none: a full disk leaves the previous report as it was.
                let files = reportFiles(of: report)
                try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
                try AtomicFile.write([(folder.appendingPathComponent("report.md"), Data(files.markdown().utf8))]
                    + files.tables.map { (folder.appendingPathComponent("\($0.identifier).csv"), Data($0.csv().utf8)) }
                    + files.plots.map { (folder.appendingPathComponent($0.name), Data($0.svg.utf8)) })
            } catch {
                throw CommandError("squisher ablate: cannot write the report to \(folder.path): \(error)", exitCode: 1, cause: error)
            }
            for (part, seconds) in report.seconds { output.standardError(String(format: "ablate: %@ took %.1f s\n", part, seconds)) }
            output.standardError("ablate: report written to \(folder.path)/report.md\n")
        }
        if arguments.flag("json") {
            let tables = report.tables.map { ["id": $0.identifier, "title": $0.title, "columns": $0.columns, "rows": $0.rows] as [String: Any] }
            output.print(String(decoding: try JSONSerialization.data(withJSONObject: tables, options: [.sortedKeys]), as: UTF8.self))
        } else {
            output.print("# Squisher ablation study on digits\n\n\(report.settings)\n\n\(report.guide)\n")
            for table in report.tables { output.print(table.markdown()) }
        }
        return 0
    }
}
