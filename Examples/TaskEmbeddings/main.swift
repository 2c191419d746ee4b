// Task2Vec with the Squisher: embed tasks by the fine-tuning run's Adam v and compare them.
//   swift run -c release TaskEmbeddings
import Squisher

let (train, _) = try DigitsExperiment.split(seed: 0)
let tasks: [(String, [Int])] = [("0-2", [0, 1, 2]), ("0,1,3", [0, 1, 3]), ("6-8", [6, 7, 8]), ("7-9", [7, 8, 9])]
var embeddings: [[Double]] = []
let task2vec = Task2Vec(grouping: .perOutputUnit, skippedParameters: ["2.weight", "2.bias"])
for (index, (_, classes)) in tasks.enumerated() {
    let model = DigitsExperiment.mlp(hidden: [32], seed: 7)  // the same probe initialization for every task
    let adam = try Adam(parameters: model.namedParameters)
    let data = try DigitsExperiment.samples(of: classes, in: train)
    try Trainer.train(model: model, optimizer: adam, data: data, configuration: TrainingConfiguration(epochs: 5, seed: UInt64(index)))
    embeddings.append(try task2vec.embedding(Squisher(optimizer: adam).estimate(model: model, data: nil)))
}
let distances = try Task2Vec.distanceMatrix(embeddings)
for (i, (name, _)) in tasks.enumerated() {
    print(name.padding(toLength: 6, withPad: " ", startingAt: 0), distances[i].map { String(format: "%.3f", $0) }.joined(separator: "  "))
}
