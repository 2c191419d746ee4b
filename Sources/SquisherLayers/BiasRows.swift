/// Writes `bias` (`width` floats) into each of the `rows` rows of `output` (row-major, `[rows, width]`),
/// the starting value a fully connected layer's GEMM accumulates onto: the first row copied from
/// `bias`, then the filled rows doubled (1, 2, 4, ... rows per copy), so a narrow layer's thousands of
/// rows take a few large copies instead of one short `memmove` call per row.
func fillBiasRows(_ bias: UnsafePointer<Float>, width: Int, rows: Int, into output: UnsafeMutablePointer<Float>) {
    guard rows > 0, width > 0 else { return }
    output.update(from: bias, count: width)
    var filled = 1
    while filled < rows {
        let copy = Swift.min(filled, rows - filled)
        (output + filled * width).update(from: output, count: copy * width)
        filled += copy
    }
}
