// One import for users: `import Squisher` brings every Squisher module.
@_exported import SquisherTensor
@_exported import SquisherIO
@_exported import SquisherLayers
@_exported import SquisherOptimizers
@_exported import SquisherData
@_exported import SquisherTraining
@_exported import SquisherEstimators
@_exported import SquisherModels
@_exported import SquisherCheckpoints
@_exported import SquisherCheckpointIO
@_exported import SquisherApplications
@_exported import SquisherExperiments
