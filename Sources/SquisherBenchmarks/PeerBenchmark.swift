import Foundation
import Squisher

/// Side-by-side benchmark against PyTorch, BackPACK and `torch.func` (`squisher-bench peers`):
/// the same two models as ``EstimatorBenchmark`` (MLP 784-256-256-10 and the small CNN) on N random
/// samples, batch B, timed on our side and then by `Benchmarks/pytorch_bench.py` in the same run,
/// both with the same thread count; median of `repeats` after one warm-up.
enum PeerBenchmark {
    static let optionsHelp = "[--python PATH] [--no-python] [--threads 2] [--samples 2048] [--batch 128] [--repeats 5] [--models mlp,cnn] [--cases fwd_bwd,adam_epoch] [--profile model:case --loops K]"

    /// One measured case: our key, the Python script's key, and a label.
    struct Case {
        var key: String
        var peer: String?
        var label: String
    }

    static let cases: [Case] = [
        Case(key: "fwd_bwd", peer: "fwd_bwd", label: "forward+backward (sum CE, N samples)"),
        Case(key: "adam_epoch", peer: "adam_epoch", label: "one Adam epoch (mean CE)"),
        Case(key: "adam_epoch_squisher", peer: nil, label: "Adam epoch + Squisher EMA hook"),
        Case(key: "sum_grad_squared", peer: "sum_grad_squared", label: "empirical Fisher vs BackPACK SumGradSquared"),
        Case(key: "empirical_vs_vmap", peer: "vmap_grad_sq", label: "empirical Fisher vs torch.func vmap(grad)²"),
        Case(key: "diag_ggn_exact", peer: "diag_ggn_exact", label: "true Fisher exact vs BackPACK DiagGGNExact"),
        Case(key: "diag_ggn_mc", peer: "diag_ggn_mc", label: "true Fisher MC (S=1) vs BackPACK DiagGGNMC"),
    ]

    static func modelSpec(_ key: String) -> EstimatorBenchmark.Model? {
        switch key {
        case "mlp": return EstimatorBenchmark.models[0]
        case "cnn": return EstimatorBenchmark.models[1]
        default: return nil
        }
    }

    /// A closure that runs one case once on our side.
    static func runner(_ caseKey: String, spec: EstimatorBenchmark.Model, data: Dataset, batchSize: Int) throws -> () throws -> Void {
        let model = try spec.make()
        let batches = try data.batches(size: batchSize)
        let loss = SoftmaxCrossEntropy(reduction: .sum)
        switch caseKey {
        case "fwd_bwd":
            return {
                for batch in batches {
                    let logits = try model.forward(batch.inputs, mode: .training)
                    try model.accumulateParameterGradients(try loss(logits: logits, labels: batch.labels).logitsGradient)
                }
            }
        case "adam_epoch", "adam_epoch_squisher":
            let hook = caseKey == "adam_epoch_squisher"
            return {
                let fresh = try spec.make()
                let adam = try Adam(parameters: fresh.namedParameters)
                let handle = hook ? try SquaredGradientAccumulator(rule: .ema(beta2: 0.999)).attach(to: adam) : nil
                try Trainer.train(model: fresh, optimizer: adam, data: data, configuration: TrainingConfiguration(epochs: 1, batchSize: batchSize, shuffle: false))
                handle?.remove()
            }
        case "sum_grad_squared", "empirical_vs_vmap":
            return { _ = try EmpiricalFisher(batchSize: batchSize).estimate(model: model, data: data) }
        case "diag_ggn_exact":
            return { _ = try TrueFisherExact(batchSize: batchSize).estimate(model: model, data: data) }
        case "diag_ggn_mc":
            return { _ = try TrueFisherMonteCarlo(samples: 1, batchSize: batchSize).estimate(model: model, data: data) }
        default:
            throw TensorError.invalidArgument(argument: "case", reason: "unknown case '\(caseKey)'; known: \(cases.map(\.key).joined(separator: ", "))")
        }
    }

    static func randomData(_ spec: EstimatorBenchmark.Model, samples: Int) throws -> Dataset {
        var g = SplitMix64(seed: 3)
        return try Dataset(inputs: Tensor.normal(shape: [samples] + spec.sampleShape, using: &g),
                           labels: (0..<samples).map { _ in Int(g.next() % 10) }, classCount: 10)
    }

    /// Runs `Benchmarks/pytorch_bench.py`; returns `[model: [case: seconds]]` or nil with a reason printed.
    static func runPython(
        _ python: String, threads: Int, samples: Int, batch: Int, repeats: Int, models: [String], cases: Set<String>
    ) -> [String: [String: Double]]? {
        PeerProcess.run(
            python: python, script: PeerProcess.script("pytorch_bench.py"),
            arguments: ["--threads", "\(threads)", "--samples", "\(samples)", "--batch", "\(batch)", "--repeats", "\(repeats)",
                        "--models", models.joined(separator: ","), "--cases", cases.sorted().joined(separator: ",")],
            threads: threads)
    }

