/// The geometry of a 2-D convolution window sliding over one `[channels, height, width]` image,
/// with the im2col / col2im kernels that turn a convolution into a matrix product (as PyTorch's
/// `F.unfold` / `F.fold` with dilation 1).
///
/// The *column matrix* of one image has ``rows`` `= channels * kernelHeight * kernelWidth` rows and
/// ``columns`` `= outputHeight * outputWidth` columns:
///
///     columns[(c * kernelHeight + i) * kernelWidth + j][oh * outputWidth + ow]
///         = image[c][oh * strideHeight - paddingHeight + i][ow * strideWidth - paddingWidth + j]
///
/// (zero where the window position falls into the padding). Row order matches a PyTorch conv
/// weight `[out, in, kh, kw]` flattened to `[out, in*kh*kw]`, so `output = weight · columns`.
///
/// Output size: `outputHeight = (height + 2 * paddingHeight - kernelHeight) / strideHeight + 1`
/// (floor division), likewise for the width.
public struct Im2Col: Sendable, Hashable {
    /// Channels of the image.
    public let channels: Int
    /// Height of the (unpadded) image.
    public let height: Int
    /// Width of the (unpadded) image.
    public let width: Int
    /// Window height.
    public let kernelHeight: Int
    /// Window width.
    public let kernelWidth: Int
    /// Vertical step between window positions.
    public let strideHeight: Int
    /// Horizontal step between window positions.
    public let strideWidth: Int
    /// Implicit zero rows added above and below the image.
    public let paddingHeight: Int
    /// Implicit zero columns added left and right of the image.
    public let paddingWidth: Int
    /// Number of vertical window positions.
    public let outputHeight: Int
    /// Number of horizontal window positions.
    public let outputWidth: Int

    /// Rows of the column matrix: `channels * kernelHeight * kernelWidth` (a conv's fan-in).
    public var rows: Int { channels * kernelHeight * kernelWidth }
    /// Columns of the column matrix: `outputHeight * outputWidth` (window positions).
    public var columns: Int { outputHeight * outputWidth }
    /// Scalars in one image: `channels * height * width`.
    public var imageCount: Int { channels * height * width }

    /// Creates the geometry and computes the output size.
    /// - Throws: ``TensorError/invalidArgument(argument:reason:)`` when a size is not positive,
    ///   a padding is negative, or the window does not fit into the padded image.
    public init(
        channels: Int, height: Int, width: Int,
        kernelHeight: Int, kernelWidth: Int,
        strideHeight: Int = 1, strideWidth: Int = 1,
        paddingHeight: Int = 0, paddingWidth: Int = 0
    ) throws(TensorError) {
        guard channels > 0, height > 0, width > 0 else {
            throw .invalidArgument(argument: "Im2Col image size [\(channels), \(height), \(width)]", reason: "channels, height and width must be positive")
        }
        guard kernelHeight > 0, kernelWidth > 0, strideHeight > 0, strideWidth > 0 else {
            throw .invalidArgument(
                argument: "Im2Col kernel (\(kernelHeight), \(kernelWidth)) / stride (\(strideHeight), \(strideWidth))",
                reason: "kernel sizes and strides must be positive")
        }
        guard paddingHeight >= 0, paddingWidth >= 0 else {
            throw .invalidArgument(argument: "Im2Col padding (\(paddingHeight), \(paddingWidth))", reason: "padding must be non-negative")
        }
        guard height + 2 * paddingHeight >= kernelHeight, width + 2 * paddingWidth >= kernelWidth else {
            throw .invalidArgument(
                argument: "Im2Col image \(height)x\(width) with padding (\(paddingHeight), \(paddingWidth))",
                reason: "smaller than the kernel \(kernelHeight)x\(kernelWidth)")
        }
        self.channels = channels
        self.height = height
        self.width = width
        self.kernelHeight = kernelHeight
        self.kernelWidth = kernelWidth
        self.strideHeight = strideHeight
        self.strideWidth = strideWidth
        self.paddingHeight = paddingHeight
        self.paddingWidth = paddingWidth
        outputHeight = (height + 2 * paddingHeight - kernelHeight) / strideHeight + 1
        outputWidth = (width + 2 * paddingWidth - kernelWidth) / strideWidth + 1
    }

    /// The range of output columns `ow` whose input column `ow * strideWidth - paddingWidth + j`
    /// lies inside the image, for kernel column `j`.
    @inlinable
    func validOutputColumns(kernelColumn j: Int) -> Range<Int> {
        // ow * s - p + j >= 0  <=>  ow >= ceil((p - j) / s)
        let offset = paddingWidth - j
        let low = offset <= 0 ? 0 : (offset + strideWidth - 1) / strideWidth
        // ow * s - p + j <= width - 1  <=>  ow <= floor((width - 1 + p - j) / s)
        let top = width - 1 + paddingWidth - j
        let high = top < 0 ? -1 : top / strideWidth
        let lower = Swift.min(low, outputWidth)
        return lower..<Swift.max(lower, Swift.min(high + 1, outputWidth))
    }

