// A custom estimator in the ablation study, next to the built-ins: every table and plot of
// `squisher ablate` gets a row for it.
//   swift run -c release AblateCustomEstimator [report-folder]
import Foundation
import Squisher

/// "Short-memory Squisher": N·v from an EMA with β₂ = 0.99 that observes training through the
/// optimizer's post-step hook (works with any optimizer), instead of Adam's own β₂ = 0.999.
struct ShortMemorySquisher: TrainingRunEstimator {
    let name = "squisher-0.99"
    let requirement = EstimatorRequirement.trainingRun

    /// Before training: attach an accumulator to the run's optimizer.
    func prepare(for run: TrainingRun) throws -> SquaredGradientAccumulator {
        let accumulator = try SquaredGradientAccumulator(rule: .ema(beta2: 0.99), scaling: .datasetSize(run.datasetSize))
        accumulator.attach(to: run.optimizer)
        return accumulator
    }

    /// After training: read it.
    func estimate(_ run: TrainingRun, observation accumulator: SquaredGradientAccumulator) throws -> Importance {
        accumulator.detach()
        return try accumulator.estimate(model: run.model, data: nil)
    }
}

let mine = AblationEstimator(name: "squisher-0.99", displayName: "Squisher N·v, β₂ = 0.99 (custom)", estimator: ShortMemorySquisher())
let study = AblationStudy(
    applications: [.merging, .pruning, .fishMask], estimators: [.empiricalFisher, .squisher, mine, .baseline], seeds: [0], size: .quick)
let report = try study.run()
for table in report.tables where ["merging", "ubgm", "pruning", "fish_mask", "cost"].contains(table.identifier) {
    print(table.markdown())
}
if CommandLine.arguments.count > 1 {
    try report.write(to: URL(fileURLWithPath: CommandLine.arguments[1]))
}
