import Foundation
import SquisherCheckpoints
import Testing

/// Replays the fuzzing corpus (Fuzz/corpus, copied to Resources/corpus): seeds plus every input that
/// once crashed the readers. Each must end in a value or a ``CheckpointError``; a crash fails the run.
@Suite("Fuzz corpus replay")
struct CorpusReplayTests {
    static let limits = PickleLimits(maxStackSize: 100_000, maxMemoSize: 100_000, maxTotalElements: 200_000, maxTensorScalars: 1 << 20)

    static func corpusFiles() throws -> [URL] {
        guard let folder = Bundle.module.url(forResource: "corpus", withExtension: nil, subdirectory: "Resources") else { return [] }
        return try FileManager.default.contentsOfDirectory(at: folder, includingPropertiesForKeys: nil)
            .sorted { $0.lastPathComponent < $1.lastPathComponent }
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
