import Foundation
import Squisher

/// Where a command writes: results to `standardOutput`, progress and errors to `standardError`.
/// Tests capture both by passing closures.
public struct CommandOutput: Sendable {
    public var standardOutput: @Sendable (String) -> Void
    public var standardError: @Sendable (String) -> Void
    /// Progress on stderr (a bar on a terminal, lines otherwise, or silent in tests).
    public var progress: ProgressReporter

    public init(standardOutput: @escaping @Sendable (String) -> Void, standardError: @escaping @Sendable (String) -> Void, progress: ProgressReporter) {
        self.standardOutput = standardOutput
        self.standardError = standardError
        self.progress = progress
    }

    /// The process's stdout and stderr.
    public static var console: CommandOutput {
        CommandOutput(
            standardOutput: { FileHandle.standardOutput.write(Data($0.utf8)) },
            standardError: { FileHandle.standardError.write(Data($0.utf8)) },
            progress: .automatic)
    }

    /// Prints a line of results.
    public func print(_ line: String = "") { standardOutput(line + "\n") }
}

/// One `squisher` subcommand.
public protocol Subcommand: Sendable {
    /// The verb (`"compare"`).
    static var name: String { get }
    /// One line for the overview.
    static var summary: String { get }
    /// Positional arguments for the usage line (`"A.safetensors B.safetensors"`).
    static var positionalUsage: String { get }
    /// A paragraph for `--help`.
    static var discussion: String { get }
    /// Declared options (`--help` is added automatically).
    static var options: [ParsedArguments.Option] { get }
    /// Runs with parsed arguments.
    static func run(_ arguments: ParsedArguments, output: CommandOutput) throws -> Int32
}

/// The `squisher` command-line tool: dispatches to subcommands, prints help, and maps errors to a
/// one-line message and a non-zero exit status.
public enum SquisherTool {
    /// Every subcommand.
    public static let subcommands: [any Subcommand.Type] = [
        AblateCommand.self, TrainCommand.self, EstimateCommand.self, CompareCommand.self, InspectCommand.self, ImportanceCommand.self, MergeCommand.self, PruneCommand.self, MaskCommand.self, EmbedCommand.self,
    ]

    /// Makes SIGINT, SIGTERM and SIGHUP remove the staging files and folders of unfinished outputs
    /// before the process ends (see ``OutputStaging``). For the executable; call once at start.
    public static func installSignalCleanup() { OutputStaging.installSignalCleanup() }

    /// Runs the tool with `arguments` (without the program name); returns the exit status.
    public static func main(_ arguments: [String], output: CommandOutput = .console) -> Int32 {
        guard let verb = arguments.first, verb != "--help", verb != "-h", verb != "help" else {
            output.print(overview)
            return arguments.isEmpty ? 2 : 0
        }
        guard let command = subcommands.first(where: { $0.name == verb }) else {
            output.standardError("squisher: unknown subcommand '\(verb)' (expected one of: \(subcommands.map { $0.name }.joined(separator: ", ")); see squisher --help)\n")
            return 2
        }
        let rest = Array(arguments.dropFirst())
        if rest.contains("--help") || rest.contains("-h") {
            output.print(help(for: command))
            return 0
        }
        do {
            let parsed = try ParsedArguments(rest, command: "squisher \(verb)", options: command.options)
            return try command.run(parsed, output: output)
        } catch let error as CommandError {
            output.standardError(error.message + "\n")
            return error.exitCode
        } catch {
            output.standardError("squisher \(verb): \(error)\n")
            return 1
        }
    }

    static var overview: String {
        var lines = [
            "squisher: the diagonal Fisher information, for free (Li, Dangel, Tam, Raffel 2025, Fishers for Free?)",
            "",
            "USAGE: squisher <subcommand> [options]",
            "",
            "SUBCOMMANDS:",
        ]
        for command in subcommands { lines.append("  " + command.name.padding(toLength: 10, withPad: " ", startingAt: 0) + command.summary) }
        lines += ["", "Run 'squisher <subcommand> --help' for its options."]
        return lines.joined(separator: "\n")
    }

    static func help(for command: any Subcommand.Type) -> String {
        var lines = ["USAGE: squisher \(command.name) [options] \(command.positionalUsage)", "", command.discussion, "", "OPTIONS:"]
        for option in command.options {
            let head = "--\(option.name)" + (option.valueName.map { " <\($0)>" } ?? "")
            if head.count < 28 {
                lines.append("  " + head.padding(toLength: 28, withPad: " ", startingAt: 0) + option.help)
            } else {  // a long value list: the help goes on its own line rather than being cut
                lines.append("  " + head)
                lines.append(String(repeating: " ", count: 30) + option.help)
            }
        }
        lines.append("  " + "--help".padding(toLength: 28, withPad: " ", startingAt: 0) + "Show this help.")
        return lines.joined(separator: "\n")
    }
}
