// A custom estimator written outside the package: conform to SensitivityEstimator and every
// application accepts its result unchanged.
//   swift run -c release CustomEstimator
import Squisher

/// "Gradient-times-parameter" saliency |θ · Σ_n g_n| (a first-order Taylor score), from one pass.
struct TaylorSaliency: SensitivityEstimator {
    let name = "taylor"
    let requirement = EstimatorRequirement.data

    func estimate(model: any Layer, data: Dataset?) throws -> Importance {
        guard let data else { throw EstimatorError(estimator: name, problem: "needs data") }
        let gradient = try JointEmpiricalFisher(batchSize: data.count).estimate(model: model, data: data)  // (Σ g)²
        var values = NamedTensors()
        for (name, parameter) in model.namedParameters {
            let g2 = gradient[name]!
            values[name] = try parameter.value.zipWith(g2) { theta, squared in abs(theta) * squared.squareRoot() }
        }
        return try Importance(values: values, estimator: name, conventions: ["reduction": "sum"])
    }
}

let run = try DigitsExperiment.trainMLP(hidden: 64, epochs: 20, seed: 0)
let importance = try TaylorSaliency().estimate(model: run.model, data: run.train)
let mask = try FisherPruning().mask(parameters: run.model.stateDict(), importance: importance, sparsity: 0.75)
let pruned = DigitsExperiment.mlp(hidden: [64], seed: 0)
try pruned.load(mask.applied(to: run.model.stateDict()))
print(String(format: "dense %.2f%%, 75%% pruned by the custom estimator %.2f%%", 100 * run.testAccuracy,
             100 * (try Trainer.evaluate(model: pruned, data: run.test).accuracy)))
