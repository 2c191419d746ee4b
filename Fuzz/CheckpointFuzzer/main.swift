// libFuzzer driver for SquisherCheckpoints: the zip container reader and the restricted unpickler.
// Not part of the package build; Fuzz/run.sh compiles it together with the module sources:
//   swiftc -sanitize=fuzzer,address -parse-as-library ...
// Every input must end in a value or a thrown CheckpointError; a trap, sanitizer report, leak,
// timeout or out-of-memory is a bug.
import Foundation

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

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTestOneInput(_ bytes: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    exercise(Data(bytes: bytes, count: count))
    return 0
}
