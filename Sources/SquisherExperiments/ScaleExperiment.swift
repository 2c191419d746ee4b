import Foundation
import SquisherData
import SquisherEstimators
import SquisherLayers
import SquisherOptimizers
import SquisherTensor
import SquisherTraining

/// How the recycled accumulator's scale compares with the sum-reduced empirical Fisher, measured:
/// an MLP `64-128-10` trained 30 epochs on the digits train split (`N` = 1,438, mean-reduced
/// cross-entropy) with Adam (its `exp_avg_sq`) and with SGD (a ``HookSquisher`` EMA, β₂ = 0.999),
/// at several batch sizes `B`; after training, `F = Σ_n g_n²` and the joint empirical Fisher over
/// mini-batches of `B`, `J_B = Σ_b (Σ_{n∈b} g_n)²`, at the final parameters.
///
/// `v` averages `ḡ² ≈ F/(N·B) + m²` (see ``SquisherScaling``), so `Σ N·v / Σ F` is expected near
/// `1/B` and `Σ N·B·v / Σ F` near 1 when the gradient noise dominates; `J_B/F` shows the same at the
/// final parameters alone (no EMA over the run).
public enum ScaleExperiment {
    /// One training run's sums.
    public struct Row: Sendable, Hashable {
        /// `"Adam exp_avg_sq"` or `"SGD + hook EMA"`.
        public var optimizer: String
        /// Mini-batch size `B`.
        public var batchSize: Int
        /// Optimizer steps taken.
        public var steps: Int
        /// Training samples `N`.
        public var datasetSize: Int
        /// `Σ v` over all parameters (raw, no bias correction).
        public var sumV: Double
        /// `Σ F`, the sum-reduced empirical Fisher at the final parameters.
        public var sumFisher: Double
        /// `Σ J_B`, the joint empirical Fisher over mini-batches of `B` at the final parameters.
        public var sumJoint: Double

        /// `Σ N·v / Σ F`.
        public var datasetScaledRatio: Double { Double(datasetSize) * sumV / sumFisher }
        /// `Σ N·B·v / Σ F`.
        public var sumReducedRatio: Double { Double(datasetSize * batchSize) * sumV / sumFisher }
        /// `Σ J_B / Σ F`.
        public var jointRatio: Double { sumJoint / sumFisher }
    }

    /// The rows of one seed.
    public struct Result: Sendable {
        /// One row per (optimizer, batch size).
        public var rows: [Row]
        /// The seed of the split, initialization and shuffling.
        public var seed: UInt64

        /// The report table.
        public func tables() -> [ResultTable] {
            [ResultTable(
                identifier: "scale", title: "Scale of the recycled accumulator: Σ N·v and Σ N·B·v against the sum-reduced empirical Fisher Σ F",
                columns: ["optimizer", "B", "steps", "Σ N·v / Σ F", "1/B", "Σ N·B·v / Σ F", "Σ J_B / Σ F (final θ)"],
                rows: rows.map { row in
                    [row.optimizer, "\(row.batchSize)", "\(row.steps)", String(format: "%.3f", row.datasetScaledRatio), String(format: "%.3f", 1 / Double(row.batchSize)),
                     String(format: "%.2f", row.sumReducedRatio), String(format: "%.2f", row.jointRatio)]
                },
                notes: [
                    "Digits, MLP 64-128-10, 30 epochs on the N = \(rows.first?.datasetSize ?? 0) training digits (seed \(seed)), mean-reduced cross-entropy; F = Σ_n g_n² (sum over N) and J_B = Σ_b (Σ_{n∈b} g_n)² at the final parameters; v without bias correction.",
                    "Adam(lr 1e-3): v is its exp_avg_sq (β₂ = 0.999). SGD(lr \(String(format: "%g", ScaleExperiment.sgdLearningRate))): v from a SquaredGradientAccumulator(.ema(beta2: 0.999)) on its post-step hook.",
                    "v averages squared mean mini-batch gradients, E[ḡ²] ≈ F/(N·B) + m² (m the mean gradient): N·v is about 1/B of the sum-reduced Fisher and N·B·v about equal to it when the noise dominates; v also remembers earlier, larger gradients of the run.",
                ])]
        }
    }

    /// SGD's learning rate in the measurement.
    public static let sgdLearningRate: Float = 0.1

    /// Trains one model per (optimizer, batch size) and measures the sums.
    public static func run(seed: UInt64 = 0, batchSizes: [Int] = [8, 32, 128], epochs: Int = 30, progress: ProgressReporter = .silent) throws -> Result {
        let (train, _) = try DigitsExperiment.split(seed: seed)
        var rows: [Row] = []
        for useSGD in [false, true] {
            for batchSize in batchSizes {
                rows.append(try measure(sgd: useSGD, batchSize: batchSize, epochs: epochs, train: train, seed: seed))
                progress.message("scale: \(rows.last!.optimizer) B=\(batchSize) done")
            }
        }
        return Result(rows: rows, seed: seed)
    }

    static func measure(sgd: Bool, batchSize: Int, epochs: Int, train: Dataset, seed: UInt64) throws -> Row {
        let model = DigitsExperiment.mlp(hidden: [128], seed: seed)
        let optimizer: any Optimizer = sgd
            ? try SGD(parameters: model.namedParameters, learningRate: sgdLearningRate)
            : try Adam(parameters: model.namedParameters, learningRate: 1e-3)
        let squisher: any TrainingRunEstimator = sgd ? HookSquisher(rule: .ema(beta2: 0.999), scaling: .raw) : RecycledSquisher(scaling: .raw)
        let run = TrainingRun(model: model, optimizer: optimizer, data: train, batchSize: batchSize)
        let observers = try TrainingRunObservers(run: run, estimators: [squisher, EmpiricalFisher(batchSize: 256), JointEmpiricalFisher(batchSize: batchSize)])
        try Trainer.train(model: model, optimizer: optimizer, data: train, configuration: TrainingConfiguration(epochs: epochs, batchSize: batchSize, seed: seed))
        let sums = try observers.estimates().map { $0.flattened.reduce(0.0) { $0 + Double($1) } }
        return Row(optimizer: sgd ? "SGD + hook EMA" : "Adam exp_avg_sq", batchSize: batchSize, steps: optimizer.stepCount,
                   datasetSize: train.count, sumV: sums[0], sumFisher: sums[1], sumJoint: sums[2])
    }
}
