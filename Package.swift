// swift-tools-version: 6.1
// Squisher: the diagonal Fisher information of a neural network, "for free".
import PackageDescription

/// Library modules by role; each entry is (name, dependencies). The import graph points one way:
/// tensor core <- layers <- optimizers <- estimators <- checkpoint files <- applications <- command-line tool.
let libraries: [(name: String, dependencies: [String])] = [
    ("SquisherTensor", ["CSquisherKernels"]),
    ("SquisherIO", ["SquisherTensor"]),
    ("SquisherLayers", ["SquisherTensor"]),
    ("SquisherOptimizers", ["SquisherLayers"]),
    ("SquisherData", ["SquisherIO"]),
    ("SquisherTraining", ["SquisherOptimizers", "SquisherData"]),
    ("SquisherEstimators", ["SquisherTraining", "SquisherIO"]),
    ("SquisherCheckpoints", ["SquisherIO"]),
    ("SquisherModels", ["SquisherLayers", "SquisherData"]),
    ("SquisherCheckpointIO", ["SquisherEstimators", "SquisherCheckpoints"]),
    ("SquisherApplications", ["SquisherCheckpointIO"]),
    ("SquisherExperiments", ["SquisherApplications"]),
]
let umbrella = "Squisher"

/// Test targets: (name, module under test and helpers, bundles test resources).
let testTargets: [(name: String, dependencies: [String], resources: Bool)] = [
    ("SquisherTensorTests", ["SquisherTensor"], false),
    ("SquisherIOTests", ["SquisherData", "SquisherTestSupport"], true),
    ("SquisherLayersTests", ["SquisherLayers", "SquisherIO"], true),
    ("SquisherOptimizersTests", ["SquisherOptimizers", "SquisherIO"], true),
    ("SquisherTrainingTests", ["Squisher"], false),
    ("SquisherEstimatorsTests", ["Squisher"], true),
    ("SquisherCheckpointsTests", ["SquisherCheckpoints"], true),
    ("SquisherApplicationsTests", ["Squisher"], false),
    ("SquisherCommandsTests", ["SquisherCommands", "SquisherTestSupport"], true),
    ("SquisherPublicAPITests", ["Squisher"], false),
]

let examples = [
    "TrainWithSquisher", "CustomEstimator", "MergeWithAnyEstimator", "PruneWithSquisher", "ContinualLearningEWC", "TaskEmbeddings",
    "AblateCustomEstimator",
]

let package = Package(
    name: "Squisher",
    products: [
        .library(name: umbrella, targets: [umbrella]),
        .executable(name: "squisher", targets: ["SquisherCLI"]),
        .executable(name: "squisher-bench", targets: ["SquisherBenchmarks"]),
        .plugin(name: "AblatePlugin", targets: ["AblatePlugin"]),
    ] + examples.map { .executable(name: $0, targets: [$0]) },
    targets: [
        .target(name: "CSquisherKernels"),
    ] + libraries.map { library in
        .target(
            name: library.name,
            dependencies: library.dependencies.map { .target(name: $0) },
            exclude: library.name == "SquisherData" ? ["Resources/README.md"] : [],
            resources: library.name == "SquisherData" ? [.copy("Resources/digits.csv")] : nil
        )
    } + [
        .target(name: umbrella, dependencies: libraries.map { .target(name: $0.name) }),
        .target(name: "SquisherCommands", dependencies: [.target(name: umbrella)]),
        .executableTarget(name: "SquisherCLI", dependencies: ["SquisherCommands"]),
        .executableTarget(name: "SquisherBenchmarks", dependencies: [.target(name: umbrella)]),
        // Helpers shared by several test targets (Swift Testing only; no library code).
        .target(name: "SquisherTestSupport", path: "Tests/SquisherTestSupport"),
        .plugin(
            name: "AblatePlugin",
            capability: .command(
                intent: .custom(verb: "ablate", description: "Build squisher in release and run the ablation study on digits"),
                permissions: [.writeToPackageDirectory(reason: "The ablation study writes its report (report.md, CSV, SVG plots) into ./report")])),
    ] + examples.map {
        .executableTarget(name: $0, dependencies: [.target(name: umbrella)], path: "Examples/\($0)")
    } + testTargets.map { test in
        .testTarget(
            name: test.name,
            dependencies: test.dependencies.map { .target(name: $0) },
            resources: test.resources ? [.copy("Resources")] : nil
        )
    }
)
