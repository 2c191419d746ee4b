import Foundation

/// Progress of long work on standard error: a redrawn bar when stderr is a terminal, plain lines
/// otherwise (logs, CI), and nothing when disabled. Results belong on stdout, never here.
public struct ProgressReporter: Sendable {
    /// How progress is shown.
    public enum Style: Sendable { case bar, lines, silent }
    /// The chosen style.
    public let style: Style

    /// A reporter that draws a bar on a terminal and prints lines otherwise.
    public static var automatic: ProgressReporter {
        ProgressReporter(style: isatty(STDERR_FILENO) != 0 ? .bar : .lines)
    }
    /// A reporter that prints nothing.
    public static let silent = ProgressReporter(style: .silent)

    public init(style: Style) { self.style = style }

    /// Reports `done` of `total` units of the task `label`. Bars redraw in place; lines are
    /// not printed (logs get ``message(_:)`` lines only).
    public func update(_ label: String, done: Int, total: Int, detail: String = "") {
        switch style {
        case .silent: return
        case .lines:
            return  // logs get the completion messages only
        case .bar:
            let width = 30
            let filled = total == 0 ? width : width * done / total
            let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
            Self.write("\r\(label) [\(bar)] \(done)/\(total) \(detail)\u{1B}[K" + (done == total ? "\n" : ""))
        }
    }

    /// Prints a line of progress text (not a result).
    public func message(_ text: String) {
        guard style != .silent else { return }
        Self.write(text + "\n")
    }

    private static func write(_ text: String) {
        FileHandle.standardError.write(Data(text.utf8))
    }
}
