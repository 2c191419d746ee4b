import Foundation
import SquisherCheckpoints
import SquisherTensor
import Testing

/// Index-to-name resolution on hand-built optimizer states whose right answer is known by construction.
@Suite("Optimizer index to name mapping")
struct MappingTests {
    /// An Adam-style state dict: one entry per (index, shape) with state, groups of indices, optional names.
    func adamState(shapes: [Int: [Int]], groups: [[Int]], names: [[String]]? = nil, weightDecays: [Double]? = nil) throws -> TorchOptimizerState {
        var state = PickleDictionary()
        for (index, shape) in shapes.sorted(by: { $0.key < $1.key }) {
            var entry = PickleDictionary()
            let zeros = TorchTensor(tensor: Tensor(zeros: shape), dtype: .float32)
            entry[.string("step")] = .tensor(TorchTensor(tensor: Tensor(scalar: 3), dtype: .float32))
            entry[.string("exp_avg")] = .tensor(zeros)
            entry[.string("exp_avg_sq")] = .tensor(zeros)
            state[.int(index)] = .dict(entry)
        }
        var groupValues: [PickleValue] = []
        for (number, indices) in groups.enumerated() {
            var group = PickleDictionary()
            group[.string("lr")] = .float(0.001)
            group[.string("weight_decay")] = .float(weightDecays?[number] ?? 0)
            group[.string("amsgrad")] = .bool(false)
            group[.string("decoupled_weight_decay")] = .bool(true)
            group[.string("params")] = .list(indices.map { .int($0) })
            if let names { group[.string("param_names")] = .list(names[number].map { .string($0) }) }
            groupValues.append(.dict(group))
        }
        var top = PickleDictionary()
        top[.string("state")] = .dict(state)
        top[.string("param_groups")] = .list(groupValues)
        return try TorchOptimizerState(.dict(top), path: "synthetic.pt")
    }

    let model = [
        ModelTensorShape(name: "a.weight", shape: [4, 3]), ModelTensorShape(name: "a.bias", shape: [4]),
        ModelTensorShape(name: "b.weight", shape: [2, 4]), ModelTensorShape(name: "b.bias", shape: [2]),
    ]

    @Test func huggingFaceStyleGroupsResolvedByShapes() throws {
        // Trainer's split: group 0 = weights (decayed), group 1 = biases, each in model order.
        let state = try adamState(shapes: [0: [4, 3], 1: [2, 4], 2: [4], 3: [2]], groups: [[0, 1], [2, 3]], weightDecays: [0.01, 0])
        #expect(state.kind == .adamW)
        let mapping = try OptimizerParameterMapping.resolve(state, modelOrder: model, path: "s")
        #expect(mapping.names == [0: "a.weight", 1: "b.weight", 2: "a.bias", 3: "b.bias"])
        #expect(mapping.source == .modelOrder)
    }

    @Test func sameShapesAreAmbiguous() throws {
        let square = (0..<4).map { ModelTensorShape(name: "layer\($0).weight", shape: [3, 3]) }
        let state = try adamState(shapes: [0: [3, 3], 1: [3, 3], 2: [3, 3], 3: [3, 3]], groups: [[0, 1], [2, 3]])
        expectError("ambiguous", "mapping file") { _ = try OptimizerParameterMapping.resolve(state, modelOrder: square, path: "s") }
        // One group cannot be ambiguous: the order is the model order.
        let single = try adamState(shapes: [0: [3, 3], 1: [3, 3], 2: [3, 3], 3: [3, 3]], groups: [[0, 1, 2, 3]])
        #expect(try OptimizerParameterMapping.resolve(single, modelOrder: square, path: "s").names[3] == "layer3.weight")
    }

    @Test func countMismatchMentionsBuffers() throws {
        let state = try adamState(shapes: [0: [4, 3], 1: [4]], groups: [[0, 1]])
        expectError("2 parameters", "4 tensors", "buffers") { _ = try OptimizerParameterMapping.resolve(state, modelOrder: model, path: "s") }
    }

    @Test func storedParameterNamesAreUsedAndChecked() throws {
        let state = try adamState(shapes: [0: [4, 3], 1: [4], 2: [2, 4], 3: [2]], groups: [[0, 1, 2, 3]],
                                  names: [["a.weight", "a.bias", "b.weight", "b.bias"]])
        let mapping = try OptimizerParameterMapping.resolve(state, path: "s")
        #expect(mapping.source == .storedNames && mapping.names[2] == "b.weight")
        let wrong = try adamState(shapes: [0: [4, 3], 1: [4], 2: [2, 4], 3: [2]], groups: [[0, 1, 2, 3]],
                                  names: [["a.bias", "a.weight", "b.weight", "b.bias"]])
        expectError("stored param_names", "index 0") { _ = try OptimizerParameterMapping.resolve(wrong, modelOrder: model, path: "s") }
    }

    @Test func explicitMappingMustBeComplete() throws {
        let state = try adamState(shapes: [0: [4, 3], 1: [4]], groups: [[0, 1, 2]])
        expectError("no name for optimizer index 2") {
            _ = try OptimizerParameterMapping.resolve(state, explicit: [0: "a.weight", 1: "a.bias"], path: "s")
        }
        expectError("both index 0 and index 1") {
            _ = try OptimizerParameterMapping.resolve(state, explicit: [0: "x", 1: "x", 2: "y"], path: "s")
        }
        let byName = try state.byName(explicit: [0: "a.weight", 1: "a.bias", 2: "frozen"], path: "s")
        #expect(byName.parametersWithoutState == ["frozen"])
        #expect(byName.buffers["exp_avg_sq"]?.names == ["a.weight", "a.bias"])
    }
}
