import Foundation
import Testing
import SquisherIO
import SquisherTensor

/// Real files written by PyTorch's `safetensors` 0.8.0 (copied from ../shared/oracles).
@Suite("SafeTensors oracle files")
struct SafeTensorsOracleTests {
    @Test func mlpWeightsNamesShapesAndValues() throws {
        let file = try SafeTensorsFile(contentsOf: resource("weights", "safetensors"))
        // Names and shapes from oracles/manifest.json, models.mlp_digits.parameters_in_order
        // (the file stores them sorted by name, as safetensors.torch.save_file does).
        #expect(Set(file.names) == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"])
        #expect(file.entries.mapValues(\.shape) == ["fc1.weight": [32, 64], "fc1.bias": [32], "fc2.weight": [10, 32], "fc2.bias": [10]])
        #expect(file.entries.values.allSatisfy { $0.dtype == .float32 })
        #expect(file.metadata == ["info": #"{"dtype": "float32"}"#])
        // Values read with Python's struct.unpack('<f', ...) at the data offsets of the header
        // (bytes shown); float32 to float32 is exact, so the comparison is bit-exact.
        let w1 = try file.tensor("fc1.weight")
        #expect(w1[0, 0] == -0x1.eaa8p-11)        // bytes 00 54 75 ba, -0.0009358525276184082
        #expect(w1[5, 7] == 0x1.12703p-6)         // bytes 18 38 89 3c, 0.016750380396842957
        #expect(w1[31, 63] == -0x1.ac343p-5)      // bytes 18 1a 56 bd, -0.052270978689193726
        #expect(try file.tensor("fc1.bias")[0] == -0x1.0b92ap-4)   // bytes 50 c9 85 bd
        #expect(try file.tensor("fc2.weight")[9, 31] == -0x1.083a28p-3)  // bytes 14 1d 04 be
        #expect(try file.doubles("fc2.bias")[9] == -0x1.3e05fap-6)  // bytes fd 02 9f bc
        #expect(try file.allTensors().scalarCount == 2410, "total_params in the manifest")
    }

    @Test func digitsDataMatchesBundledCSV() throws {
        // digits/data.safetensors holds sklearn's digits as float32 pixels/16 (X) and int64
        // labels (y); the CSV copy divided by 16 must equal it exactly (k/16 is exact in float32).
        let oracle = try SafeTensorsFile(contentsOf: resource("digits_data", "safetensors"))
        #expect(oracle.entries["y"]?.dtype == .int64)
        let table = try CSVLoader.load(resource("digits", "csv"))
        #expect(try oracle.integers("y") == table.labels)
        let x = try oracle.tensor("X")
        #expect(x.shape == [1797, 64])
        #expect(x.scalars == table.features.scalars.map { $0 / 16 })
    }

    @Test func rewriteInOriginalDTypesIsByteIdenticalInData() throws {
        // Reading the oracle and writing it back with its own dtypes keeps every value bit-exact.
        let folder = try TemporaryFolder()
        let input = try SafeTensorsFile(contentsOf: resource("weights", "safetensors"))
        let url = folder.file("copy.safetensors")
        try SafeTensorsWriter.write(input.allTensors(), metadata: input.metadata, dtypes: input.entries.mapValues(\.dtype), to: url)
        let output = try SafeTensorsFile(contentsOf: url)
        for name in input.names {
            let a = try input.withRawBytes(of: name) { [UInt8]($0) }
            let b = try output.withRawBytes(of: name) { [UInt8]($0) }
            #expect(a == b, "\(name)")
        }
    }
}
