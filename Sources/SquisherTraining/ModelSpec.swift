import Foundation
import SquisherIO
import SquisherLayers
import SquisherTensor

/// A model described as JSON: the layers of an `nn.Sequential`, with PyTorch's class names and
/// constructor arguments, so that a model trained in PyTorch can be rebuilt here and its
/// `state_dict` (saved as safetensors) loaded unchanged.
///
/// ```json
/// {"layers": [
///   {"name": "fc1", "type": "Linear", "in_features": 64, "out_features": 32},
///   {"name": "relu", "type": "ReLU"},
///   {"name": "fc2", "type": "Linear", "in_features": 32, "out_features": 10}
/// ]}
/// ```
/// Types: `Linear` (in_features, out_features, bias), `Conv2d` (in_channels, out_channels,
/// kernel_size, stride, padding, bias), `ReLU`, `Tanh`, `Sigmoid`, `GELU` (approximate: "none" or
/// "tanh"), `MaxPool2d`/`AvgPool2d` (kernel_size, stride), `Flatten`, `LayerNorm` (normalized_shape,
/// eps, elementwise_affine), `Embedding` (num_embeddings, embedding_dim), `Dropout` (p).
/// Names default to the layer's index (`"0"`, `"1"`, ...), as `nn.Sequential` numbers them.
public enum ModelSpec {
    /// Errors name the file, the layer (index and name) and the key.
    public struct SpecError: FileProblemError {
        /// The spec file.
        public var path: String
        /// What is wrong, naming the layer and key.
        public var problem: String
        /// The error this one wraps (a `FileAccessError` for an unreadable file), or nil.
        public var cause: (any Error)?

        /// An error about the spec at `path`.
        public init(path: String, problem: String, cause: (any Error)? = nil) {
            self.path = path
            self.problem = problem
            self.cause = cause
        }
    }

    /// Builds the model described by the JSON file at `url`; parameters are initialized from
    /// `seed` (PyTorch's default schemes) until weights are loaded. `maximumParameters` bounds the
    /// parameters the spec may declare (pass the element count of the weights file, so that a spec
    /// with huge sizes is refused before anything is allocated).
    public static func load(from url: URL, seed: UInt64 = 0, maximumParameters: Int = Int.max) throws(SpecError) -> Sequential {
        let data: Data
        do { data = try InputFile.read(url) } catch {
            throw SpecError(path: url.path, problem: error.reason.description, cause: error)
        }
        return try build(json: data, path: url.path, seed: seed, maximumParameters: maximumParameters)
    }

