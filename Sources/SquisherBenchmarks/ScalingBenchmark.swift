import Foundation
import Squisher

/// How each estimator's time and memory grow with N, batch size and width (`squisher-bench scaling`).
/// One axis varies at a time around MLP 784-W-W-10 with W = 256, N = 2,048, batch 128 (and the CNN
/// for the batch axis). Memory: the estimator's own account (`EstimationCost.peakExtraBytes`) and
/// the growth of the process's peak resident set during the call (VmHWM after resetting it through
/// `/proc/self/clear_refs`, minus VmRSS before).
enum ScalingBenchmark {
    static let optionsHelp = "[--repeats 3] [--quick]"

    /// A `/proc/self/status` field in KiB.
    static func status(_ field: String) -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix(field + ":") {
            return Int(line.split(separator: " ").dropFirst().first { !$0.isEmpty }.map(String.init) ?? "")
        }
        return nil
    }

    /// Resets VmHWM to the current RSS (Linux >= 4.0: write 5 to clear_refs).
    static func resetPeak() {
        try? "5".write(toFile: "/proc/self/clear_refs", atomically: false, encoding: .utf8)
    }

    struct Measurement {
        var seconds: Double
        var extraBytes: Int
        var peakGrowthKiB: Int
    }

    static func measure(_ estimator: any SensitivityEstimator, model: Sequential, data: Dataset, repeats: Int) throws -> Measurement {
        _ = try estimator.estimate(model: model, data: data)  // warm-up
        var times: [Double] = []
        var extra = 0, growth = 0
        for _ in 0..<repeats {
            resetPeak()
            let before = status("VmRSS") ?? 0
            let start = DispatchTime.now().uptimeNanoseconds
            let importance = try estimator.estimate(model: model, data: data)
            times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
            growth = max(growth, (status("VmHWM") ?? 0) - before)
            extra = importance.cost.peakExtraBytes
        }
        return Measurement(seconds: times.sorted()[times.count / 2], extraBytes: extra, peakGrowthKiB: growth)
    }

    static func mlp(width: Int) -> Sequential {
        var g = SplitMix64(seed: 1)
        return Sequential([Linear(inputFeatures: 784, outputFeatures: width, generator: &g), ReLU(),
                           Linear(inputFeatures: width, outputFeatures: width, generator: &g), ReLU(),
                           Linear(inputFeatures: width, outputFeatures: 10, generator: &g)])
    }

    static func run(arguments: [String]) throws -> Int32 {
        var repeats = 3, quick = false
        var i = 0
        while i < arguments.count {
            switch arguments[i] {
            case "--repeats": i += 1; repeats = i < arguments.count ? Int(arguments[i]) ?? repeats : repeats
            case "--quick": quick = true
            default: print("unknown option \(arguments[i]); options: \(optionsHelp)"); return 2
            }
            i += 1
        }
        print("## Estimator scaling (float32, \(GEMMConfiguration.current.maximumThreads) threads, median of \(repeats); load average \(PeerProcess.loadAverage()))\n")
        print("Memory: `peakExtraBytes` (the estimator's account: accumulators, temporaries of the per-sample rules, per-batch output gradients) and ΔVmHWM (growth of the process's peak resident set during the call).\n")
        print("| model | N | batch | params | empirical (s) | exact C=10 (s) | MC S=1 (s) | µs/sample emp / exact / MC | peakExtra MiB emp / exact / MC | ΔVmHWM MiB emp / exact / MC |")
        print("|---|---:|---:|---:|---:|---:|---:|---|---|---|")
        let cnn = EstimatorBenchmark.models[1]
        var settings: [(name: String, make: () throws -> Sequential, shape: [Int], n: Int, batch: Int)] = []
        let ns = quick ? [512, 2048] : [512, 2048, 8192]
        let batches = quick ? [32, 128] : [32, 128, 512]
        let widths = quick ? [64, 256] : [64, 256, 1024]
        for n in ns { settings.append(("MLP 784-256-256-10", { mlp(width: 256) }, [784], n, 128)) }
        for b in batches where b != 128 { settings.append(("MLP 784-256-256-10", { mlp(width: 256) }, [784], 2048, b)) }
        for w in widths where w != 256 { settings.append(("MLP 784-\(w)-\(w)-10", { mlp(width: w) }, [784], 2048, 128)) }
        for b in batches { settings.append((cnn.name, cnn.make, cnn.sampleShape, 2048, b)) }
        for setting in settings {
            let model = try setting.make()
            var g = SplitMix64(seed: 3)
            let data = try Dataset(inputs: Tensor.normal(shape: [setting.n] + setting.shape, using: &g),
                                   labels: (0..<setting.n).map { _ in Int(g.next() % 10) }, classCount: 10)
            let parameters = model.namedParameters.reduce(0) { $0 + $1.parameter.value.count }
            let results = try [
                measure(EmpiricalFisher(batchSize: setting.batch), model: model, data: data, repeats: repeats),
                measure(TrueFisherExact(batchSize: setting.batch), model: model, data: data, repeats: max(1, repeats / 2)),
                measure(TrueFisherMonteCarlo(samples: 1, batchSize: setting.batch), model: model, data: data, repeats: repeats),
            ]
            func join(_ f: (Measurement) -> String) -> String { results.map(f).joined(separator: " / ") }
            print("| \(setting.name) | \(setting.n) | \(setting.batch) | \(parameters) | "
                + results.map { String(format: "%.3f", $0.seconds) }.joined(separator: " | ") + " | "
                + join { String(format: "%.0f", 1e6 * $0.seconds / Double(setting.n)) } + " | "
                + join { String(format: "%.1f", Double($0.extraBytes) / 1_048_576) } + " | "
                + join { String(format: "%.1f", Double($0.peakGrowthKiB) / 1024) } + " |")
        }
        return 0
    }
}
