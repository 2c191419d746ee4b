import Foundation
import SquisherApplications
import SquisherData
import SquisherEstimators
import SquisherLayers
import SquisherOptimizers
import SquisherTensor
import SquisherTraining

/// How well the Squisher agrees with the Fisher variants on a converged model: an MLP `64-128-10`
/// trained with Adam on digits, then every estimator on the training data, compared per parameter
/// tensor (Pearson and Spearman correlation, top-1% overlap). Also records each estimator's cost,
/// the analogue of the paper's Table 1.
public enum AgreementExperiment {
    public struct Result: Sendable {
        /// Importances by estimator name.
        public var importances: [String: Importance]
        /// Agreements of each pair `(a, b)` with `a` the reference.
        public var agreements: [(a: String, b: String, report: AgreementReport)]
        public var testAccuracy: Double
        public var trainingSeconds: Double
        public var order: [String]

        public func tables() -> [ResultTable] {
            var rows: [[String]] = []
            for (a, b, report) in agreements {
                for (name, m) in [("(all)", report.overall)] + report.perTensor.map({ ($0.name, $0.agreement) }) {
                    rows.append([a, b, name, String(format: "%.3f", m.pearson), String(format: "%.3f", m.spearman), String(format: "%.2f", m.topKOverlap)])
                }
            }
            let costRows = order.map { name -> [String] in
                let c = importances[name]!.cost
                return [name, String(format: "%.4f", c.seconds), "\(c.forwardPasses)", "\(c.backwardPasses)", "\(c.samplesTouched)", String(format: "%.1f", Double(c.peakExtraBytes) / 1024)]
            }
            return [
                ResultTable(identifier: "agreement", title: "Agreement between estimators on a converged MLP (per layer)",
                            columns: ["reference", "compared", "tensor", "pearson", "spearman", "top-1% overlap"], rows: rows,
                            notes: [String(format: "Digits, MLP 64-128-10 trained 30 epochs with Adam (test accuracy %.2f%%); Fisher variants over the 1,438 training digits; the Squisher is Adam's raw exp_avg_sq (correlations are scale-free).", 100 * testAccuracy)]),
                ResultTable(identifier: "cost", title: "Cost of each estimator (the analogue of the paper's Table 1)",
                            columns: ["estimator", "seconds", "forward passes", "backward passes", "samples", "peak extra KiB"], rows: costRows,
                            notes: [String(format: "Same model; the Squisher reads the optimizer state that training (%.2f s) already filled.", trainingSeconds)]),
            ]
        }
    }

    /// Trains the MLP and compares the estimators.
    /// - Parameter estimators: more estimators (a user's) to compare with the empirical Fisher and
    ///   to list in the cost table; they observe the same training run.
    public static func run(seed: UInt64 = 0, estimators extra: [AblationEstimator] = [], progress: ProgressReporter = .silent) throws -> Result {
        let extra = extra.filter { !$0.isBaseline }
        let run = try DigitsExperiment.trainMLP(hidden: 128, epochs: 30, seed: seed, estimators: extra)
        var importances: [String: Importance] = [:]
        let estimators: [(String, any SensitivityEstimator)] = [
            ("squisher", Squisher(optimizer: run.optimizer)),
            ("fisher", EmpiricalFisher(batchSize: 256)),
            ("true-fisher", TrueFisherExact(batchSize: 256)),
            ("true-fisher-mc1", TrueFisherMonteCarlo(samples: 1, seed: seed, batchSize: 256)),
            ("joint", JointEmpiricalFisher(batchSize: 32)),
        ]
        for (name, estimator) in estimators {
            importances[name] = try estimator.estimate(model: run.model, data: run.train)
            progress.message("agreement: \(name) done")
        }
        for estimator in extra where importances[estimator.name] == nil {
            importances[estimator.name] = run.importances[estimator.name]
        }
        var agreements: [(String, String, AgreementReport)] = []
        let pairs = [("fisher", "squisher"), ("fisher", "joint"), ("joint", "squisher"), ("true-fisher", "squisher"), ("true-fisher", "fisher"), ("true-fisher", "true-fisher-mc1")]
            + extra.map { ("fisher", $0.name) }
        for (a, b) in pairs {
            agreements.append((a, b, try AgreementReport(importances[a]!, importances[b]!, topKFraction: 0.01)))
        }
        let order = estimators.map(\.0) + extra.map(\.name).filter { name in !estimators.contains { $0.0 == name } }
        return Result(importances: importances, agreements: agreements, testAccuracy: run.testAccuracy, trainingSeconds: run.seconds, order: order)
    }
}
