import Squisher
/// A small command-line argument parser (the package takes no dependencies): options
/// `--name value`, `--name=value`, boolean flags `--flag`, and positional arguments, checked against
/// a declared list so that unknown options and missing values are errors that say what was expected.
public struct ParsedArguments: Sendable {
    /// Option values by name (without dashes); repeated options keep every value.
    public private(set) var options: [String: [String]] = [:]
    /// Boolean flags that were given.
    public private(set) var flags: Set<String> = []
    /// Positional arguments in order.
    public private(set) var positional: [String] = []
    /// The command name for messages (`"squisher compare"`).
    public let command: String

    /// A declared option or flag, for parsing and help text.
    public struct Option: Sendable {
        public var name: String
        public var valueName: String?
        public var help: String
        public init(_ name: String, value: String? = nil, help: String) {
            self.name = name
            self.valueName = value
            self.help = help
        }
    }

    /// Parses `arguments` against the declared options.
    /// - Throws: ``CommandError`` for an unknown option or a missing value.
    public init(_ arguments: [String], command: String, options declared: [Option]) throws(CommandError) {
        self.command = command
        let byName = Dictionary(declared.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        var index = 0
        var onlyPositional = false
        while index < arguments.count {
            let argument = arguments[index]
            index += 1
            if onlyPositional || !argument.hasPrefix("--") || argument == "-" {
                positional.append(argument)
                continue
            }
            if argument == "--" { onlyPositional = true; continue }
            var name = String(argument.dropFirst(2))
            var inlineValue: String?
            if let equals = name.firstIndex(of: "=") {
                inlineValue = String(name[name.index(after: equals)...])
                name = String(name[..<equals])
            }
            guard let option = byName[name] else {
                let known = declared.map { "--\($0.name)" }.joined(separator: ", ")
                throw CommandError("\(command): unknown option --\(name) (expected one of: \(known.isEmpty ? "none" : known))")
            }
            if option.valueName == nil {
                guard inlineValue == nil else { throw CommandError("\(command): --\(name) is a flag and takes no value") }
                flags.insert(name)
            } else if let inlineValue {
                options[name, default: []].append(inlineValue)
            } else {
                guard index < arguments.count else {
                    throw CommandError("\(command): --\(name) expects a value (\(option.valueName!))")
                }
                options[name, default: []].append(arguments[index])
                index += 1
            }
        }
    }

    /// The last value of an option, or `nil`.
    public func value(_ name: String) -> String? { options[name]?.last }
    /// Whether a flag was given.
    public func flag(_ name: String) -> Bool { flags.contains(name) }

    /// An integer option within a range, or the default.
    public func integer(_ name: String, default fallback: Int, range: ClosedRange<Int> = Int.min...Int.max) throws(CommandError) -> Int {
        guard let text = value(name) else { return fallback }
        guard let number = Int(text), range.contains(number) else {
            throw CommandError("\(command): --\(name) expects an integer in \(range.lowerBound)...\(range.upperBound), got '\(text)'")
        }
        return number
    }

    /// A floating-point option within a range, or the default.
    public func double(_ name: String, default fallback: Double, range: ClosedRange<Double> = -Double.greatestFiniteMagnitude...Double.greatestFiniteMagnitude) throws(CommandError) -> Double {
        guard let text = value(name) else { return fallback }
        guard let number = Double(text), number.isFinite, range.contains(number) else {
            throw CommandError("\(command): --\(name) expects a number in [\(range.lowerBound), \(range.upperBound)], got '\(text)'")
        }
        return number
    }

    /// A comma-separated list option (each value checked against `allowed` when given), or the default.
    public func list(_ name: String, default fallback: [String], allowed: [String]? = nil) throws(CommandError) -> [String] {
        guard let values = options[name] else { return fallback }
        let items = values.flatMap { $0.split(separator: ",").map { String($0).trimmingWhitespace() } }.filter { !$0.isEmpty }
        if let allowed, let bad = items.first(where: { !allowed.contains($0) }) {
            throw CommandError("\(command): --\(name) got '\(bad)'; expected a comma-separated list of: \(allowed.joined(separator: ", "))")
        }
        return items
    }

    /// Exactly `count` positional arguments, named in the message when missing.
    public func requirePositional(_ names: [String]) throws(CommandError) -> [String] {
        guard positional.count == names.count else {
            throw CommandError("\(command): expected \(names.count) argument\(names.count == 1 ? "" : "s") (\(names.joined(separator: " "))), got \(positional.count)")
        }
        return positional
    }
}

extension String {
    func trimmingWhitespace() -> String {
        var s = Substring(self)
        while s.first?.isWhitespace == true { s.removeFirst() }
        while s.last?.isWhitespace == true { s.removeLast() }
        return String(s)
    }
}

/// A user-facing command failure: a one-line message and an exit status (2 for usage errors,
/// 1 for failures while running).
public struct CommandError: SquisherError, Sendable {
    /// The line printed on stderr.
    public var message: String
    /// The process's exit status.
    public var exitCode: Int32
    /// The error this one wraps, or nil.
    public var cause: (any Error)?
    /// A failure with `message`; `cause` keeps the underlying error.
    public init(_ message: String, exitCode: Int32 = 2, cause: (any Error)? = nil) {
        self.message = message
        self.exitCode = exitCode
        self.cause = cause
    }
    public var description: String { message }
}
