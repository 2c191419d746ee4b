// Fisher pruning with the Squisher (saliency θ²·v/2), then masked fine-tuning.
//   swift run -c release PruneWithSquisher
import Squisher

let run = try DigitsExperiment.trainMLP(hidden: 128, epochs: 30, seed: 0)
let squisher = try Squisher(optimizer: run.optimizer).estimate(model: run.model, data: nil)
for sparsity in [0.5, 0.75, 0.9] {
    let mask = try FisherPruning(scope: .global).mask(parameters: run.model.stateDict(), importance: squisher, sparsity: sparsity)
    let model = DigitsExperiment.mlp(hidden: [128], seed: 0)
    try model.load(mask.applied(to: run.model.stateDict()))
    let before = try Trainer.evaluate(model: model, data: run.test).accuracy
    let adam = try Adam(parameters: model.namedParameters)
    let hooks = mask.enforce(on: adam, model: model, keepParametersZero: true)
    try Trainer.train(model: model, optimizer: adam, data: run.train, configuration: TrainingConfiguration(epochs: 2))
    hooks.forEach { $0.remove() }
    print(String(format: "%2.0f%% of weights removed: %.2f%% -> %.2f%% after 2 epochs of masked fine-tuning",
                 100 * sparsity, 100 * before, 100 * (try Trainer.evaluate(model: model, data: run.test).accuracy)))
}
