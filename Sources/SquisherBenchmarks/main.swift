// squisher-bench: speed benchmarks of Squisher's kernels, each against its Python peer where one exists.
//
//   swift run -c release squisher-bench gemm [options]   matrix multiply vs numpy (see GEMMBenchmark.swift)
//   swift run -c release squisher-bench estimators       estimator cost vs a plain forward+backward, hook overhead
//   swift run -c release squisher-bench peers            side by side with PyTorch / BackPACK / torch.func (see PeerBenchmark.swift)
//   swift run -c release squisher-bench transformers     GPT-2 / BERT vs PyTorch, torch.func and Opacus (see TransformerPeerBenchmark.swift)
//   swift run -c release squisher-bench scaling          estimator time and memory vs N, batch size and width (see ScalingBenchmark.swift)
//   swift run -c release squisher-bench merge [--gb 1.4 --models 3 --shards 4]   streaming checkpoint merge: peak RSS, vs a plain copy
//   swift run -c release squisher-bench hook none|squisher|joint   one epoch, for callgrind instruction counts
//   swift run -c release squisher-bench all              every benchmark with default options
//
// Add a benchmark by adding a case below and a `<Name>Benchmark.swift` file.
import Foundation

let arguments = Array(CommandLine.arguments.dropFirst())
let usage = """
    usage: squisher-bench <benchmark> [options]
    benchmarks:
      gemm    matrix multiply (GFLOP/s) vs numpy in the same run
              \(GEMMBenchmark.optionsHelp)
      estimators  cost of every estimator over N = 2,048 (ratio to forward+backward), per-sample loop, hook overhead
      peers   our training and estimators next to PyTorch, BackPACK and torch.func in the same run
              \(PeerBenchmark.optionsHelp)
      transformers  GPT-2 and BERT training and Fisher next to PyTorch, torch.func and Opacus in the same run
              \(TransformerPeerBenchmark.optionsHelp)
      scaling estimator time and memory as N, batch size and width grow
              \(ScalingBenchmark.optionsHelp)
      all     every benchmark with its default options
    """

switch arguments.first {
case "gemm":
    exit(GEMMBenchmark.run(arguments: Array(arguments.dropFirst())))
case "estimators":
    do { try EstimatorBenchmark.run() } catch {
        FileHandle.standardError.write(Data("squisher-bench estimators: \(error)\n".utf8))
        exit(1)
    }
case "peers":
    do { exit(try PeerBenchmark.run(arguments: Array(arguments.dropFirst()))) } catch {
        FileHandle.standardError.write(Data("squisher-bench peers: \(error)\n".utf8))
        exit(1)
    }
case "transformers":
    do { exit(try TransformerPeerBenchmark.run(arguments: Array(arguments.dropFirst()))) } catch {
        FileHandle.standardError.write(Data("squisher-bench transformers: \(error)\n".utf8))
        exit(1)
    }
case "scaling":
    do { exit(try ScalingBenchmark.run(arguments: Array(arguments.dropFirst()))) } catch {
        FileHandle.standardError.write(Data("squisher-bench scaling: \(error)\n".utf8))
        exit(1)
    }
case "merge":
    do { try CheckpointMergeBenchmark.run(arguments: Array(arguments.dropFirst())) } catch {
        FileHandle.standardError.write(Data("squisher-bench merge: \(error)\n".utf8))
        exit(1)
    }
case "hook":
    do { try HookOverheadBenchmark.run(arguments: Array(arguments.dropFirst())) } catch {
        FileHandle.standardError.write(Data("\(error)\n".utf8))
        exit(2)
    }
case "all":
    let status = GEMMBenchmark.run(arguments: [])
    do { try EstimatorBenchmark.run() } catch { exit(1) }
    exit(status)
case "-h", "--help", "help":
    print(usage)
default:
    FileHandle.standardError.write(Data((usage + "\n").utf8))
    exit(2)
}
