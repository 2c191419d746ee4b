import Foundation
import SquisherCheckpoints
import SquisherIO
import SquisherTensor
import Testing

/// Reading PyTorch's own files must reproduce PyTorch's tensors exactly: the reader copies float32
/// bytes, so the tolerance is zero (bit patterns compared).
@Suite("PyTorch checkpoint fixtures")
struct FixtureTests {
    static let models = ["mlp_digits", "tinylm_adam"]

    @Test("model.pt equals model.safetensors bit for bit, in registration order", arguments: models)
    func modelStateDict(model: String) throws {
        let stateDict = try TorchStateDict(contentsOf: Fixture.url("\(model).model.pt"))
        let reference = try SafeTensorsFile(contentsOf: Fixture.url("\(model).model.safetensors"))
        #expect(Set(stateDict.tensors.names) == Set(reference.names))
        for name in reference.names {
            let expected = try reference.tensor(name)
            let actual = try #require(stateDict.tensors[name])
            #expect(actual.shape == expected.shape, "\(name)")
            #expect(actual.scalars.map(\.bitPattern) == expected.scalars.map(\.bitPattern), "\(name) differs")
            #expect(stateDict.dtypes[name] == .float32)
        }
        let expectedOrder = model == "mlp_digits"
            ? ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
            : ["unused", "embed.weight", "norm.weight", "norm.bias", "head.weight", "head.bias"]
        #expect(stateDict.tensors.names == expectedOrder)
    }

    @Test("optimizer.pt tensors equal the expected safetensors bit for bit", arguments: models)
    func optimizerTensors(model: String) throws {
        let state = try TorchOptimizerState(contentsOf: Fixture.url("\(model).optimizer.pt"))
        let reference = try SafeTensorsFile(contentsOf: Fixture.url("\(model).optimizer.expected.safetensors"))
        var seen = 0
        for key in reference.names {
            let parts = key.split(separator: "/")
            let index = try #require(Int(parts[1])), name = String(parts[2])
            let parameter = try #require(state.states[index], "no state for \(index)")
            let expected = try reference.tensor(key)
            if name == "step" {
                #expect(parameter.step == Double(expected.scalars[0]))
            } else {
                let actual = try #require(parameter.buffers[name], "\(key) missing")
                #expect(actual.shape == expected.shape, "\(key)")
                #expect(actual.tensor.scalars.map(\.bitPattern) == expected.scalars.map(\.bitPattern), "\(key) differs")
                #expect(actual.dtype == .float32)
            }
            seen += 1
        }
        let bufferCount = state.states.values.reduce(0) { $0 + $1.buffers.count + ($1.step == nil ? 0 : 1) }
        #expect(seen == bufferCount)
        #expect(state.kind == .adam)
        let steps = Set(state.states.values.compactMap(\.step))
        #expect(steps == [model == "mlp_digits" ? 100 : 5])
    }

    @Test("param_groups equal the expected JSON", arguments: models)
    func parameterGroups(model: String) throws {
        let state = try TorchOptimizerState(contentsOf: Fixture.url("\(model).optimizer.pt"))
        let expected = try Fixture.json("\(model).optimizer.expected.json")["param_groups"] as! [[String: Any]]
        #expect(state.groups.count == expected.count)
        for (group, reference) in zip(state.groups, expected) {
            #expect(group.parameterIndices == reference["params"] as! [Int])
            #expect(group.learningRate == (reference["lr"] as! NSNumber).doubleValue)
            #expect(group.eps == (reference["eps"] as! NSNumber).doubleValue)
            #expect(group.weightDecay == (reference["weight_decay"] as! NSNumber).doubleValue)
            let betas = try #require(group.betas)
            #expect([betas.0, betas.1] == (reference["betas"] as! [NSNumber]).map(\.doubleValue))
            #expect(group.amsgrad == false)
            #expect(group.decoupledWeightDecay == false)
            #expect(group.hyperparameters[.string("fused")] == PickleValue.none)
        }
        if model == "tinylm_adam" {
            #expect(state.groups.map(\.learningRate) == [0.003, 0.003])
            #expect(state.groups.map(\.weightDecay) == [0.01, 0.0])
            // 'weight_decay' is a float in both groups here, an int 0 in mlp_digits (default).
            #expect(state.groups[1].hyperparameters[.string("weight_decay")] == .float(0.0))
        } else {
            #expect(state.groups[0].hyperparameters[.string("weight_decay")] == .int(0))
        }
    }

