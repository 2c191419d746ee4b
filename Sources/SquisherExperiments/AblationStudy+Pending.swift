import SquisherTraining

extension AblationStudy {
    static func task2vec(size: ExperimentSize, seeds: [UInt64], estimators: [AblationEstimator], progress: ProgressReporter) throws -> ([ResultTable], [(String, String)]) {
        let result = try Task2VecExperiment.run(size: size, seeds: seeds, estimators: estimators, progress: progress)
        var plots: [(String, String)] = []
        // Heat maps: the Fisher, the Squisher and every user's estimator.
        for choice in [AblationEstimator.empiricalFisher, .squisher] + estimators.filter({ !$0.isBuiltIn && !$0.isBaseline }) {
            guard let matrix = result.meanDistances(choice) else { continue }
            plots.append(("task2vec_distances_\(choice.slug).svg",
                          SVGPlot.heatMap(title: "Task2Vec distances, \(choice.displayName)", labels: result.taskNames, matrix: matrix)))
        }
        return (result.tables(), plots)
    }

    static func ewc(size: ExperimentSize, seeds: [UInt64], estimators: [AblationEstimator], progress: ProgressReporter) throws -> ([ResultTable], [(String, String)]) {
        let result = try EWCExperiment.run(size: size, seeds: seeds, estimators: estimators, progress: progress)
        // Accuracy on each task over time: one panel per method, one line per task.
        var plots: [(String, String)] = []
        for variant in result.main {
            let matrix = variant.meanTestAccuracy  // [stage][task]
            guard !matrix.isEmpty else { continue }
            let stages = matrix.indices.map(Double.init)
            let series = matrix[0].indices.map { task in
                SVGPlot.Series(label: "task \(task + 1)", points: matrix.indices.filter { $0 >= task }.map { (stages[$0] + 1, 100 * matrix[$0][task]) })
            }
            let slug = "\(variant.importance)".lowercased().filter { $0.isASCII && ($0.isLetter || $0.isNumber) }
            plots.append(("ewc_accuracy_over_time_\(slug).svg", SVGPlot.lines(
                title: "EWC, \(variant.importance) (λ = \(variant.lambda))", xLabel: "after training task", yLabel: "test accuracy (%)",
                xTicks: stages.map { ($0 + 1, "\(Int($0) + 1)") }, series: series)))
        }
        return (result.tables(), plots)
    }
}