    static func run(arguments: [String]) throws -> Int32 {
        var python = "/tmp/peers/bin/python", usePython = true
        var threads = 2, samples = 2048, batch = 128, repeats = 5
        var models = ["mlp", "cnn"]
        var caseKeys: Set<String>?
        var profile: String?, loops = 20
        var i = 0
        func value() -> String? { i += 1; return i < arguments.count ? arguments[i] : nil }
        while i < arguments.count {
            switch arguments[i] {
            case "--python": python = value() ?? python
            case "--no-python": usePython = false
            case "--threads": threads = Int(value() ?? "") ?? threads
            case "--samples": samples = Int(value() ?? "") ?? samples
            case "--batch": batch = Int(value() ?? "") ?? batch
            case "--repeats": repeats = Int(value() ?? "") ?? repeats
            case "--models": models = (value() ?? "mlp,cnn").split(separator: ",").map(String.init)
            case "--cases": caseKeys = Set((value() ?? "").split(separator: ",").map(String.init))
            case "--profile": profile = value()
            case "--loops": loops = Int(value() ?? "") ?? loops
            default:
                print("unknown option \(arguments[i]); options: \(optionsHelp)")
                return 2
            }
            i += 1
        }
        var configuration = GEMMConfiguration.current
        configuration.maximumThreads = threads
        GEMMConfiguration.current = configuration

        if let profile {
            // For `perf record`: run one case `loops` times, nothing else.
            let parts = profile.split(separator: ":").map(String.init)
            guard parts.count == 2, let spec = modelSpec(parts[0]) else { print("--profile expects model:case, e.g. cnn:fwd_bwd"); return 2 }
            let body = try runner(parts[1], spec: spec, data: try randomData(spec, samples: samples), batchSize: batch)
            let start = DispatchTime.now().uptimeNanoseconds
            for _ in 0..<loops { try body() }
            print(String(format: "%@: %.4f s per run (%d runs)", profile, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 / Double(loops), loops))
            return 0
        }

        print("## Squisher vs PyTorch / BackPACK / torch.func (N = \(samples), batch \(batch), float32, \(threads) threads, median of \(repeats) after a warm-up)\n")
        print("load average at start: \(PeerProcess.loadAverage())")
        let selected = cases.filter { caseKeys?.contains($0.key) ?? true }
        guard !selected.isEmpty else { print("--cases names none of: \(cases.map(\.key).joined(separator: ", "))"); return 2 }
        var ours: [String: [String: Double]] = [:]
        for key in models {
            guard let spec = modelSpec(key) else { print("unknown model \(key) (mlp, cnn)"); return 2 }
            let data = try randomData(spec, samples: samples)
            for c in selected {
                let body = try runner(c.key, spec: spec, data: data, batchSize: batch)
                ours[key, default: [:]][c.key] = try EstimatorBenchmark.median(repeats, body)
            }
        }
        let peerCases = Set(selected.compactMap(\.peer))
        let peers = usePython ? runPython(python, threads: threads, samples: samples, batch: batch, repeats: repeats, models: models, cases: peerCases) : nil
        print("load average at end: \(PeerProcess.loadAverage())\n")
        print("| model | case | Squisher (s) | PyTorch peer (s) | Squisher / peer |")
        print("|---|---|---:|---:|---:|")
        for key in models {
            guard let spec = modelSpec(key) else { continue }
            for c in selected {
                let mine = ours[key]?[c.key] ?? .nan
                var peerText = "–", ratioText = "–"
                if c.key == "adam_epoch_squisher", let plain = ours[key]?["adam_epoch"] {
                    ratioText = String(format: "%+.1f%% vs our plain epoch", 100 * (mine / plain - 1))
                } else if let p = c.peer, let theirs = peers?[key]?[p] {
                    peerText = String(format: "%.3f", theirs)
                    ratioText = String(format: "%.2fx", mine / theirs)
                }
                print("| \(spec.name) | \(c.label) | \(String(format: "%.3f", mine)) | \(peerText) | \(ratioText) |")
                print("PEER \(key) \(c.key) \(String(format: "%.6f", mine)) \(c.peer.flatMap { peers?[key]?[$0] }.map { String(format: "%.6f", $0) } ?? "-")")
            }
        }
        print("\nRatios below 1 mean Squisher is faster. Only figures from one run are comparable (shared machine).")
        return 0
    }
}
