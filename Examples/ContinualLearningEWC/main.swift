// EWC on split digits with the Squisher (N·v) as the importance: two tasks, one shared 10-way head.
//   swift run -c release ContinualLearningEWC
import Squisher

let (train, test) = try DigitsExperiment.split(seed: 0)
let tasks = [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
for lambda in [0.0, 100.0] {
    let model = DigitsExperiment.mlp(hidden: [100], seed: 0)
    let ewc = try ElasticWeightConsolidation(lambda: lambda)
    for (index, task) in tasks.enumerated() {
        let data = try DigitsExperiment.samples(of: task, in: train)
        let adam = try Adam(parameters: model.namedParameters)
        try Trainer.train(model: model, optimizer: adam, data: data, configuration: TrainingConfiguration(epochs: 10, seed: UInt64(index)), regularizers: [ewc])
        let squisher = try Squisher(optimizer: adam, scaling: .datasetSize(data.count)).estimate(model: model, data: nil)
        try ewc.consolidate(importance: squisher, anchor: model.stateDict())
    }
    let first = try Trainer.evaluate(model: model, data: DigitsExperiment.samples(of: tasks[0], in: test)).accuracy
    print(String(format: "lambda %g: accuracy on the first task after learning the second %.2f%%", lambda, 100 * first))
}
