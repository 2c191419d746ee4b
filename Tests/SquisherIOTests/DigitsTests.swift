import Foundation
import SquisherData
import SquisherIO
import Testing

@Suite("Bundled digits")
struct DigitsTests {
    @Test("1,797 samples, balanced classes, pixels / 16 in file order")
    func bundled() throws {
        let digits = try Digits.load()
        #expect(digits.count == 1797 && digits.inputs.shape == [1797, 64] && digits.classCount == 10)
        // Class counts of the UCI/sklearn copy (data/README.md: 174-183 each).
        #expect(digits.classCounts == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180])
        // First CSV line: "0,0,5,13,9,1,0,0,..." label 0.
        #expect(Array(digits.inputs.scalars.prefix(6)) == [0, 0, 5, 13, 9, 1].map { Float($0) / 16 })
        #expect(digits.labels.first == 0)
        // It equals the oracle's float32 digits exactly (sklearn order, pixels / 16).
        let url = try #require(Bundle.module.url(forResource: "digits_data", withExtension: "safetensors", subdirectory: "Resources"))
        let oracle = try SafeTensorsFile(contentsOf: url)
        #expect(try oracle.tensor("X").scalars == digits.inputs.scalars)
        #expect(try oracle.integers("y") == digits.labels)
        #expect(try Digits.images().inputs.shape == [1797, 1, 8, 8])
    }
}
