import Foundation
import Squisher

/// Transformers side by side with PyTorch + Hugging Face `transformers`, `torch.func` and Opacus
/// (`squisher-bench transformers`): the tiny GPT-2 and BERT of the checkpoint fixtures and one
/// GPT-2-small-shaped block, built from the configs in `Benchmarks/transformer_configs/` on both
/// sides, on the same token ids (a fixed formula, ``tokenIDs(samples:length:vocabulary:)``), timed
/// against `Benchmarks/pytorch_transformer_bench.py` in its `--serve` mode, with the same thread
/// count: each case is warmed up on both sides, then every repeat runs it on each side back to back
/// (which side goes first alternates), each side's timed run right after an untimed one that warms its
/// caches and threads again, so that a change of the machine's load during the run weighs on both
/// sides alike and neither is timed cold; each side's median of `repeats`.
enum TransformerPeerBenchmark {
    static let optionsHelp =
        "[--python PATH] [--no-python] [--threads 2] [--repeats 7] [--models gpt2-tiny,bert-tiny,gpt2-768] [--cases fwd_bwd,adamw_epoch,empirical_fisher,true_fisher_exact] [--profile model:case --loops K]"

    /// A benchmark model: its config file, the data sizes, and which head it has.
    struct Model {
        var key: String
        var label: String
        /// Samples, batch size and sequence length of every case but the exact true Fisher.
        var samples: Int, batch: Int, length: Int
        /// Samples of the exact true Fisher (`T·C` backward passes per batch for a language model).
        var trueFisherSamples: Int?
        var isLanguageModel: Bool
    }

    static let models: [Model] = [
        Model(key: "gpt2-tiny", label: "GPT-2 tiny (2 layers, 32 wide, 2 heads, vocab 64)", samples: 256, batch: 32, length: 16,
              trueFisherSamples: 32, isLanguageModel: true),
        Model(key: "bert-tiny", label: "BERT tiny (2 layers, 32 wide, 2 heads, 2 labels)", samples: 256, batch: 32, length: 16,
              trueFisherSamples: 256, isLanguageModel: false),
        Model(key: "gpt2-768", label: "GPT-2 block 768 wide, 12 heads, T 128 (1 block, tied head, vocab 64)", samples: 16, batch: 8, length: 128,
              trueFisherSamples: nil, isLanguageModel: true),
    ]

    /// One measured case: our key, the Python script's peers (key and label), and a label.
    struct Case {
        var key: String
        var peers: [(key: String, label: String)]
        var label: String
    }

    static let cases: [Case] = [
        Case(key: "fwd_bwd", peers: [("fwd_bwd", "PyTorch")], label: "forward+backward (sum CE)"),
        Case(key: "adamw_epoch", peers: [("adamw_epoch", "PyTorch AdamW")], label: "one AdamW epoch (mean CE)"),
        Case(key: "empirical_fisher", peers: [("vmap_grad_sq", "torch.func vmap(grad)²"), ("opacus_grad_sq", "Opacus grad_sample²")],
             label: "empirical Fisher"),
        Case(key: "true_fisher_exact", peers: [("true_fisher_vmap", "torch.func vmap over samples × vjp over (t, c)")],
             label: "exact true Fisher"),
    ]

