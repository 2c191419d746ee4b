import Foundation
import Squisher
import SquisherCommands
import Testing

/// Runs the tool in-process (the library entry point behind the `squisher` executable), capturing
/// stdout and stderr.
final class Captured: @unchecked Sendable {
    private let lock = NSLock()
    private var out = "", err = ""
    var output: CommandOutput {
        CommandOutput(
            standardOutput: { text in self.lock.withLock { self.out += text } },
            standardError: { text in self.lock.withLock { self.err += text } },
            progress: .silent)
    }
    var standardOutput: String { lock.withLock { out } }
    var standardError: String { lock.withLock { err } }
}

func runTool(_ arguments: [String]) -> (status: Int32, stdout: String, stderr: String) {
    let captured = Captured()
    let status = SquisherTool.main(arguments, output: captured.output)
    return (status, captured.standardOutput, captured.standardError)
}

func resourcePath(_ name: String) throws -> String {
    let parts = name.split(separator: ".", maxSplits: 1).map(String.init)
    guard let url = Bundle.module.url(forResource: parts[0], withExtension: parts[1], subdirectory: "Resources") else {
        throw CommandError("missing test resource \(name)")
    }
    return url.path
}

func temporaryPath(_ name: String) -> String {
    FileManager.default.temporaryDirectory.appendingPathComponent("squisher-\(UUID().uuidString)-\(name)").path
}

@Suite("squisher estimate reproduces the oracle")
struct EstimateCommandTests {
    /// Must show 3 of the command-line issue: the command-line path (spec + weights + data file →
    /// importance file) reproduces BackPACK's values. Tolerance as the library test: 1e-5 normwise
    /// per tensor (we measure about 1e-7 to 5e-7).
    @Test("MLP and CNN, empirical / true / joint", arguments: [
        ("mlp", "fisher", "empirical_fisher", ""), ("mlp", "true-fisher", "ggn_diag_exact", ""), ("mlp", "joint", "joint_empirical_fisher", "128"),
        ("cnn", "fisher", "empirical_fisher", ""), ("cnn", "true-fisher", "true_fisher", ""),
    ])
    func oracle(model: String, estimator: String, key: String, batch: String) throws {
        let out = temporaryPath("importance.safetensors")
        defer { try? FileManager.default.removeItem(atPath: out) }
        var arguments = ["estimate", "--model", try resourcePath("\(model)_spec.json"), "--weights", try resourcePath("\(model)_weights.safetensors"),
                         "--data", try resourcePath("\(model)_batch.safetensors"), "--classes", "10", "--estimator", estimator, "--output", out]
        if !batch.isEmpty { arguments += ["--batch-size", batch] }
        let result = runTool(arguments)
        #expect(result.status == 0, "stderr: \(result.stderr)")
        let ours = try Importance.load(from: URL(fileURLWithPath: out))
        let oracle = try SafeTensorsFile(contentsOf: URL(fileURLWithPath: try resourcePath("\(model)_fisher_diag.safetensors")))
        for name in ours.names {
            let reference = try oracle.doubles("\(key)/\(name)")
            let scale = reference.map(abs).max()!
            let worst = zip(ours[name]!.scalars, reference).map { abs(Double($0) - $1) }.max()!
            #expect(worst / scale < 1e-5, "\(model) \(key)/\(name): normwise \(worst / scale)")
        }
    }
}

@Suite("Command-line errors: one line, non-zero exit")
struct CommandErrorTests {
    static let cases: [(arguments: [String], fragment: String)] = [
        (["frobnicate"], "unknown subcommand 'frobnicate'"),
        (["ablate", "--speed", "fast"], "unknown option --speed"),
        (["ablate", "--seeds"], "--seeds expects a value"),
        (["ablate", "--seeds", "zero"], "--seeds expects an integer"),
        (["ablate", "--applications", "merging,dancing"], "got 'dancing'"),
        (["train", "--epochs", "-3"], "--epochs expects an integer in 1...10000"),
        (["compare", "only-one.safetensors"], "expected 2 arguments"),
        (["compare", "/nonexistent/a.safetensors", "/nonexistent/b.safetensors"], "/nonexistent/a.safetensors"),
        (["estimate", "--weights", "w.safetensors"], "--model is required"),
    ]

    @Test("bad arguments", arguments: cases)
    func badArguments(arguments: [String], fragment: String) {
        let result = runTool(arguments)
        #expect(result.status != 0)
        #expect(result.stderr.contains(fragment), "stderr was: \(result.stderr)")
        #expect(result.stderr.split(separator: "\n").count == 1, "expected one line, got: \(result.stderr)")
        #expect(result.stdout.isEmpty)
    }

    @Test("bad files: a truncated weights file and a spec that does not fit the weights")
    func badFiles() throws {
        let truncated = temporaryPath("truncated.safetensors")
        defer { try? FileManager.default.removeItem(atPath: truncated) }
        let bytes = try Data(contentsOf: URL(fileURLWithPath: try resourcePath("mlp_weights.safetensors")))
        try bytes.prefix(bytes.count - 100).write(to: URL(fileURLWithPath: truncated))
        let base = ["estimate", "--data", try resourcePath("mlp_batch.safetensors"), "--output", temporaryPath("never.safetensors")]
        let a = runTool(base + ["--model", try resourcePath("mlp_spec.json"), "--weights", truncated])
        #expect(a.status != 0 && a.stderr.contains(truncated), "stderr: \(a.stderr)")
        let b = runTool(base + ["--model", try resourcePath("cnn_spec.json"), "--weights", try resourcePath("mlp_weights.safetensors")])
        #expect(b.status != 0 && b.stderr.contains("does not fit"), "stderr: \(b.stderr)")
        let spec = temporaryPath("spec.json")
        defer { try? FileManager.default.removeItem(atPath: spec) }
        try Data(#"{"layers": [{"type": "Conv3d"}]}"#.utf8).write(to: URL(fileURLWithPath: spec))
        let c = runTool(base + ["--model", spec, "--weights", try resourcePath("mlp_weights.safetensors")])
        #expect(c.status != 0 && c.stderr.contains("unsupported type \"Conv3d\""), "stderr: \(c.stderr)")
    }

    @Test("--help on every subcommand, and the overview")
    func help() {
        for command in ["ablate", "train", "estimate", "compare"] {
            let result = runTool([command, "--help"])
            #expect(result.status == 0 && result.stdout.contains("USAGE: squisher \(command)"))
        }
        #expect(runTool(["--help"]).stdout.contains("SUBCOMMANDS"))
        #expect(runTool([]).status == 2)
    }
}
