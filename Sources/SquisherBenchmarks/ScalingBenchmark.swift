import Foundation
import Squisher

/// How each estimator's time and memory grow with N, batch size and width (`squisher-bench scaling`).
enum ScalingBenchmark {
    static func run(arguments: [String]) throws -> Int32 { 0 }
}
