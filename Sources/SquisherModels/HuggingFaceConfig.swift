import Foundation
import SquisherTensor

/// A model-folder problem: the file, the key or tensor, and what was expected.
public struct ModelLoadingError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The file at fault (`config.json`, `model.safetensors`, a data file).
    public var file: String
    /// What is wrong, naming the key or tensor.
    public var problem: String

    public init(file: String, problem: String) {
        self.file = file
        self.problem = problem
    }

    public var description: String { "\(file): \(problem)" }
}

/// The fields of a Hugging Face `config.json` that the supported architectures read, with
/// Hugging Face's defaults where a key may be missing.
public struct HuggingFaceConfig: Sendable {
    /// The file it was read from.
    public let path: String
    /// `model_type` (`"gpt2"`, `"bert"`).
    public let modelType: String
    /// `architectures[0]` when present (`"GPT2LMHeadModel"`, `"BertForSequenceClassification"`).
    public let architecture: String?
    private let values: [String: any Sendable]

    /// Reads `config.json`.
    /// - Throws: ``ModelLoadingError`` when the file is missing, not a JSON object, or has no `model_type`.
    public init(contentsOf url: URL) throws(ModelLoadingError) {
        path = url.path
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: Data(contentsOf: url))
        } catch {
            throw ModelLoadingError(file: url.path, problem: "cannot read a JSON object: \(error.localizedDescription)")
        }
        guard let dictionary = object as? [String: Any] else { throw ModelLoadingError(file: url.path, problem: "expected a JSON object") }
        var values: [String: any Sendable] = [:]
        for (key, value) in dictionary {
            switch value {
            case let number as NSNumber: values[key] = number.doubleValue
            case let string as String: values[key] = string
            case let array as [Any]: values[key] = array.compactMap { $0 as? String }
            case let object as [String: Any]: values[key] = object.count
            default: break
            }
        }
        self.values = values
        guard let type = values["model_type"] as? String else { throw ModelLoadingError(file: url.path, problem: "no \"model_type\"") }
        modelType = type
        architecture = (values["architectures"] as? [String])?.first
    }

    /// Integer `key`, or `fallback` when absent (nil fallback: required).
    /// - Throws: ``ModelLoadingError`` naming the key when it is missing, not a positive integer, or out of `range`.
    public func integer(_ key: String, default fallback: Int? = nil, range: ClosedRange<Int> = 1...100_000_000) throws(ModelLoadingError) -> Int {
        guard let raw = values[key] else {
            guard let fallback else { throw ModelLoadingError(file: path, problem: "missing \"\(key)\" (an integer)") }
            return fallback
        }
        guard let number = raw as? Double, number.rounded() == number, range.contains(Int(number)) else {
            throw ModelLoadingError(file: path, problem: "\"\(key)\" is \(raw), expected an integer in \(range)")
        }
        return Int(number)
    }

    /// Number `key`, or `fallback` when absent.
    public func number(_ key: String, default fallback: Double) throws(ModelLoadingError) -> Double {
        guard let raw = values[key] else { return fallback }
        guard let number = raw as? Double, number.isFinite else { throw ModelLoadingError(file: path, problem: "\"\(key)\" is \(raw), expected a number") }
        return number
    }

    /// String `key`, or `fallback` when absent.
    public func string(_ key: String, default fallback: String) throws(ModelLoadingError) -> String {
        guard let raw = values[key] else { return fallback }
        guard let string = raw as? String else { throw ModelLoadingError(file: path, problem: "\"\(key)\" is \(raw), expected a string") }
        return string
    }

    /// Boolean `key` (JSON true/false), or `fallback` when absent.
    public func flag(_ key: String, default fallback: Bool) throws(ModelLoadingError) -> Bool {
        guard let raw = values[key] else { return fallback }
        guard let number = raw as? Double, number == 0 || number == 1 else { throw ModelLoadingError(file: path, problem: "\"\(key)\" is \(raw), expected true or false") }
        return number == 1
    }

    /// The number of entries of object `key` (e.g. `id2label`), if present.
    public func objectCount(_ key: String) -> Int? { values[key] as? Int }

    /// The GELU of a Hugging Face `activation_function` / `hidden_act` name.
    /// - Throws: ``ModelLoadingError`` for an activation this package does not implement.
    public func gelu(_ key: String, default fallback: String) throws(ModelLoadingError) -> GELUChoice {
        let name = try string(key, default: fallback)
        switch name {
        case "gelu": return .erf
        case "gelu_new", "gelu_pytorch_tanh", "gelu_fast": return .tanh
        default: throw ModelLoadingError(file: path, problem: "\"\(key)\" is \"\(name)\"; supported: gelu (erf), gelu_new, gelu_pytorch_tanh (tanh)")
        }
    }

    /// Which GELU formula a config asks for.
    public enum GELUChoice: Sendable { case erf, tanh }
}
