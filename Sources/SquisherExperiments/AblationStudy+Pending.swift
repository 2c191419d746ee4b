import SquisherTraining

extension AblationStudy {
    static func task2vec(size: ExperimentSize, seeds: [UInt64], estimators: [EstimatorChoice], progress: ProgressReporter) throws -> ([ResultTable], [(String, String)]) {
        let result = try Task2VecExperiment.run(size: size, seeds: seeds, estimators: estimators, progress: progress)
        var plots: [(String, String)] = []
        for choice in [EstimatorChoice.empiricalFisher, .squisher] {
            guard let matrix = result.meanDistances(choice) else { continue }
            plots.append(("task2vec_distances_\(choice.rawValue).svg",
                          SVGPlot.heatMap(title: "Task2Vec distances, \(choice.displayName)", labels: result.taskNames, matrix: matrix)))
        }
        return (result.tables(), plots)
    }

    static func ewc(size: ExperimentSize, seeds: [UInt64], estimators: [EstimatorChoice], progress: ProgressReporter) throws -> ([ResultTable], [(String, String)]) {
        ([], [])
    }
}
