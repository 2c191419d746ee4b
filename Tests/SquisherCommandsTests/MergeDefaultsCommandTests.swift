import Foundation
import Squisher
import SquisherCommands
import Testing

/// `squisher merge` with its defaults on layouts that real checkpoints have: tied weights saved
/// twice, and a pretrained base without the fine-tuning head.
@Suite("squisher merge: tied weights and UBGM with a pretrained base")
struct MergeDefaultsCommandTests {
    /// The MLP fixture (PyTorch's optimizer.pt and model) as checkpoint A, with `head.weight` saved
    /// as a copy of `fc2.weight` (a tied pair: the optimizer has one state, for `fc2.weight`); B is
    /// A's tensors plus seeded noise (its tied copy equal to its `fc2.weight`) with an importance
    /// file that, like the optimizer, covers only `fc*`.
    static func tiedPair(in root: URL) throws -> (a: URL, b: URL, importanceB: URL, thetaA: NamedTensors, thetaB: NamedTensors, fisherB: NamedTensors) {
        let a = try CheckpointFixture.checkpoint("mlp_digits", in: root, name: "a")
        var thetaA = try SafeTensorsFile(contentsOf: a.appendingPathComponent("model.safetensors")).allTensors()
        thetaA["head.weight"] = thetaA["fc2.weight"]!
        try FileManager.default.removeItem(at: a.appendingPathComponent("model.safetensors"))
        try SafeTensorsWriter.write(thetaA, to: a.appendingPathComponent("model.safetensors"))
        let b = root.appendingPathComponent("b")
        try FileManager.default.createDirectory(at: b, withIntermediateDirectories: true)
        var generator = SplitMix64(seed: 21)
        var thetaB = NamedTensors(), fisherB = NamedTensors()
        for (name, tensor) in thetaA where name != "head.weight" {
            thetaB[name] = try tensor + Tensor.normal(shape: tensor.shape, mean: 0, standardDeviation: 0.05, using: &generator)
            fisherB[name] = Tensor.uniform(shape: tensor.shape, low: 0, high: 1e-4, using: &generator)
        }
        thetaB["head.weight"] = thetaB["fc2.weight"]!
        try SafeTensorsWriter.write(thetaB, to: b.appendingPathComponent("model.safetensors"))
        let importanceB = root.appendingPathComponent("importance_b.safetensors")
        try SafeTensorsWriter.write(fisherB, to: importanceB)
        return (a, b, importanceB, thetaA, thetaB, fisherB)
    }

    /// The tied copy is merged with its partner's importance and stays bit-for-bit equal to it
    /// (before, it was plainly averaged while its partner was Fisher-merged: untied).
    @Test func tiedWeightsStayTied() throws {
        let root = try CheckpointFixture.folder()
        defer { try? FileManager.default.removeItem(at: root) }
        let pair = try Self.tiedPair(in: root)
        let out = root.appendingPathComponent("merged")
        let result = runTool(["merge", pair.a.path, pair.b.path, "--output", out.path, "--json",
                              "--importance-source", pair.a.appendingPathComponent("optimizer.pt").path + "," + pair.importanceB.path])
        #expect(result.status == 0, "stderr: \(result.stderr)")
        #expect(result.stdout.contains("\"tied_tensors\":{\"head.weight\":\"fc2.weight\"}"), "stdout: \(result.stdout)")
        let merged = try SafeTensorsFile(contentsOf: out.appendingPathComponent("model.safetensors")).allTensors()
        #expect(merged["head.weight"]!.scalars.map(\.bitPattern) == merged["fc2.weight"]!.scalars.map(\.bitPattern))
        let average = zip(pair.thetaA["fc2.weight"]!.scalars, pair.thetaB["fc2.weight"]!.scalars).map { ($0 + $1) / 2 }
        #expect(zip(merged["fc2.weight"]!.scalars, average).contains { abs($0 - $1) > 1e-4 }, "fc2.weight should be Fisher-merged, not averaged")
    }

    /// UBGM into a base that lacks the head (`fc2.*`) and has a tensor no task has: the head is
    /// `Σ_t F_t θ_t / Σ_t F_t` and the shared tensors follow `θ₀ + Σ_t (F_t + δ₀)(θ_t − θ₀) / (Σ_t F_t + δ₀)`
    /// (δ₀ = 1e-12, no F₀), both computed here in Double from PyTorch's exp_avg_sq answer key.
    /// Tolerance: one float32 rounding of the result and of the inputs' difference, 4 ulps of the
    /// largest |θ| of the tensor.
    @Test func ubgmWithHeadlessBase() throws {
        let root = try CheckpointFixture.folder()
        defer { try? FileManager.default.removeItem(at: root) }
        let pair = try Self.tiedPair(in: root)
        let baseFolder = root.appendingPathComponent("base")
        try FileManager.default.createDirectory(at: baseFolder, withIntermediateDirectories: true)
        var generator = SplitMix64(seed: 22)
        var base = NamedTensors()
        for name in ["fc1.weight", "fc1.bias"] {
            base[name] = try pair.thetaA[name]! + Tensor.normal(shape: pair.thetaA[name]!.shape, mean: 0, standardDeviation: 0.1, using: &generator)
        }
        base["lm_head.weight"] = Tensor.uniform(shape: [3, 4], low: -1, high: 1, using: &generator)
        try SafeTensorsWriter.write(base, to: baseFolder.appendingPathComponent("model.safetensors"))
        let out = root.appendingPathComponent("merged")
        let result = runTool(["merge", "--method", "ubgm", "--base", baseFolder.path, pair.a.path, pair.b.path, "--output", out.path, "--json",
                              "--importance-source", pair.a.appendingPathComponent("optimizer.pt").path + "," + pair.importanceB.path])
        #expect(result.status == 0, "stderr: \(result.stderr)")
        #expect(result.stdout.contains("\"base_only_tensors\":[\"lm_head.weight\"]"), "stdout: \(result.stdout)")
        let merged = try SafeTensorsFile(contentsOf: out.appendingPathComponent("model.safetensors")).allTensors()
        #expect(merged["lm_head.weight"] == nil)
        let fisherA = try CheckpointFixture.mlpExpAvgSq()
        for name in ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"] {
            let fa = fisherA[name]!.map { Double(Float($0)) }, fb = pair.fisherB[name]!.scalars.map(Double.init)
            let ta = pair.thetaA[name]!.scalars.map(Double.init), tb = pair.thetaB[name]!.scalars.map(Double.init)
            let got = merged[name]!.scalars
            var worst = 0.0, scale = 0.0
            for j in got.indices {
                let expected: Double
                if let t0 = base[name]?.scalars.map(Double.init) {
                    let d0 = Double(Float(1e-12))
                    expected = t0[j] + ((fa[j] + d0) * (ta[j] - t0[j]) + (fb[j] + d0) * (tb[j] - t0[j])) / (fa[j] + fb[j] + d0)
                } else {
                    expected = (fa[j] * ta[j] + fb[j] * tb[j]) / (fa[j] + fb[j])
                }
                worst = max(worst, abs(Double(got[j]) - expected))
                scale = max(scale, abs(expected))
            }
            #expect(worst <= 4 * 0x1p-23 * scale, "\(name): worst error \(worst) at scale \(scale)")
        }
    }
}
