import Foundation
import SquisherIO
import SquisherTensor

/// Loads MNIST-format data sets (MNIST, Fashion-MNIST, EMNIST, KMNIST) from a pair of IDX files,
/// e.g. `train-images-idx3-ubyte` and `train-labels-idx1-ubyte` (decompressed).
///
/// Source of the format: Y. LeCun, C. Cortes, C. J. C. Burges, "THE MNIST DATABASE of
/// handwritten digits". No data is bundled: download the files yourself, under their licences.
public enum MNIST {
    /// Loads images (magic `0x00000803`) and labels (magic `0x00000801`) into a ``Dataset``:
    /// inputs are pixels / 255 in [0, 1] (float32), shaped `[n, 1, rows, cols]` (`.channels`) or
    /// `[n, rows * cols]` (`.flat`); labels as stored.
    /// - Parameter classCount: the number of classes (10 for MNIST); labels must lie below it.
    /// - Throws: ``DataFileError`` naming the offending file: wrong magic (expected and actual
    ///   in hex), truncated data, image and label counts that differ, a label `>= classCount`.
    public static func load(
        images imagesURL: URL, labels labelsURL: URL, layout: IDXLoader.ImageLayout = .channels, classCount: Int = 10
    ) throws(DataFileError) -> Dataset {
        let (images, labels) = try IDXLoader.load(images: imagesURL, labels: labelsURL, layout: layout)
        if let bad = labels.firstIndex(where: { $0 >= classCount }) {
            throw DataFileError(path: labelsURL.path, problem: "label \(labels[bad]) of sample \(bad) is not below classCount \(classCount)")
        }
        do { return try Dataset(inputs: images, labels: labels, classCount: classCount) } catch {
            throw DataFileError(path: labelsURL.path, problem: "\(error)", cause: error)
        }
    }
}
