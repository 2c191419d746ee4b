/// How two lists of parameter names disagree: the names a model (or application) expects that a
/// source (an importance, an optimizer state, an accumulator) lacks, and the source's names that
/// the model does not have, with a hint when the two differ by a prefix (an optimizer built over a
/// sub-model names its parameters `0.weight` where the whole model says `0.0.weight`).
///
/// Used by the estimators and applications so that a name mismatch is an error that says what
/// went wrong, never a silent all-zero importance.
public struct ParameterNameMismatch: Sendable, Hashable, CustomStringConvertible {
    /// Expected names (in expected order) that the source lacks.
    public var missing: [String]
    /// Source names (in source order) that are not expected.
    public var unexpected: [String]
    /// What the source is (`"optimizer state"`, `"importance 'squisher'"`), for messages.
    public var source: String

    /// Compares `expected` with `found`; `nil` when every expected name is found and no found name
    /// is unexpected (order is not compared).
    /// - Parameter allowUnexpected: accept names in `found` that are not expected (a source that
    ///   covers more than the parameters at hand).
    public init?(expected: [String], found: [String], source: String, allowUnexpected: Bool = false) {
        let foundSet = Set(found), expectedSet = Set(expected)
        let missing = expected.filter { !foundSet.contains($0) }
        let unexpected = allowUnexpected ? [] : found.filter { !expectedSet.contains($0) }
        guard !missing.isEmpty || !unexpected.isEmpty else { return nil }
        self.missing = missing
        self.unexpected = unexpected
        self.source = source
        // For the hint, compare with every found name even when extras are allowed.
        prefixPairs = Self.prefixPairs(missing: missing, candidates: found.filter { !expectedSet.contains($0) })
    }

    /// Pairs `(expected, found)` where one name is the other with a leading `prefix.` added.
    public private(set) var prefixPairs: [(expected: String, found: String)] = []

    /// Same missing and unexpected names from the same source.
    public static func == (a: Self, b: Self) -> Bool {
        a.missing == b.missing && a.unexpected == b.unexpected && a.source == b.source
    }

    /// Hashes the names and the source.
    public func hash(into hasher: inout Hasher) {
        hasher.combine(missing)
        hasher.combine(unexpected)
        hasher.combine(source)
    }

    /// One paragraph: counts, the first few names of each kind, and the prefix hint.
    public var description: String {
        func list(_ names: [String]) -> String {
            let shown = names.prefix(4).map { "'\($0)'" }.joined(separator: ", ")
            return names.count > 4 ? shown + ", ... (\(names.count) in all)" : shown
        }
        var parts: [String] = []
        if !missing.isEmpty { parts.append("\(source) has no entry for \(missing.count) parameter(s): \(list(missing))") }
        if !unexpected.isEmpty { parts.append("\(source) has \(unexpected.count) name(s) that are no parameter of the model: \(list(unexpected))") }
        var text = parts.joined(separator: "; ")
        if let pair = prefixPairs.first {
            text += "; the names differ by a prefix ('\(pair.expected)' in the model, '\(pair.found)' in the \(source)): "
                + "was the optimizer or estimator built over a sub-model? Build it over the model whose names are used here"
        }
        return text
    }

    static func prefixPairs(missing: [String], candidates: [String]) -> [(expected: String, found: String)] {
        var pairs: [(String, String)] = []
        for name in missing.prefix(64) {
            if let match = candidates.first(where: { name.hasSuffix("." + $0) || $0.hasSuffix("." + name) }) {
                pairs.append((name, match))
            }
        }
        return pairs
    }
}

/// What an estimator does with a parameter it never observed: a trainable parameter without
/// optimizer state (frozen by the optimizer, or named differently), or one an accumulator never saw
/// a gradient for.
public enum UnobservedParameterPolicy: String, Sendable, Hashable, CaseIterable {
    /// Throw an ``EstimatorError`` that names the parameters (and a prefix mismatch if there is
    /// one). The default: an all-zero importance is never produced silently.
    case fail
    /// Give those parameters zero importance and list them in the importance's conventions
    /// (`"no_state"` for ``Squisher``, `"unobserved"` for ``SquaredGradientAccumulator``): an
    /// explicit, reported choice. Still an error when **no** parameter was observed.
    case zero
}
