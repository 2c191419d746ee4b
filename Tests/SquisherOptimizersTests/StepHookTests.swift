import SquisherLayers
import SquisherOptimizers
import SquisherTensor
import Testing

/// The step-hook protocol: what pre- and post-step hooks see, how they change the update, and
/// how they are removed. Exact comparisons: the values hooks see are the very tensors the
/// optimizer holds or computes, not recomputations.
@Suite("Optimizer step hooks")
struct StepHookTests {
    /// Two parameters with fixed values and seeded gradients.
    func makeModel(seed: UInt64) -> (parameters: [(name: String, parameter: Parameter)], gradients: NamedTensors) {
        var generator = SplitMix64(seed: seed)
        let parameters = makeParameters([
            ("layer.weight", Tensor.normal(shape: [3, 2], using: &generator)),
            ("layer.bias", Tensor.normal(shape: [3], using: &generator)),
        ])
        return (parameters, randomGradients(for: parameters, using: &generator))
    }

    @Test func preHookSeesStepBatchGradientsParametersAndStateBefore() throws {
        let (parameters, gradients) = makeModel(seed: 1)
        let adam = try Adam(parameters: parameters, learningRate: 0.01)
        var preEvents: [StepEvent] = []
        var postEvents: [StepEvent] = []
        var statesBefore: [OptimizerState] = [], parametersBefore: [NamedTensors] = []
        adam.registerStepPreHook { preEvents.append($0) }
        adam.registerStepPostHook { postEvents.append($0) }
        for batchSize in [16, 8] {
            try setGradients(parameters, gradients)
            statesBefore.append(adam.state)
            parametersBefore.append(adam.currentParameters())
            try adam.step(batchSize: batchSize)
        }
        #expect(preEvents.map(\.step) == [1, 2])
        #expect(postEvents.map(\.step) == [1, 2])
        #expect(preEvents.map(\.batchSize) == [16, 8])
        #expect(postEvents.map(\.batchSize) == [16, 8])
        for (index, event) in preEvents.enumerated() {
            #expect(event.gradients == gradients)
            #expect(event.parameters == parametersBefore[index])
            #expect(event.state == statesBefore[index])
        }
        // Before the first step Adam has no state; before the second it has step 1's moments.
        #expect(preEvents[0].state.steps.isEmpty)
        #expect(preEvents[1].state.buffer("exp_avg_sq", for: "layer.bias") == postEvents[0].state.buffer("exp_avg_sq", for: "layer.bias"))
    }

    @Test func postHookSeesParametersAfterAndTheNewState() throws {
        let (parameters, gradients) = makeModel(seed: 2)
        let adam = try Adam(parameters: parameters, learningRate: 0.01)
        var post: StepEvent?
        adam.registerStepPostHook { post = $0 }
        try setGradients(parameters, gradients)
        let before = adam.currentParameters()
        try adam.step(batchSize: 4)
        let event = try #require(post)
        #expect(event.parameters == adam.currentParameters())
        #expect(event.parameters != before)
        #expect(event.state == adam.state)
        #expect(event.gradients == gradients)
        // After step 1 from zero state, exp_avg_sq = (1 − β₂)·g² exactly as PyTorch rounds it:
        // fma(float32(1 − 0.999)·g, g, 0·β₂).
        let g = try gradients.tensor(named: "layer.weight")
        let expected = g.map { (Float(1 - 0.999) * $0) * $0 }
        #expect(event.state.buffer("exp_avg_sq", for: "layer.weight") == expected)
        #expect(event.state.steps["layer.weight"] == 1)
    }

    @Test func preHookZeroingAGradientChangesTheUpdate() throws {
        let (parameters, gradients) = makeModel(seed: 3)
        let sgd = try SGD(parameters: parameters, learningRate: 0.5)
        sgd.registerStepPreHook { event in
            event.gradients["layer.bias"] = Tensor(zeros: [3])
        }
        var seenByPost: NamedTensors?
        sgd.registerStepPostHook { seenByPost = $0.gradients }
        try setGradients(parameters, gradients)
        let before = sgd.currentParameters()
        try sgd.step(batchSize: 1)
        // The zeroed gradient leaves the bias unchanged; the weight moves by −lr·g.
        #expect(parameters[1].parameter.value == before["layer.bias"])
        let expectedWeight = try before.tensor(named: "layer.weight").zipWith(gradients.tensor(named: "layer.weight"), "sgd") { $0 - 0.5 * $1 }
        #expect(parameters[0].parameter.value == expectedWeight)
        // The modified gradient is what the update used, what post hooks see and what the parameter holds.
        #expect(seenByPost?["layer.bias"] == Tensor(zeros: [3]))
        #expect(parameters[1].parameter.gradient == Tensor(zeros: [3]))
    }

