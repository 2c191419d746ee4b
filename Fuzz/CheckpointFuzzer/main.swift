// libFuzzer driver for SquisherCheckpoints. Not part of the package build; Fuzz/run.sh compiles it
// together with the module sources and the shared format targets of the replay test
// (Tests/SquisherCheckpointsTests/Fuzzing):
//   swiftc -sanitize=fuzzer,address -parse-as-library ...
// SQUISHER_FUZZ_TARGET picks the parser: `torch` (default: the zip container and the restricted
// unpickler) or a FuzzFormatTarget name (deepspeed-model, deepspeed-optim, dcp-metadata, bnb,
// adafactor, hf-config), which needs SQUISHER_FUZZ_FORMATS = the fixtures folder (Resources/formats).
// Every input must end in a value or a thrown CheckpointError; a trap, sanitizer report, leak,
// timeout or out-of-memory is a bug.
import Foundation

/// The parser under test, from the environment (read once).
nonisolated(unsafe) let formatTarget: FuzzFormatTarget? = {
    let name = ProcessInfo.processInfo.environment["SQUISHER_FUZZ_TARGET"] ?? "torch"
    if name == "torch" { return nil }
    guard let target = FuzzFormatTarget(rawValue: name) else {
        fatalError("unknown SQUISHER_FUZZ_TARGET '\(name)'; expected torch or one of \(FuzzFormatTarget.allCases.map(\.rawValue))")
    }
    return target
}()

/// Scratch copies of the fixtures for the format targets.
nonisolated(unsafe) let workspace: FuzzWorkspace = {
    guard let formats = ProcessInfo.processInfo.environment["SQUISHER_FUZZ_FORMATS"] else {
        fatalError("SQUISHER_FUZZ_FORMATS must name Tests/SquisherCheckpointsTests/Resources/formats")
    }
    return FuzzWorkspace(formats: URL(fileURLWithPath: formats))
}()

/// Limits low enough that one input cannot use much memory or time.
let fuzzLimits = PickleLimits(maxNestingDepth: 100, maxStackSize: 100_000, maxMemoSize: 100_000, maxTotalElements: 200_000, maxTensorScalars: 1 << 20)

/// Feeds one input to both parsers and to the typed interpreters of their results.
func exercise(_ data: Data) {
    // 1. As a whole torch.save file: zip container, then data.pkl and storages.
    if let value = try? TorchCheckpoint.load(data: data, path: "fuzz.pt", limits: fuzzLimits) {
        interpret(value)
    }
    // 2. As a bare pickle; storages are zero bytes of the declared size (bounded).
    let pickleValue = try? RestrictedUnpickler.decode(data, path: "fuzz.pkl", limits: fuzzLimits) { reference throws(CheckpointError) in
        let (bytes, overflow) = reference.elementCount.multipliedReportingOverflow(by: reference.dtype.byteCount)
        guard !overflow, bytes <= 1 << 20 else { throw CheckpointError(path: "fuzz.pkl", problem: "storage too large for fuzzing") }
        return Data(count: bytes)
    }
    if let pickleValue { interpret(pickleValue) }
}

func interpret(_ value: PickleValue) {
    _ = try? TorchStateDict(value, path: "fuzz")
    if let state = try? TorchOptimizerState(value, path: "fuzz") {
        let order = state.parameterIndices.map { ModelTensorShape(name: "p\($0)", shape: state.states[$0]?.buffers.values.first?.shape ?? []) }
        _ = try? state.byName(modelOrder: order, path: "fuzz")
        _ = try? state.byName(path: "fuzz")
    }
}

/// Prepares the format target's scratch folders before the first input.
@_cdecl("LLVMFuzzerInitialize")
public func fuzzInitialize(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>) -> CInt {
    guard let formatTarget else { return 0 }
    do { try workspace.prepare(formatTarget) } catch { fatalError("cannot prepare the fixtures of \(formatTarget.rawValue): \(error)") }
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTestOneInput(_ bytes: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    let data = Data(bytes: bytes, count: count)
    guard let formatTarget else {
        exercise(data)
        return 0
    }
    do {
        _ = try workspace.run(data, target: formatTarget)
    } catch {
        fatalError("harness failure (not a parser finding): \(error)")  // scratch files, not the input
    }
    return 0
}
