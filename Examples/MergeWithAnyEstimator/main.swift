// Swapping estimators in a merging script: the same Fisher-merging call with the empirical Fisher,
// the Squisher, or plain averaging.
//   swift run -c release MergeWithAnyEstimator
import Squisher

let (train, test) = try DigitsExperiment.split(seed: 1)
let groups = [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
var models: [NamedTensors] = [], fishers: [Importance] = [], squishers: [Importance] = []
for (index, group) in groups.enumerated() {
    let data = try DigitsExperiment.samples(of: group, in: train)
    let model = DigitsExperiment.mlp(hidden: [64], seed: 1)  // shared initialization
    let adam = try Adam(parameters: model.namedParameters, learningRate: 3e-3)
    try Trainer.train(model: model, optimizer: adam, data: data, configuration: TrainingConfiguration(epochs: 10, seed: UInt64(index)))
    models.append(model.stateDict())
    fishers.append(try EmpiricalFisher().estimate(model: model, data: data))
    squishers.append(try Squisher(optimizer: adam).estimate(model: model, data: nil))  // raw v: ratios only
}

// Score the merged body with each task's own head, within the task's classes.
let probe = DigitsExperiment.mlp(hidden: [64], seed: 1)
@MainActor func score(_ merged: NamedTensors) throws -> Double {
    var total = 0.0
    for (g, group) in groups.enumerated() {
        var state = merged
        for name in ["2.weight", "2.bias"] { state[name] = models[g][name] }
        try probe.load(state)
        let data = try DigitsExperiment.samples(of: group, in: test)
        let logits = try probe(data.inputs)
        total += Double((0..<data.count).filter { row in group.max { logits[row, $0] < logits[row, $1] }! == data.labels[row] }.count) / Double(data.count)
    }
    return total / Double(groups.count)
}

for (label, importances) in [("empirical Fisher", fishers), ("Squisher", squishers)] {
    let merged = try FisherMerging().merge(models: models, importances: importances).parameters
    print(label, String(format: "%.2f%%", 100 * (try score(merged))))
}
print("averaging", String(format: "%.2f%%", 100 * (try score(ParameterAveraging.merge(models: models)))))
