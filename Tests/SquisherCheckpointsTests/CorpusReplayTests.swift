import Foundation
import SquisherCheckpoints
import Testing

/// Replays the fuzzing corpus (Fuzz/corpus/<target>, copied to Resources/corpus/<target>): seeds plus
/// every input that once crashed a reader, through the same parser the fuzzer ran it on: `torch` (the
/// zip container and the restricted unpickler) and each ``FuzzFormatTarget`` (DeepSpeed, DCP,
/// bitsandbytes, Adafactor, config.json order). Each must end in a value or a ``CheckpointError``; a
/// crash fails the run.
@Suite("Fuzz corpus replay")
struct CorpusReplayTests {
    static let limits = PickleLimits(maxStackSize: 100_000, maxMemoSize: 100_000, maxTotalElements: 200_000, maxTensorScalars: 1 << 20)

    /// Words of the error each former crash input must now end in (the check it once slipped past).
    static let crashCauses = [
        "crash-param-shapes-overflow": "more than 281474976710656 elements",
        "crash-padding-overflow": "pads group 0 by a negative amount or by more than",
        "crash-size-overflow": "not a list of at most 281474976710656 elements",
        "crash-chunk-offset-overflow": "outside its size",
    ]

    /// The corpus files of one target, by name.
    static func corpusFiles(_ target: String = "torch") throws -> [URL] {
        guard let folder = Bundle.module.url(forResource: "corpus", withExtension: nil, subdirectory: "Resources") else { return [] }
        return try FileManager.default.contentsOfDirectory(at: folder.appendingPathComponent(target), includingPropertiesForKeys: nil)
            .sorted { $0.lastPathComponent < $1.lastPathComponent }
    }

    /// Every seed (a real fixture's pickle or file, rebuilt into a copy of its folder) reads exactly as
    /// the untouched fixture does — the same second moments, or the same refusal (bitsandbytes Lion has
    /// no second moment) — so the replay reaches the parser behind the container; every other input
    /// (mutants, former crashes) ends in a value or a ``CheckpointError`` that says what is wrong.
    @Test(arguments: FuzzFormatTarget.allCases)
    func formatInputsEndInAValueOrAnError(_ target: FuzzFormatTarget) throws {
        let formats = try #require(Bundle.module.url(forResource: "formats", withExtension: nil, subdirectory: "Resources"))
        let workspace = FuzzWorkspace(formats: formats)
        defer { workspace.remove() }
        let files = try Self.corpusFiles(target.rawValue)
        #expect(files.filter { $0.lastPathComponent.hasPrefix("seed-") }.count == target.variants.count, "one seed per fixture variant")
        for url in files {
            let name = url.lastPathComponent, input = try Data(contentsOf: url)
            let outcome = try workspace.run(input, target: target)
            if name.hasPrefix("seed-") {
                let folder = formats.appendingPathComponent(target.variants[Int(input[0]) % target.variants.count].folder)
                let expected = Result { () throws(CheckpointError) in try OptimizerCheckpoint.open(folder).moments.allValues().names }
                switch (outcome, expected) {
                case (.success(let names), .success(let reference)):
                    #expect(names == reference && !names.isEmpty, "\(target.rawValue)/\(name)")
                case (.failure(let error), .failure(let reference)):
                    #expect(error.problem.replacingOccurrences(of: workspace.root.path, with: formats.path) == reference.problem, "\(target.rawValue)/\(name)")
                default:
                    Issue.record("\(target.rawValue)/\(name) reads as \(outcome), the fixture itself as \(expected)")
                }
            } else if case .failure(let error) = outcome {
                #expect(!error.path.isEmpty && !error.problem.isEmpty, "\(target.rawValue)/\(name)")
                if let cause = Self.crashCauses[name] { #expect(error.problem.contains(cause), "\(target.rawValue)/\(name): \(error)") }
            } else if name.hasPrefix("crash-") {
                Issue.record("\(target.rawValue)/\(name) once crashed a reader and must be refused, but read as \(outcome)")
            }
        }
    }

    @Test func corpusIsPresent() throws {
        let files = try Self.corpusFiles()
        #expect(files.count >= 10, "corpus has \(files.count) files")
        #expect(files.contains { $0.lastPathComponent.hasPrefix("crash-") }, "the regression inputs are part of the corpus")
    }

    @Test func everyInputEndsInAValueOrAnError() throws {
        var outcomes: [String: (zip: Bool, pickle: Bool)] = [:]
        for url in try Self.corpusFiles() {
            let data = try Data(contentsOf: url)
            let name = url.lastPathComponent
            var zipOK = false, pickleOK = false
            do throws(CheckpointError) {
                let value = try TorchCheckpoint.load(data: data, path: name, limits: Self.limits)
                _ = try? TorchStateDict(value, path: name)
                _ = try? TorchOptimizerState(value, path: name)
                zipOK = true
            } catch {
                #expect(error.path == name && !error.problem.isEmpty)
            }
            do throws(CheckpointError) {
                _ = try RestrictedUnpickler.decode(data, path: name, limits: Self.limits) { reference throws(CheckpointError) in
                    guard reference.elementCount <= 1 << 16 else { throw CheckpointError(path: name, problem: "storage too large") }
                    return Data(count: reference.elementCount * reference.dtype.byteCount)
                }
                pickleOK = true
            } catch {
                #expect(!error.problem.isEmpty)
            }
            outcomes[name] = (zipOK, pickleOK)
        }
        // The seeds that are real torch.save files load as archives; their data.pkl files load as pickles.
        #expect(outcomes["mlp_digits.optimizer.pt"]?.zip == true)
        #expect(outcomes["tinylm_adam.model.pt"]?.zip == true)
        #expect(outcomes["mlp_digits.optimizer.data.pkl"]?.pickle == true)
        #expect(outcomes["plain.proto4.pkl"]?.pickle == true)
        #expect(outcomes["os_system.pkl"]?.pickle == false)
        #expect(outcomes["memo_bomb.pkl"]?.pickle == false)
    }
}
