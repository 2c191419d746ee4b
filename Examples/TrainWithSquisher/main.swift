// Training with the Squisher attached: the estimator plugs into the optimizer's step hooks, the
// training loop is unchanged, and the Fisher estimate is ready when training ends, at no cost.
//   swift run -c release TrainWithSquisher
import Squisher

let (train, test) = try DigitsExperiment.split(seed: 0)
let model = DigitsExperiment.mlp(hidden: [64], seed: 0)
let adam = try Adam(parameters: model.namedParameters, learningRate: 1e-3)

// A hook-accumulated EMA of squared mini-batch gradients (works with any optimizer, SGD too).
let accumulator = try SquaredGradientAccumulator(rule: .ema(beta2: 0.999), scaling: .datasetSize(train.count))
let handle = accumulator.attach(to: adam)

try Trainer.train(model: model, optimizer: adam, data: train, configuration: TrainingConfiguration(epochs: 20, batchSize: 32))
handle.remove()

let hooked = try accumulator.estimate(model: model, data: nil)
let recycled = try Squisher(optimizer: adam, scaling: .datasetSize(train.count)).estimate(model: model, data: nil)
let fisher = try EmpiricalFisher().estimate(model: model, data: train)

print("test accuracy:", try Trainer.evaluate(model: model, data: test).accuracy)
print("hooked EMA equals Adam's exp_avg_sq:", hooked.values == recycled.values)
let agreement = try AgreementReport(fisher, recycled)
print(String(format: "Fisher vs Squisher: Pearson %.3f, Spearman %.3f; Fisher cost %.3f s, Squisher cost %.3f s",
             agreement.overall.pearson, agreement.overall.spearman, fisher.cost.seconds, recycled.cost.seconds))