    final class CountingObserver: StepObserver {
        var willStep = 0, didStep = 0
        func optimizerWillStep(_ event: inout StepEvent) { willStep += 1 }
        func optimizerDidStep(_ event: StepEvent) { didStep += 1 }
    }

    /// Implements only the post-step method: the pre-step default must be a no-op.
    final class PostOnlyObserver: StepObserver {
        var steps: [Int] = []
        func optimizerDidStep(_ event: StepEvent) { steps.append(event.step) }
    }

    @Test func removingHandlesStopsCalls() throws {
        let (parameters, gradients) = makeModel(seed: 4)
        let sgd = try SGD(parameters: parameters, learningRate: 0.1, momentum: 0.9)
        var preCalls = 0, postCalls = 0
        let pre = sgd.registerStepPreHook { _ in preCalls += 1 }
        let post = sgd.registerStepPostHook { _ in postCalls += 1 }
        let observer = CountingObserver(), postOnly = PostOnlyObserver()
        let observerHandle = sgd.register(observer)
        sgd.register(postOnly)
        func step() throws {
            try setGradients(parameters, gradients)
            try sgd.step(batchSize: 2)
        }
        try step()
        #expect((preCalls, postCalls, observer.willStep, observer.didStep) == (1, 1, 1, 1))
        pre.remove()
        try step()
        #expect((preCalls, postCalls) == (1, 2))
        post.remove()
        post.remove()  // removing twice is harmless
        observerHandle.remove()
        try step()
        #expect((preCalls, postCalls, observer.willStep, observer.didStep) == (1, 2, 2, 2))
        #expect(postOnly.steps == [1, 2, 3])
        #expect(!sgd.hooks.isEmpty)  // postOnly is still registered
    }

    @Test func frozenParameterIsSkipped() throws {
        let (parameters, gradients) = makeModel(seed: 5)
        parameters[1].parameter.requiresGradient = false
        let adam = try Adam(parameters: parameters, learningRate: 0.1)
        var preGradients: NamedTensors?, postParameters: NamedTensors?
        adam.registerStepPreHook { preGradients = $0.gradients }
        adam.registerStepPostHook { postParameters = $0.parameters }
        try setGradients(parameters, gradients)
        // A NaN gradient on the frozen parameter is ignored: it is not part of the step.
        parameters[1].parameter.gradient = Tensor(repeating: .nan, shape: [3])
        let frozenBefore = parameters[1].parameter.value, weightBefore = parameters[0].parameter.value
        try adam.step(batchSize: 1)
        #expect(preGradients?.names == ["layer.weight"])
        #expect(parameters[1].parameter.value == frozenBefore)
        #expect(postParameters?["layer.bias"] == frozenBefore)  // events still show every parameter
        #expect(postParameters?["layer.weight"] != weightBefore)  // the trainable one moved
        let state = adam.state
        #expect(state.steps.keys.sorted() == ["layer.weight"])
        #expect(state.buffer("exp_avg", for: "layer.bias") == nil)
    }

    @Test(arguments: [Float.nan, .infinity])
    func nonFiniteGradientThrowsNamingTheParameter(_ bad: Float) throws {
        let (parameters, gradients) = makeModel(seed: 6)
        let adam = try Adam(parameters: parameters)
        try setGradients(parameters, gradients)
        var scalars = gradients["layer.bias"]!.scalars
        scalars[1] = bad
        parameters[1].parameter.gradient = Tensor(uncheckedShape: [3], scalars: scalars)
        let before = adam.currentParameters()
        let argument = invalidArgumentName { try adam.step(batchSize: 1) }
        #expect(argument?.contains("layer.bias") == true, "error was \(String(describing: argument))")
        // Nothing was updated and no step was counted.
        #expect(adam.currentParameters() == before)
        #expect(adam.stepCount == 0)
        #expect(adam.state.steps.isEmpty)
    }

    @Test func preHookIntroducingNaNOrAWrongShapeThrows() throws {
        let (parameters, gradients) = makeModel(seed: 7)
        let sgd = try SGD(parameters: parameters, learningRate: 0.1)
        let handle = sgd.registerStepPreHook { $0.gradients["layer.weight"] = Tensor(repeating: .nan, shape: [3, 2]) }
        try setGradients(parameters, gradients)
        #expect(invalidArgumentName { try sgd.step(batchSize: 1) }?.contains("layer.weight") == true)
        handle.remove()
        sgd.registerStepPreHook { $0.gradients["layer.bias"] = Tensor(zeros: [4]) }
        try setGradients(parameters, gradients)
        #expect(invalidArgumentName { try sgd.step(batchSize: 1) }?.contains("layer.bias") == true)
    }
}