    static var configDirectory: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Benchmarks")
    }

    /// The model of `key` built from its config, weights drawn from a fixed seed.
    static func makeModel(_ key: String) throws -> any LayerContainer {
        let config = try HuggingFaceConfig(contentsOf: configDirectory.appendingPathComponent("transformer_configs/\(key).json"))
        var generator = SplitMix64(seed: 7)
        switch config.modelType {
        case "gpt2": return try GPT2LMHeadModel(config: config, generator: &generator)
        default: return try BertForSequenceClassification(config: config, generator: &generator)
        }
    }

    /// Token ids `[N, T]` from a formula both sides evaluate (no shared random generator needed):
    /// `((n·1103515245 + t·12345 + n·t·7) mod 2³¹) mod V`.
    static func tokenIDs(samples: Int, length: Int, vocabulary: Int) -> Tensor {
        var ids = [Float](repeating: 0, count: samples * length)
        for n in 0..<samples {
            for t in 0..<length { ids[n * length + t] = Float((n * 1_103_515_245 + t * 12_345 + n * t * 7) % 2_147_483_648 % vocabulary) }
        }
        return Tensor(uncheckedShape: [samples, length], scalars: ids)
    }

    /// The data set of `model`: ids and, for a language model, the ids as targets (shifted inside
    /// the loss); for BERT, the labels `(n·7 + 3) mod 2`.
    static func data(_ model: Model, samples: Int) throws -> TensorDataset {
        let ids = tokenIDs(samples: samples, length: model.length, vocabulary: 64)
        if model.isLanguageModel { return try TensorDataset(inputs: ids, targets: ids) }
        return try TensorDataset(inputs: ids, targets: Tensor(uncheckedShape: [samples], scalars: (0..<samples).map { Float(($0 * 7 + 3) % 2) }))
    }

    static func loss(of model: any Layer) -> CrossEntropyLikelihood {
        (model as? GPT2LMHeadModel)?.loss ?? CrossEntropyLikelihood(layout: .perSample)
    }

    /// A closure that runs one case once on our side (model and optimizer made outside the timing).
    static func runner(_ caseKey: String, spec: Model) throws -> () throws -> Void {
        let model = try makeModel(spec.key), loss = loss(of: model)
        let data = try data(spec, samples: caseKey == "true_fisher_exact" ? spec.trueFisherSamples ?? spec.samples : spec.samples)
        let batches = try data.batches(size: spec.batch)
        switch caseKey {
        case "fwd_bwd":
            return {
                for batch in batches {
                    let logits = try model.forward(batch.inputs, mode: .training)
                    try model.accumulateParameterGradients(try loss.lossAndGradient(output: logits, targets: batch.targets).outputGradient)
                }
            }
        case "adamw_epoch":
            let adamw = try Adam(parameters: model.namedParameters, learningRate: 1e-3, weightDecay: 0.01, decoupledWeightDecay: true)
            return {
                try LikelihoodTrainer.train(
                    model: model, optimizer: adamw, data: data, loss: loss,
                    configuration: TrainingConfiguration(epochs: 1, batchSize: spec.batch, shuffle: false))
            }
        case "empirical_fisher":
            return { _ = try EmpiricalFisher(batchSize: spec.batch, loss: loss).estimate(model: model, data: data) }
        case "true_fisher_exact":
            guard spec.trueFisherSamples != nil else {
                throw TensorError.invalidArgument(argument: "case", reason: "true_fisher_exact is not run on \(spec.key) (T·C backward passes per batch)")
            }
            return { _ = try TrueFisherExact(batchSize: spec.batch, loss: loss).estimate(model: model, data: data) }
        default:
            throw TensorError.invalidArgument(argument: "case", reason: "unknown case '\(caseKey)'; known: \(cases.map(\.key).joined(separator: ", "))")
        }
    }

    /// Starts `Benchmarks/pytorch_transformer_bench.py --serve` for `models`, or returns nil with a reason printed.
    static func startPython(_ python: String, threads: Int, models: [Model], cases: Set<String>) -> PeerServer? {
        let sizes = models.map { "\($0.key):\($0.samples):\($0.batch):\($0.length):\($0.trueFisherSamples ?? 0)" }
        return PeerProcess.serve(
            python: python, script: configDirectory.appendingPathComponent("pytorch_transformer_bench.py"),
            arguments: ["--threads", "\(threads)", "--models", sizes.joined(separator: ","), "--cases", cases.sorted().joined(separator: ",")],
            threads: threads)
    }

    /// A peer whose timed runs of one case exceed this in all (seconds) is not repeated further (PyTorch's
    /// exact true Fisher of GPT-2 tiny takes several seconds a run).
    static let peerBudget = 120.0

    /// Idle time before every side's runs (microseconds): PyTorch's OpenMP threads spin for a few
    /// milliseconds after its last parallel region, which would otherwise fall into our next run.
    static let settleMicroseconds: UInt32 = 20_000

    /// Times `spec`'s case `c` on both sides, repeat by repeat (see the type's doc): our runs and, per
    /// peer that could be prepared, its runs (fewer than `repeats` when ``peerBudget`` ran out).
    static func measure(
        _ c: Case, of spec: Model, repeats: Int, server: PeerServer?
    ) throws -> (ours: [Double], peers: [String: [Double]]) {
        let body = try runner(c.key, spec: spec)
        try body()  // warm-up
        var peers = server.map { server in c.peers.map(\.key).filter { server.prepare(model: spec.key, peerCase: $0) } } ?? []
        var ours: [Double] = [], theirs: [String: [Double]] = [:]
        for repeatIndex in 0..<repeats {
            func runPeers() {
                for peer in peers where theirs[peer, default: []].reduce(0, +) <= peerBudget {
                    usleep(settleMicroseconds)
                    if let seconds = server?.time(model: spec.key, peerCase: peer) {
                        theirs[peer, default: []].append(seconds)
                    } else {
                        peers.removeAll { $0 == peer }  // failed (reason printed): its earlier runs still count
                    }
                }
            }
            if repeatIndex % 2 == 1 { runPeers() }
            usleep(settleMicroseconds)
            try body()  // re-warm: the other side ran in between
            let start = DispatchTime.now().uptimeNanoseconds
            try body()
            ours.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
            if repeatIndex % 2 == 0 { runPeers() }
        }
        server?.release()
        return (ours, theirs)
    }

    struct Options {
        var python = "/tmp/peers/bin/python", usePython = true
        var threads = 2, repeats = 7
        var models = TransformerPeerBenchmark.models
        var caseKeys: Set<String>?
        var profile: String?, loops = 20
    }

    static func parse(_ arguments: [String]) -> Options? {
        var options = Options()
        var i = 0
        func value() -> String? { i += 1; return i < arguments.count ? arguments[i] : nil }
        while i < arguments.count {
            switch arguments[i] {
            case "--python": options.python = value() ?? options.python
            case "--no-python": options.usePython = false
            case "--threads": options.threads = Int(value() ?? "") ?? options.threads
            case "--repeats": options.repeats = Int(value() ?? "") ?? options.repeats
            case "--models":
                let keys = (value() ?? "").split(separator: ",").map(String.init)
                let chosen = keys.compactMap { key in models.first { $0.key == key } }
                guard chosen.count == keys.count, !chosen.isEmpty else {
                    print("--models takes some of \(models.map(\.key).joined(separator: ","))")
                    return nil
                }
                options.models = chosen
            case "--cases": options.caseKeys = Set((value() ?? "").split(separator: ",").map(String.init))
            case "--profile": options.profile = value()
            case "--loops": options.loops = Int(value() ?? "") ?? options.loops
            default:
                print("unknown option \(arguments[i]); options: \(optionsHelp)")
                return nil
            }
            i += 1
        }
        return options
    }

    static func run(arguments: [String]) throws -> Int32 {
        guard let options = parse(arguments) else { return 2 }
        var configuration = GEMMConfiguration.current
        configuration.maximumThreads = options.threads
        GEMMConfiguration.current = configuration

        if let profile = options.profile {
            // For `perf record`: run one case `loops` times, nothing else.
            let parts = profile.split(separator: ":").map(String.init)
            guard parts.count == 2, let spec = models.first(where: { $0.key == parts[0] }) else {
                print("--profile expects model:case, e.g. gpt2-768:fwd_bwd")
                return 2
            }
            let body = try runner(parts[1], spec: spec)
            try body()
            let start = DispatchTime.now().uptimeNanoseconds
            for _ in 0..<options.loops { try body() }
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 / Double(options.loops)
            print(String(format: "%@: %.4f s per run (%d runs)", profile, seconds, options.loops))
            return 0
        }

        let selected = cases.filter { options.caseKeys?.contains($0.key) ?? true }
        guard !selected.isEmpty else { print("--cases names none of: \(cases.map(\.key).joined(separator: ", "))"); return 2 }
        print("## Transformers: Squisher vs PyTorch / torch.func / Opacus (float32, \(options.threads) threads, median of \(options.repeats) after a warm-up; each repeat runs both sides back to back, each timed after an untimed run)\n")
        print("load average at start: \(PeerProcess.loadAverage())")
        let peerCases = Set(selected.flatMap { $0.peers.map(\.key) })
        let server = options.usePython ? startPython(options.python, threads: options.threads, models: options.models, cases: peerCases) : nil
        var ours: [String: [String: Double]] = [:], peers: [String: [String: Double]] = [:]
        for spec in options.models {
            for c in selected where c.key != "true_fisher_exact" || spec.trueFisherSamples != nil {
                let (mine, theirs) = try measure(c, of: spec, repeats: options.repeats, server: server)
                ours[spec.key, default: [:]][c.key] = median(mine)
                for (peer, times) in theirs where !times.isEmpty { peers[spec.key, default: [:]][peer] = median(times) }
            }
        }
        server?.finish()
        print("load average at end: \(PeerProcess.loadAverage())\n")
        printTable(models: options.models, cases: selected, ours: ours, peers: server == nil ? nil : peers)
        return 0
    }

    /// The median (upper median for an even count) of non-empty `times`.
    static func median(_ times: [Double]) -> Double { times.sorted()[times.count / 2] }

    static func printTable(models: [Model], cases: [Case], ours: [String: [String: Double]], peers: [String: [String: Double]]?) {
        for spec in models {
            print("- \(spec.key): \(spec.label); N = \(spec.samples), batch \(spec.batch), T = \(spec.length)"
                + (spec.trueFisherSamples.map { $0 == spec.samples ? "" : "; exact true Fisher on the first \($0) samples" } ?? "; no exact true Fisher"))
        }
        print("\n| model | case | Squisher (s) | peer | peer (s) | Squisher / peer |")
        print("|---|---|---:|---|---:|---:|")
        for spec in models {
            for c in cases {
                guard let mine = ours[spec.key]?[c.key] else { continue }
                for peer in c.peers {
                    let theirs = peers?[spec.key]?[peer.key]
                    let peerText = theirs.map { String(format: "%.4f", $0) } ?? "–"
                    let ratioText = theirs.map { String(format: "%.2fx", mine / $0) } ?? "–"
                    print("| \(spec.key) | \(c.label) | \(String(format: "%.4f", mine)) | \(peer.label) | \(peerText) | \(ratioText) |")
                    print("PEER \(spec.key) \(c.key) \(peer.key) \(String(format: "%.6f", mine)) \(theirs.map { String(format: "%.6f", $0) } ?? "-")")
                }
            }
        }
        print("\nRatios below 1 mean Squisher is faster. Only figures from one run are comparable (shared machine).")
    }
}
