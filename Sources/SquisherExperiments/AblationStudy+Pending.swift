import SquisherTraining

extension AblationStudy {
    static func task2vec(size: ExperimentSize, seeds: [UInt64], estimators: [EstimatorChoice], progress: ProgressReporter) throws -> ([ResultTable], [(String, String)]) {
        ([], [])
    }

    static func ewc(size: ExperimentSize, seeds: [UInt64], estimators: [EstimatorChoice], progress: ProgressReporter) throws -> ([ResultTable], [(String, String)]) {
        ([], [])
    }
}
