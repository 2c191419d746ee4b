import Foundation
import SquisherIO

/// The names and shapes of the model weights beside an optimizer state (headers only: no tensor is
/// read), and the folder's `config.json` / `adapter_config.json`.
struct ModelWeightsListing {
    /// The weights file (or index) the names came from.
    var file: URL
    /// Every tensor in file order (safetensors files list tensors sorted by name).
    var weights: [ModelTensorShape]
    /// Whether the order is the model's registration order (`model.pt`), not a sorted one.
    var isRegistrationOrder: Bool
    /// Whether this is a PEFT adapter (`adapter_model.safetensors`).
    var isAdapter: Bool

    /// The weights of `folder`: `adapter_model.safetensors`, `model.pt` or `pytorch_model.bin` (whose
    /// order is the registration order), `model.safetensors.index.json`, `model.safetensors`, in that
    /// order; `nil` when there are none.
    static func find(in folder: URL) throws(CheckpointError) -> ModelWeightsListing? {
        let manager = FileManager.default
        for name in ["adapter_model.safetensors", "model.pt", "pytorch_model.bin", "model.safetensors.index.json", "model.safetensors"] {
            let url = folder.appendingPathComponent(name)
            guard manager.fileExists(atPath: url.path) else { continue }
            if name == "model.pt" || name == "pytorch_model.bin" {
                let weights = try TorchModelWeights.torchStateDict(url)  // names and shapes only: nothing is converted
                let order = try weights.names.map { name throws(CheckpointError) in ModelTensorShape(name: name, shape: try weights.shape(name)) }
                return ModelWeightsListing(file: url, weights: order, isRegistrationOrder: true, isAdapter: false)
            }
            do throws(SafeTensorsError) {
                switch name {
                case "model.safetensors.index.json":
                    let index = try ShardedSafeTensors(indexURL: url)
                    var weights: [ModelTensorShape] = []
                    for shard in index.shardNames {
                        let file = try SafeTensorsFile(contentsOf: index.url(ofShard: shard))
                        weights += file.names.map { ModelTensorShape(name: $0, shape: file.entries[$0]!.shape) }
                    }
                    return ModelWeightsListing(file: url, weights: weights, isRegistrationOrder: false, isAdapter: false)
                default:
                    let file = try SafeTensorsFile(contentsOf: url)
                    let weights = file.names.map { ModelTensorShape(name: $0, shape: file.entries[$0]!.shape) }
                    return ModelWeightsListing(file: url, weights: weights, isRegistrationOrder: false, isAdapter: name.hasPrefix("adapter"))
                }
            } catch {
                throw CheckpointError(path: error.path, problem: error.problem)
            }
        }
        return nil
    }

    /// A JSON object file of `folder` (`config.json`), or an empty dictionary when absent.
    static func json(_ name: String, in folder: URL) throws(CheckpointError) -> [String: Any]? {
        let url = folder.appendingPathComponent(name)
        guard FileManager.default.fileExists(atPath: url.path) else { return nil }
        guard let data = try? Data(contentsOf: url), let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw CheckpointError(path: url.path, problem: "not a JSON object")
        }
        return object
    }
}