    /// Builds a model from JSON bytes; `path` names the source in errors.
    /// - Throws: ``SpecError`` naming the layer and key; also when the parameters declared (checked
    ///   for overflow, before any allocation) exceed `maximumParameters`.
    public static func build(json data: Data, path: String = "<model spec>", seed: UInt64 = 0, maximumParameters: Int = Int.max) throws(SpecError) -> Sequential {
        func fail(_ problem: String) -> SpecError { SpecError(path: path, problem: problem) }
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any], let layers = object["layers"] as? [[String: Any]] else {
            throw fail("expected a JSON object with a \"layers\" list of layer objects")
        }
        guard !layers.isEmpty else { throw fail("\"layers\" is empty") }
        var generator = SplitMix64(seed: seed)
        var built: [(String, any Layer)] = []
        var declared = 0
        for (index, layer) in layers.enumerated() {
            let name = (layer["name"] as? String) ?? String(index)
            let label = "layer \(index) ('\(name)')"
            guard let type = layer["type"] as? String else { throw fail("\(label) has no \"type\"") }
            func int(_ key: String, _ fallback: Int? = nil) throws(SpecError) -> Int {
                if let value = layer[key] as? Int, value >= 0 { return value }
                if let values = layer[key] as? [Int], let first = values.first, values.allSatisfy({ $0 == first }), first >= 0 { return first }
                if layer[key] == nil, let fallback { return fallback }
                throw fail("\(label) (\(type)): \"\(key)\" must be a non-negative integer (or a list of equal ones)")
            }
            func pair(_ key: String, _ fallback: (Int, Int)) throws(SpecError) -> (Int, Int) {
                if layer[key] == nil { return fallback }
                if let value = layer[key] as? Int, value >= 0 { return (value, value) }
                if let values = layer[key] as? [Int], values.count == 2, values.allSatisfy({ $0 >= 0 }) { return (values[0], values[1]) }
                throw fail("\(label) (\(type)): \"\(key)\" must be an integer or a pair [height, width]")
            }
            let bias = (layer["bias"] as? Bool) ?? true
            // Parameters this layer declares, overflow-checked, before any allocation.
            func product(_ factors: [Int]) throws(SpecError) -> Int {
                var result = 1
                for factor in factors {
                    let (p, overflow) = result.multipliedReportingOverflow(by: factor)
                    guard !overflow, factor >= 0 else { throw fail("\(label) (\(type)): sizes \(factors) overflow") }
                    result = p
                }
                return result
            }
            var count = 0
            switch type {
            case "Linear": count = try product([int("in_features"), int("out_features")]) + (bias ? try int("out_features") : 0)
            case "Conv2d":
                let kernel = try pair("kernel_size", (0, 0))
                count = try product([int("in_channels"), int("out_channels"), kernel.0, kernel.1]) + (bias ? try int("out_channels") : 0)
            case "Embedding": count = try product([int("num_embeddings"), int("embedding_dim")])
            case "LayerNorm":
                if let shape = (layer["normalized_shape"] as? [Int]) ?? (layer["normalized_shape"] as? Int).map({ [$0] }) { count = try product(shape + [2]) }
            default: break
            }
            let (total, overflow) = declared.addingReportingOverflow(count)
            guard !overflow, total <= maximumParameters else {
                throw fail("\(label) (\(type)) brings the parameters declared to \(overflow ? "more than Int.max" : "\(total)"), more than the \(maximumParameters) values of the weights")
            }
            declared = total
            do {
                let made: any Layer
                switch type {
                case "Linear": made = Linear(inputFeatures: try int("in_features"), outputFeatures: try int("out_features"), bias: bias, generator: &generator)
                case "Conv2d":
                    made = try Conv2d(inputChannels: try int("in_channels"), outputChannels: try int("out_channels"), kernelSize: try pair("kernel_size", (-1, -1)),
                                      stride: try pair("stride", (1, 1)), padding: try pair("padding", (0, 0)), bias: bias, generator: &generator)
                case "ReLU": made = ReLU()
                case "Tanh": made = Tanh()
                case "Sigmoid": made = Sigmoid()
                case "GELU": made = GELU(approximate: (layer["approximate"] as? String) == "tanh" ? .tanh : .none)
                case "MaxPool2d": made = try MaxPool2d(kernelSize: try pair("kernel_size", (-1, -1)), stride: layer["stride"] == nil ? nil : try pair("stride", (1, 1)))
                case "AvgPool2d": made = try AvgPool2d(kernelSize: try pair("kernel_size", (-1, -1)), stride: layer["stride"] == nil ? nil : try pair("stride", (1, 1)))
                case "Flatten": made = Flatten()
                case "LayerNorm":
                    let shape = (layer["normalized_shape"] as? [Int]) ?? (layer["normalized_shape"] as? Int).map { [$0] }
                    guard let shape else { throw fail("\(label) (LayerNorm): \"normalized_shape\" must be an integer or a list of integers") }
                    made = try LayerNorm(normalizedShape: shape, eps: Float((layer["eps"] as? Double) ?? 1e-5), elementwiseAffine: (layer["elementwise_affine"] as? Bool) ?? true)
                case "Embedding": made = try Embedding(numEmbeddings: try int("num_embeddings"), embeddingDim: try int("embedding_dim"), generator: &generator)
                case "Dropout": made = try Dropout(probability: Float((layer["p"] as? Double) ?? 0.5), generator: &generator)
                default:
                    throw fail("\(label) has unsupported type \"\(type)\" (supported: Linear, Conv2d, ReLU, Tanh, Sigmoid, GELU, MaxPool2d, AvgPool2d, Flatten, LayerNorm, Embedding, Dropout)")
                }
                built.append((name, made))
            } catch let error as SpecError {
                throw error
            } catch {
                throw SpecError(path: path, problem: "\(label) (\(type)): \(error)", cause: error)
            }
        }
        do { return try Sequential(named: built) } catch { throw SpecError(path: path, problem: "\(error)", cause: error) }
    }
}