    /// Writes the column matrix of one image.
    /// - Parameters:
    ///   - image: `[channels, height, width]`, row-major (``imageCount`` scalars).
    ///   - columnsOut: the `[rows, columns]` matrix; row `r` starts at `columnsOut + r * leadingDimension`.
    ///   - leadingDimension: distance between rows of `columnsOut`, `>= columns`. Use `columns` for a
    ///     standalone matrix, or `batch * columns` with `columnsOut` offset by `n * columns` to place
    ///     sample `n` of a batch side by side in one `[rows, batch * columns]` matrix (one GEMM per batch).
    /// - Complexity: `rows * columns` writes.
    @inlinable
    public func im2col(image: UnsafePointer<Float>, columnsOut: UnsafeMutablePointer<Float>, leadingDimension: Int) {
        let ow = outputWidth
        for c in 0..<channels {
            let plane = image + c * height * width
            for i in 0..<kernelHeight {
                for j in 0..<kernelWidth {
                    let row = columnsOut + ((c * kernelHeight + i) * kernelWidth + j) * leadingDimension
                    let valid = validOutputColumns(kernelColumn: j)
                    for oh in 0..<outputHeight {
                        let destination = row + oh * ow
                        let ih = oh * strideHeight - paddingHeight + i
                        guard ih >= 0, ih < height else {
                            destination.update(repeating: 0, count: ow)
                            continue
                        }
                        // Short runs (a row of a small image): plain loops, not memset/memmove calls.
                        for w in 0..<valid.lowerBound { destination[w] = 0 }
                        // Offset of window column 0 in the plane; only valid columns index with it.
                        let base = ih * width - paddingWidth + j
                        if strideWidth == 1 {
                            copyRun(from: plane + (base + valid.lowerBound), to: destination + valid.lowerBound, count: valid.count)
                        } else {
                            for w in valid { destination[w] = plane[base + w * strideWidth] }
                        }
                        for w in valid.upperBound..<ow { destination[w] = 0 }
                    }
                }
            }
        }
    }

    /// Adds a column matrix back into an image (the adjoint of ``im2col(image:columnsOut:leadingDimension:)``):
    /// every entry is added to the image pixel it was copied from; entries in the padding are dropped.
    /// This is the input gradient of a convolution given the gradient of its column matrix.
    /// - Parameters:
    ///   - columnsIn: the `[rows, columns]` matrix with row stride `leadingDimension` (as in `im2col`).
    ///   - image: `[channels, height, width]`; the caller zeroes it first for a plain col2im.
    /// - Complexity: `rows * columns` additions.
    @inlinable
    public func col2im(columnsIn: UnsafePointer<Float>, leadingDimension: Int, addingInto image: UnsafeMutablePointer<Float>) {
        let ow = outputWidth
        for c in 0..<channels {
            let plane = image + c * height * width
            for i in 0..<kernelHeight {
                for j in 0..<kernelWidth {
                    let row = columnsIn + ((c * kernelHeight + i) * kernelWidth + j) * leadingDimension
                    let valid = validOutputColumns(kernelColumn: j)
                    for oh in 0..<outputHeight {
                        let ih = oh * strideHeight - paddingHeight + i
                        guard ih >= 0, ih < height else { continue }
                        let source = row + oh * ow
                        let base = ih * width - paddingWidth + j
                        if strideWidth == 1 {
                            // Contiguous: add the valid run 8 lanes at a time.
                            let to = plane + (base + valid.lowerBound), from = source + valid.lowerBound
                            let count = valid.count
                            var w = 0
                            while w + 8 <= count {
                                let sum = UnsafeRawPointer(to + w).loadUnaligned(as: SIMD8<Float>.self)
                                    + UnsafeRawPointer(from + w).loadUnaligned(as: SIMD8<Float>.self)
                                UnsafeMutableRawPointer(to + w).storeBytes(of: sum, as: SIMD8<Float>.self)
                                w += 8
                            }
                            while w < count { to[w] += from[w]; w += 1 }
                        } else {
                            for w in valid { plane[base + w * strideWidth] += source[w] }
                        }
                    }
                }
            }
        }
    }
}

/// Copies `count` floats 8 lanes at a time (inlined: for the short rows of im2col, where a `memmove`
/// call costs more than the copy).
@inlinable @inline(__always)
func copyRun(from source: UnsafePointer<Float>, to destination: UnsafeMutablePointer<Float>, count: Int) {
    var w = 0
    while w + 8 <= count {
        UnsafeMutableRawPointer(destination + w).storeBytes(
            of: UnsafeRawPointer(source + w).loadUnaligned(as: SIMD8<Float>.self), as: SIMD8<Float>.self)
        w += 8
    }
    while w < count {
        destination[w] = source[w]
        w += 1
    }
}
