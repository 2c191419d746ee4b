import Foundation
import Squisher
import SquisherCommands
import Testing

/// The command-line workflow a user runs on their own model: train (saving model, optimizer state
/// and Squisher) → estimate the Fisher from a CSV with a model spec → compare the two files.
@Suite("train → estimate → compare")
struct WorkflowTests {
    @Test func workflow() throws {
        let folder = temporaryPath("workflow")
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let train = runTool(["train", "--epochs", "3", "--hidden", "16", "--json",
                             "--save-model", "\(folder)/model.safetensors", "--save-optimizer", "\(folder)/adam.safetensors",
                             "--save-squisher", "\(folder)/squisher.safetensors"])
        #expect(train.status == 0, "\(train.stderr)")
        let summary = try JSONSerialization.jsonObject(with: Data(train.stdout.utf8)) as? [String: Any]
        #expect((summary?["test_accuracy"] as? Double ?? 0) > 0.5)
        // The optimizer state file restores into a fresh Adam.
        let stateFile = try SafeTensorsFile(contentsOf: URL(fileURLWithPath: "\(folder)/adam.safetensors"))
        let state = try OptimizerState(flattened: stateFile.allTensors(), metadata: stateFile.metadata)
        #expect(state.kind == "Adam" && state.buffers["exp_avg_sq"]?.count == 4)
        // A spec for the trained 64-16-10 MLP (nn.Sequential numbering) and the digits as CSV.
        try Data(#"{"layers": [{"type": "Linear", "in_features": 64, "out_features": 16}, {"type": "ReLU"}, {"type": "Linear", "in_features": 16, "out_features": 10}]}"#.utf8)
            .write(to: URL(fileURLWithPath: "\(folder)/spec.json"))
        let digits = try Digits.load()
        let csv = (0..<200).map { row in
            (0..<64).map { String(Int(digits.inputs.scalars[row * 64 + $0] * 16)) }.joined(separator: ",") + ",\(digits.labels[row])"
        }.joined(separator: "\n")
        try Data(csv.utf8).write(to: URL(fileURLWithPath: "\(folder)/digits.csv"))
        let estimate = runTool(["estimate", "--model", "\(folder)/spec.json", "--weights", "\(folder)/model.safetensors",
                                "--data", "\(folder)/digits.csv", "--input-scale", "16", "--classes", "10", "--output", "\(folder)/fisher.safetensors"])
        #expect(estimate.status == 0, "\(estimate.stderr)")
        let compare = runTool(["compare", "\(folder)/fisher.safetensors", "\(folder)/squisher.safetensors", "--json"])
        #expect(compare.status == 0, "\(compare.stderr)")
        let rows = try JSONSerialization.jsonObject(with: Data(compare.stdout.utf8)) as? [[String: Any]]
        #expect(rows?.count == 5)  // overall + 4 tensors
        let overall = rows?.first { $0["tensor"] as? String == "(all)" }
        // After 3 epochs the Squisher and the empirical Fisher already rank parameters alike.
        #expect((overall?["spearman"] as? Double ?? 0) > 0.5, "\(compare.stdout)")
    }
}