    @Test("mlp_digits: the model order from model.pt maps indices to the expected names")
    func mlpMapping() throws {
        let state = try TorchOptimizerState(contentsOf: Fixture.url("mlp_digits.optimizer.pt"))
        let model = try TorchStateDict(contentsOf: Fixture.url("mlp_digits.model.pt"))
        let mapping = try OptimizerParameterMapping.resolve(state, modelOrder: model.order, path: "mlp_digits.optimizer.pt")
        let expected = try Fixture.json("mlp_digits.optimizer.expected.json")["param_index_to_model_name"] as! [String: String]
        #expect(mapping.source == .modelOrder)
        #expect(mapping.names == Dictionary(uniqueKeysWithValues: expected.map { (Int($0.key)!, $0.value) }))

        let byName = OptimizerStateByName(state, mapping: mapping)
        let reference = try SafeTensorsFile(contentsOf: Fixture.url("mlp_digits.optimizer.expected.safetensors"))
        for (index, name) in mapping.names {
            let actual = try #require(byName.buffers["exp_avg_sq"]?[name])
            #expect(actual.scalars.map(\.bitPattern) == (try reference.tensor("state/\(index)/exp_avg_sq")).scalars.map(\.bitPattern))
            #expect(byName.steps[name] == 100)
        }
        #expect(byName.parameterNames == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"])
        #expect(byName.parametersWithoutState.isEmpty)
        #expect(byName.kind == .adam)
    }

    @Test("mlp_digits: a safetensors (name-sorted) order is refused, not guessed")
    func safetensorsOrderRefused() throws {
        let state = try TorchOptimizerState(contentsOf: Fixture.url("mlp_digits.optimizer.pt"))
        let file = try SafeTensorsFile(contentsOf: Fixture.url("mlp_digits.model.safetensors"))
        let sortedOrder = file.names.map { ModelTensorShape(name: $0, shape: file.entries[$0]!.shape) }
        expectError("no assignment", "mapping file") {
            _ = try OptimizerParameterMapping.resolve(state, modelOrder: sortedOrder, path: "mlp_digits.optimizer.pt")
        }
        expectError("safetensors", "model order") {
            _ = try OptimizerParameterMapping.resolve(state, path: "mlp_digits.optimizer.pt")
        }
    }

    @Test("tinylm: model order cannot decide (unused first in the model, last in the optimizer); the mapping file can")
    func tinylmMapping() throws {
        let state = try TorchOptimizerState(contentsOf: Fixture.url("tinylm_adam.optimizer.pt"))
        let model = try TorchStateDict(contentsOf: Fixture.url("tinylm_adam.model.pt"))
        expectError("cannot map", "mapping file") {
            _ = try OptimizerParameterMapping.resolve(state, modelOrder: model.order, path: "tinylm_adam.optimizer.pt")
        }
        let explicit = try OptimizerParameterMapping.readMappingFile(Fixture.url("tinylm_adam.optimizer.expected.json"))
        let byName = try state.byName(modelOrder: model.order, explicit: explicit, path: "tinylm_adam.optimizer.pt")
        #expect(byName.nameSource == .explicitMapping)
        #expect(byName.parameterNames == ["embed.weight", "head.weight", "norm.weight", "norm.bias", "head.bias", "unused"])
        #expect(byName.parametersWithoutState == ["unused"])
        #expect(byName.buffers["exp_avg"]?["unused"] == nil)
        #expect(byName.steps["unused"] == nil)
        #expect(byName.groupOfParameter["embed.weight"] == 0 && byName.groupOfParameter["unused"] == 1)
        #expect(byName.groups[0].parameterNames == ["embed.weight", "head.weight"])
        let reference = try SafeTensorsFile(contentsOf: Fixture.url("tinylm_adam.optimizer.expected.safetensors"))
        for (index, name) in explicit where name != "unused" {
            for buffer in ["exp_avg", "exp_avg_sq"] {
                let actual = try #require(byName.buffers[buffer]?[name])
                #expect(actual.scalars.map(\.bitPattern) == (try reference.tensor("state/\(index)/\(buffer)")).scalars.map(\.bitPattern))
            }
            #expect(byName.steps[name] == 5)
        }
        // A mapping with a wrong shape is refused.
        var swapped = explicit
        swapped[2] = "head.bias"
        swapped[4] = "norm.weight"
        expectError("index 2", "head.bias") {
            _ = try OptimizerParameterMapping.resolve(state, modelOrder: model.order, explicit: swapped, path: "x")
        }
    }

    @Test("The generic loader returns the raw structure: ints as state keys, OrderedDict hooks, tuple betas")
    func rawStructure() throws {
        let value = try TorchCheckpoint.load(Fixture.url("tinylm_adam.optimizer.pt"))
        let state = try #require(value["state"]?.dictionaryValue)
        #expect(state.keys == [.int(0), .int(1), .int(2), .int(3), .int(4)])
        #expect(value["param_groups"]?.elements?.first?["betas"] == .tuple([.float(0.9), .float(0.999)]))
        let step = try #require(state[.int(0)]?["step"]?.tensorValue)
        #expect(step.shape == [] && step.tensor.scalars == [5])
        let model = try TorchCheckpoint.load(Fixture.url("tinylm_adam.model.pt"))
        #expect(model.dictionaryValue?.isOrderedDict == true)
    }
}
