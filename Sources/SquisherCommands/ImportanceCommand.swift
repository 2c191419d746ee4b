import Foundation
import Squisher

/// `squisher importance`: export the Squisher of any supported checkpoint as safetensors.
enum ImportanceCommand: Subcommand {
    static let name = "importance"
    static let summary = "Export a checkpoint's Squisher (recycled second moment) as safetensors keyed by parameter name."
    static let positionalUsage = "CKPT"
    static let discussion = """
        Reads the optimizer state of CKPT in any supported layout (Hugging Face Trainer folder, PEFT LoRA adapter, \
        DeepSpeed ZeRO 1/2/3 global_stepN/, FSDP full state dict, torch.distributed.checkpoint folder, dcp_to_torch_save \
        file, Adafactor, bitsandbytes 8/32-bit, torch Adam/AdamW/NAdam/RAdam/RMSprop/Adagrad), recovers the parameter \
        names from what the folder holds (no mapping file needed), and writes the Squisher of every parameter with state: \
        float32 tensors of the parameters' shapes, keyed by the names in the model's weights file, with the conventions \
        (format, how names were recovered, scaling, bias correction, tied weights) in the safetensors metadata. Tied \
        parameters (GPT-2's lm_head.weight) share the entry of the parameter that holds the state.
        """
    static let options: [ParsedArguments.Option] = [
        .init("output", value: "F.safetensors", help: "Output file (required); written atomically, one tensor at a time."),
        .init("scaling", value: "raw|N=n|B=n", help: "Scaling of the second moment (default raw)."),
        .init("bias-correction", help: "Divide the EMA by 1 - beta2^step (per parameter, beta2 of its param group)."),
        .init("mapping", value: "file.json", help: "Optimizer index -> parameter name map, for plain optimizer files without names."),
    ]

    static func run(_ arguments: ParsedArguments, output: CommandOutput) throws -> Int32 {
        let command = arguments.command
        let path = try arguments.requirePositional(["CKPT"])[0]
        let outputURL = URL(fileURLWithPath: try CheckpointInputs.require(arguments, "output"))
        let options = OptimizerImportanceOptions(scaling: try CheckpointInputs.scaling(arguments), biasCorrection: arguments.flag("bias-correction"))
        let mapping = try arguments.value("mapping").map { try OptimizerParameterMapping.readMappingFile(URL(fileURLWithPath: $0)) }
        // Inputs are never modified: the output may not be, contain or lie inside the checkpoint or the mapping.
        try OutputPaths.refuseOverlap(output: outputURL, inputs: [URL(fileURLWithPath: path)] + (arguments.value("mapping").map { [URL(fileURLWithPath: $0)] } ?? []))
        let checkpoint = try OptimizerCheckpoint.open(URL(fileURLWithPath: path), mapping: mapping)
        guard !checkpoint.moments.names.isEmpty else {
            throw CommandError("\(command): \(path): no parameter has optimizer state (nothing was trained)", exitCode: 1)
        }
        let conventions = try CheckpointImportance.conventions(of: checkpoint, options: options)
        try CheckpointImportance.writeSquisher(of: checkpoint, options: options, conventions: conventions, to: outputURL)
        output.print("wrote the Squisher of \(checkpoint.moments.names.count) parameters (\(checkpoint.moments.elementCount) elements; \(conventions["scaling"] ?? "raw"), bias correction \(conventions["bias_correction"] ?? "off")) -> \(outputURL.path)")
        InspectCommand.describe(checkpoint, output: output)
        return 0
    }
}
