import SquisherEstimators

/// One estimator compared in the experiments and in ``AblationStudy``: a name, a display name and
/// any ``TrainingRunEstimator`` (or none: the application's Fisher-free baseline). The built-ins
/// are values of this type like any user's estimator:
///
/// ```swift
/// let mine = AblationEstimator(name: "my-squisher", displayName: "My Squisher", estimator: MySquisher())
/// let study = AblationStudy(estimators: AblationEstimator.builtIns + [mine], seeds: [0], size: .quick)
/// ```
///
/// Equality and hashing use ``name`` only (one row per name in every table). Encoding stores the
/// name and display name; decoding gives back the built-in of that name, or an entry that cannot
/// be run (its estimator throws), since an estimator's code cannot be decoded.
public struct AblationEstimator: Sendable, Hashable, Codable, CustomStringConvertible {
    /// Identifier used by `squisher ablate --estimators`, in settings lines and file names (`"fisher"`).
    public let name: String
    /// The row label in tables (`"Fisher (empirical)"`).
    public let displayName: String
    /// The estimator; `nil` for the Fisher-free baseline.
    public let estimator: (any TrainingRunEstimator)?

    /// A user's (or built-in) estimator.
    /// - Parameter displayName: the table label; default `name`.
    public init(name: String, displayName: String? = nil, estimator: some TrainingRunEstimator) {
        self.name = name
        self.displayName = displayName ?? name
        self.estimator = estimator
    }

    private init(baselineNamed name: String, displayName: String) {
        self.name = name
        self.displayName = displayName
        estimator = nil
    }

    /// Empirical Fisher `Σ_n g_n²` on the task's training data (the paper's "Fisher").
    public static let empiricalFisher = AblationEstimator(name: "fisher", displayName: "Fisher (empirical)", estimator: EmpiricalFisher(batchSize: 256))
    /// Exact true Fisher (= GGN diagonal) on the task's training data.
    public static let trueFisher = AblationEstimator(name: "true-fisher", displayName: "true Fisher", estimator: TrueFisherExact(batchSize: 256))
    /// Joint empirical Fisher over mini-batches of the training batch size `B`, divided by `B`
    /// (`(1/B) Σ_b (Σ_{n∈b} g_n)²`), on the scale of `N·v`.
    public static let jointFisher = AblationEstimator(name: "joint", displayName: "joint empirical Fisher", estimator: TrainingBatchJointFisher())
    /// The Squisher: the training run's Adam `exp_avg_sq`, scaled by `N` (raw `v` gives identical
    /// results where the application is scale-free).
    public static let squisher = AblationEstimator(name: "squisher", displayName: "Squisher (N·v)", estimator: RecycledSquisher(scaling: .datasetSize))
    /// The application's Fisher-free baseline (averaging, random mask, data-set size, no penalty).
    public static let baseline = AblationEstimator(baselineNamed: "baseline", displayName: "Fisher-free baseline")

    /// The built-ins in report order: the Fisher variants, the Squisher, the baseline.
    public static let builtIns: [AblationEstimator] = [.empiricalFisher, .trueFisher, .jointFisher, .squisher, .baseline]
    /// The built-ins that produce an importance (all but the baseline).
    public static let importanceBased: [AblationEstimator] = [.empiricalFisher, .trueFisher, .jointFisher, .squisher]

    /// The built-in with this name, if any.
    public static func builtIn(named name: String) -> AblationEstimator? { builtIns.first { $0.name == name } }

    /// Whether this is the Fisher-free baseline (no estimator).
    public var isBaseline: Bool { estimator == nil }
    /// Whether this is one of ``builtIns``.
    public var isBuiltIn: Bool { Self.builtIn(named: name) != nil }
    /// The estimator's requirement (`.parametersOnly` for the baseline).
    public var requirement: EstimatorRequirement { estimator?.requirement ?? .parametersOnly }
    /// ``name``.
    public var description: String { name }
    /// ``name`` reduced to ASCII letters, digits and `-`, for file names.
    public var slug: String { String(name.map { $0.isASCII && ($0.isLetter || $0.isNumber) ? $0 : "-" }) }

    /// Same ``name``, same estimator (one row per name in every table).
    public static func == (a: Self, b: Self) -> Bool { a.name == b.name }
    /// Hashes ``name`` only.
    public func hash(into hasher: inout Hasher) { hasher.combine(name) }

    private enum CodingKeys: String, CodingKey { case name, displayName }

    /// Stores ``name`` and ``displayName``.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(name, forKey: .name)
        try container.encode(displayName, forKey: .displayName)
    }

    /// The built-in of the stored name, or an entry whose estimator throws when run.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let name = try container.decode(String.self, forKey: .name)
        let displayName = try container.decode(String.self, forKey: .displayName)
        if let builtIn = Self.builtIn(named: name) {
            self = builtIn
        } else {
            self.init(name: name, displayName: displayName, estimator: DecodedEstimator(name: name))
        }
    }
}

/// The stand-in for a user's estimator decoded from a saved result: it cannot run.
struct DecodedEstimator: TrainingRunEstimator {
    var name: String
    var requirement: EstimatorRequirement { .parametersOnly }
    func estimate(_ run: TrainingRun, observation: Void) throws -> Importance {
        throw EstimatorError(estimator: name, problem: "was decoded from a saved result; its code is not stored, so it cannot be run again")
    }
}

extension AblationEstimator {
    /// ``estimators`` without duplicates (first occurrence kept), the baseline last.
    static func reportOrder(_ estimators: [AblationEstimator]) -> [AblationEstimator] {
        var unique: [AblationEstimator] = []
        for estimator in estimators where !unique.contains(estimator) { unique.append(estimator) }
        return unique.filter { !$0.isBaseline } + unique.filter(\.isBaseline)
    }
}
