import Foundation
import SquisherIO
import SquisherTensor

/// The bundled handwritten-digits data set: 1,797 grayscale 8×8 images of the digits 0-9.
///
/// Source and licence: "Optical Recognition of Handwritten Digits" by E. Alpaydin and C. Kaynak
/// (1998), UCI Machine Learning Repository, licensed under CC BY 4.0
/// (https://creativecommons.org/licenses/by/4.0/). The copy shipped here is the 1,797-image
/// version that scikit-learn ships (`sklearn.datasets.load_digits`), one image per line: 64
/// pixel counts 0...16 row-major, then the label. See `Resources/README.md`.
///
/// Samples are kept in file order, which is scikit-learn's order (the order of the reference
/// `digits/data.safetensors`). Classes are balanced: 174 to 183 images each.
public enum Digits {
    /// The number of images.
    public static let sampleCount = 1797
    /// The number of classes (digits 0-9).
    public static let classCount = 10
    /// The largest pixel value; inputs are divided by it.
    public static let maximumPixelValue: Float = 16

    /// The URL of the bundled `digits.csv` resource.
    /// - Throws: ``DataFileError`` when the resource is not in the module's bundle.
    public static func resourceURL() throws(DataFileError) -> URL {
        guard let url = Bundle.module.url(forResource: "digits", withExtension: "csv") else {
            throw DataFileError(path: Bundle.module.bundlePath + "/digits.csv",
                                problem: "the bundled digits data set is missing from the SquisherData resource bundle (was the package built with SwiftPM, and the .resources folder kept beside the executable?)")
        }
        return url
    }

    /// The data set with inputs `[1797, 64]` = pixel counts / 16 (float32, exact: a count over a
    /// power of two), labels 0...9, `classCount` 10, in file (= scikit-learn's) order.
    /// - Throws: ``DataFileError`` when the resource is missing or malformed.
    public static func load() throws(DataFileError) -> Dataset {
        try load(from: resourceURL())
    }

    /// The same data from a copy of `digits.csv` at `url` (64 pixel fields then the label).
    /// - Throws: ``DataFileError`` naming the file when it is not 1,797 rows of 64 pixels
    ///   in 0...16 and a label in 0...9.
    public static func load(from url: URL) throws(DataFileError) -> Dataset {
        let table = try CSVLoader.load(url, hasHeader: false, labelColumn: .last)
        let shape = table.features.shape
        guard shape == [sampleCount, 64] else {
            throw DataFileError(path: url.path, problem: "expected \(sampleCount) rows of 64 pixels and a label, found features of shape \(shape)")
        }
        var features = table.features
        let badPixel = features.withUnsafeBufferPointer { $0.firstIndex { !($0 >= 0 && $0 <= maximumPixelValue) } }
        if let bad = badPixel {
            throw DataFileError(path: url.path, line: bad / 64 + 1, column: bad % 64 + 1,
                                problem: "pixel \(features.scalars[bad]) is outside 0...16")
        }
        features.scale(by: 1 / maximumPixelValue)  // exact: 1/16 is a power of two
        do {
            return try Dataset(inputs: features, labels: table.labels, classCount: classCount)
        } catch {
            let bad = table.labels.firstIndex { !(0..<classCount).contains($0) } ?? 0
            throw DataFileError(path: url.path, line: bad + 1, column: 65, problem: "label \(table.labels[bad]) is outside 0...9 (\(error))", cause: error)
        }
    }

    /// The data set shaped for convolutional networks: inputs `[1797, 1, 8, 8]` (one channel,
    /// image rows outermost, as scikit-learn's `digits.images`), same values and order as ``load()``.
    public static func images() throws(DataFileError) -> Dataset {
        let flat = try load()
        do {
            return try Dataset(inputs: flat.inputs.reshaped([flat.count, 1, 8, 8]), labels: flat.labels, classCount: classCount)
        } catch {
            throw DataFileError(path: (try? resourceURL().path) ?? "digits.csv", problem: "cannot reshape to [n, 1, 8, 8]: \(error)", cause: error)
        }
    }
}
