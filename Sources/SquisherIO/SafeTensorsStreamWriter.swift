import Foundation
import SquisherTensor
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes a safetensors file one tensor at a time, for models too large to hold twice in memory.
///
/// The header (names, dtypes, shapes, metadata) is fixed up front, so the writer knows every
/// offset before the first byte of data. Data goes to a temporary file beside the destination
/// (`.<name>.tmp-<pid>-<random>`, see ``OutputStaging``); ``finish()`` checks that every tensor was written, flushes it
/// to disk (`fsync`) and renames it over the destination in one atomic step. On any error, on
/// ``cancel()``, or when the writer is released unfinished, the temporary file is removed, so the
/// destination never holds a half-written file. Memory stays bounded by a 1 MB conversion buffer
/// plus the tensor the caller passes.
///
/// ```swift
/// let writer = try SafeTensorsStreamWriter(to: url, tensors: [
///     .init(name: "fc1.weight", dtype: .bfloat16, shape: [32, 64]),
///     .init(name: "fc1.bias", dtype: .float32, shape: [32]),
/// ])
/// try writer.write("fc1.weight", weight)   // in the declared order
/// try writer.write("fc1.bias", bias)
/// try writer.finish()
/// ```
///
/// Values are converted to the declared dtype with round-to-nearest-even; a finite value that
/// overflows the dtype, or a non-integer for an integer dtype, is an error naming the tensor and
/// element. Not thread-safe: use one writer from one task.
public final class SafeTensorsStreamWriter {
    /// One tensor's declared name, element type and shape.
    public struct TensorSpec: Sendable, Hashable {
        /// The tensor name (the header key).
        public var name: String
        /// The element type stored in the file.
        public var dtype: SafeTensorsDType
        /// The shape, outermost first.
        public var shape: [Int]
        /// The number of elements, the product of `shape`.
        public var elementCount: Int { shape.reduce(1, *) }

        /// Declares a tensor.
        public init(name: String, dtype: SafeTensorsDType = .float32, shape: [Int]) {
            self.name = name
            self.dtype = dtype
            self.shape = shape
        }
    }

    /// The destination file.
    public let url: URL
    /// The declared tensors, in data order.
    public let specs: [TensorSpec]
    private let temporaryPath: String
    private var descriptor: Int32
    private var nextIndex = 0
    private var closed = false
    /// Elements converted per chunk (1 MB of F64: few, large writes).
    private static let chunkElements = 1 << 17

    /// Creates the temporary file and writes the header.
    /// - Parameters:
    ///   - url: the destination; replaced atomically by ``finish()`` if it exists.
    ///   - tensors: the tensors in the order they will be written; names must be unique and not
    ///     `__metadata__`; dimensions non-negative.
    ///   - metadata: the `__metadata__` string map (omitted from the header when empty).
    /// - Throws: ``SafeTensorsError`` naming `url` for a bad declaration or an unwritable folder.
    public init(to url: URL, tensors: [TensorSpec], metadata: [String: String] = [:]) throws(SafeTensorsError) {
        let path = url.path
        func fail(_ problem: String) -> SafeTensorsError { SafeTensorsError(path: path, problem: problem) }
        var seen: Set<String> = []
        var header = "{"
        if !metadata.isEmpty {
            header += "\"__metadata__\":{"
            header += metadata.sorted { $0.key < $1.key }
                .map { HeaderJSON.quoted($0.key) + ":" + HeaderJSON.quoted($0.value) }.joined(separator: ",")
            header += "}"
        }
        var offset = 0
        for spec in tensors {
            guard spec.name != "__metadata__" else { throw fail("a tensor cannot be named '__metadata__'") }
            guard seen.insert(spec.name).inserted else { throw fail("tensor '\(spec.name)' is declared twice") }
            guard spec.shape.allSatisfy({ $0 >= 0 }) else {
                throw fail("tensor '\(spec.name)' has shape \(spec.shape); dimensions must be non-negative")
            }
            let size = spec.elementCount * spec.dtype.byteCount
            if header.count > 1 { header += "," }
            header += HeaderJSON.quoted(spec.name)
                + ":{\"dtype\":\"\(spec.dtype.rawValue)\",\"shape\":[\(spec.shape.map(String.init).joined(separator: ","))],"
                + "\"data_offsets\":[\(offset),\(offset + size)]}"
            offset += size
        }
        header += "}"
        var headerBytes = Array(header.utf8)
        // Pad with spaces to a multiple of 8 bytes so that 8-byte elements stay aligned, as the
        // reference writer does.
        while headerBytes.count % 8 != 0 { headerBytes.append(0x20) }

        let folder = url.deletingLastPathComponent().path
        if InputFile.isFolder(url) {
            throw SafeTensorsError(FileAccessError(path: path, reason: .notRegularFile(kind: "a folder")))
        }
        OutputStaging.removeStale(beside: url)
        let temporary = OutputStaging.stagingURL(for: url).path
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            let code = errno
            throw SafeTensorsError(path: path, problem: "cannot create a temporary file in \(folder) (\(String(cString: strerror(code))))",
                                   cause: FileAccessError(path: folder, reason: FileAccessError.reason(errno: code)))
        }
        OutputStaging.register(temporary)
        self.url = url
        self.specs = tensors
        self.temporaryPath = temporary
        self.descriptor = fd
        var prefix = [UInt8](repeating: 0, count: 8)
        withUnsafeBytes(of: UInt64(headerBytes.count).littleEndian) { for i in 0..<8 { prefix[i] = $0[i] } }
        try writeAll(prefix + headerBytes)
    }

    deinit {
        if !closed { discard() }
    }

    /// The name of the tensor expected next, or nil when all were written.
    public var nextTensorName: String? { nextIndex < specs.count ? specs[nextIndex].name : nil }

    private func fail(_ problem: String) -> SafeTensorsError {
        SafeTensorsError(path: url.path, problem: problem)
    }

    private func discard() {
        if descriptor >= 0 { close(descriptor) }
        descriptor = -1
        unlink(temporaryPath)
        OutputStaging.unregister(temporaryPath)
        closed = true
    }

    /// Removes the temporary file and abandons the write; the destination is left untouched.
    /// Calling it after ``finish()`` or twice does nothing.
    public func cancel() {
        if !closed { discard() }
    }

    private func writeAll(_ bytes: UnsafeRawBufferPointer) throws(SafeTensorsError) {
        var done = 0
        while done < bytes.count {
            let n = Glibc_write(descriptor, bytes.baseAddress! + done, bytes.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                let reason = String(cString: strerror(errno))
                discard()
                throw fail("cannot write the temporary file \(temporaryPath) (\(reason))")
            }
            done += n
        }
    }

    private func writeAll(_ bytes: [UInt8]) throws(SafeTensorsError) {
        let result: Result<Void, SafeTensorsError> = bytes.withUnsafeBytes { raw in
            do throws(SafeTensorsError) { try writeAll(raw); return .success(()) } catch { return .failure(error) }
        }
        try result.get()
    }

    /// Checks that `name` is the next declared tensor with `count` elements; returns its spec.
    private func begin(_ name: String, count: Int, shape: [Int]?) throws(SafeTensorsError) -> TensorSpec {
        guard !closed else { throw fail("cannot write tensor '\(name)': the writer is already finished or cancelled") }
        guard nextIndex < specs.count else {
            discard()
            throw fail("tensor '\(name)' was not declared (all \(specs.count) declared tensors are written)")
        }
        let spec = specs[nextIndex]
        guard spec.name == name else {
            discard()
            throw fail("expected tensor '\(spec.name)' next (declaration order), got '\(name)'")
        }
        if let shape, shape != spec.shape {
            discard()
            throw fail("tensor '\(name)' has shape \(shape), declared \(spec.shape)")
        }
        guard count == spec.elementCount else {
            discard()
            throw fail("tensor '\(name)' has \(count) elements, declared shape \(spec.shape) needs \(spec.elementCount)")
        }
        return spec
    }

    /// Converts and writes `source` in chunks through a bounded scratch buffer.
    private func writeConverted<T>(
        _ spec: TensorSpec, _ source: UnsafeBufferPointer<T>,
        encode: (UnsafeBufferPointer<T>, Int, UnsafeMutableRawPointer) throws(SafeTensorsCodec.EncodeFailure) -> Void
    ) throws(SafeTensorsError) {
        let chunk = Self.chunkElements
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk * spec.dtype.byteCount, alignment: 8)
        defer { scratch.deallocate() }
        var start = 0
        while start < source.count {
            let end = min(start + chunk, source.count)
            let slice = UnsafeBufferPointer(rebasing: source[start..<end])
            do { try encode(slice, start, scratch.baseAddress!) } catch {
                discard()
                throw fail("tensor '\(spec.name)' element \(error.index): \(error.reason)")
            }
            try writeAll(UnsafeRawBufferPointer(start: scratch.baseAddress, count: (end - start) * spec.dtype.byteCount))
            start = end
        }
    }

    /// Writes float32 values of the next tensor, converting to its declared dtype.
    public func write(_ name: String, scalars: UnsafeBufferPointer<Float>) throws(SafeTensorsError) {
        let spec = try begin(name, count: scalars.count, shape: nil)
        #if _endian(little)
        if spec.dtype == .float32 {
            if scalars.count > 0 { try writeAll(UnsafeRawBufferPointer(scalars)) }
            nextIndex += 1
            return
        }
        #endif
        try writeConverted(spec, scalars) { (slice: UnsafeBufferPointer<Float>, start: Int, out: UnsafeMutableRawPointer) throws(SafeTensorsCodec.EncodeFailure) in
            try SafeTensorsCodec.encode(slice, as: spec.dtype, startIndex: start, into: out)
        }
        nextIndex += 1
    }

    /// Writes the next tensor from a float32 ``Tensor`` whose shape must equal the declared one.
    public func write(_ name: String, _ tensor: Tensor) throws(SafeTensorsError) {
        if nextIndex < specs.count, specs[nextIndex].name == name, specs[nextIndex].shape != tensor.shape {
            _ = try begin(name, count: tensor.count, shape: tensor.shape)  // throws the shape mismatch
        }
        try tensor.withUnsafeBufferPointer { (b: UnsafeBufferPointer<Float>) throws(SafeTensorsError) in try write(name, scalars: b) }
    }

    /// Writes the next tensor from `Double` values (row-major, declared element count), converting
    /// to its declared dtype (exact for F64).
    public func write(_ name: String, doubles: [Double]) throws(SafeTensorsError) {
        let spec = try begin(name, count: doubles.count, shape: nil)
        let result: Result<Void, SafeTensorsError> = doubles.withUnsafeBufferPointer { source in
            do throws(SafeTensorsError) {
                try writeConverted(spec, source) { (slice: UnsafeBufferPointer<Double>, start: Int, out: UnsafeMutableRawPointer) throws(SafeTensorsCodec.EncodeFailure) in
                    try SafeTensorsCodec.encode(slice, as: spec.dtype, startIndex: start, into: out)
                }
                return .success(())
            } catch { return .failure(error) }
        }
        try result.get()
        nextIndex += 1
    }

    /// Writes the next tensor from integers (row-major, declared element count); each must fit
    /// the declared integer dtype (floating-point dtypes receive the rounded value).
    public func write(_ name: String, integers: [Int]) throws(SafeTensorsError) {
        let spec = try begin(name, count: integers.count, shape: nil)
        let result: Result<Void, SafeTensorsError> = integers.withUnsafeBufferPointer { source in
            do throws(SafeTensorsError) {
                try writeConverted(spec, source) { (slice: UnsafeBufferPointer<Int>, start: Int, out: UnsafeMutableRawPointer) throws(SafeTensorsCodec.EncodeFailure) in
                    try SafeTensorsCodec.encode(slice, as: spec.dtype, startIndex: start, into: out)
                }
                return .success(())
            } catch { return .failure(error) }
        }
        try result.get()
        nextIndex += 1
    }

    /// Writes the next tensor's bytes as they are, already encoded in its declared dtype
    /// (little-endian, row-major); the byte count must equal element count × dtype size. Use it to
    /// copy a tensor between files without conversion (see ``SafeTensorsFile/withRawBytes(of:_:)``).
    public func writeRaw(_ name: String, bytes: UnsafeRawBufferPointer) throws(SafeTensorsError) {
        guard !closed else { throw fail("cannot write tensor '\(name)': the writer is already finished or cancelled") }
        let spec = specs.indices.contains(nextIndex) ? specs[nextIndex] : nil
        guard let spec, spec.name == name else {
            _ = try begin(name, count: -1, shape: nil)  // throws the order error
            return
        }
        guard bytes.count == spec.elementCount * spec.dtype.byteCount else {
            discard()
            throw fail("tensor '\(name)' raw data has \(bytes.count) bytes, \(spec.dtype.rawValue) of shape \(spec.shape) needs \(spec.elementCount * spec.dtype.byteCount)")
        }
        if bytes.count > 0 { try writeAll(bytes) }
        nextIndex += 1
    }

    /// Checks that every declared tensor was written, flushes the data to disk and renames the
    /// temporary file over the destination.
    /// - Throws: ``SafeTensorsError`` (and removes the temporary file) when tensors are missing or
    ///   the file cannot be flushed or renamed.
    public func finish() throws(SafeTensorsError) {
        guard !closed else { throw fail("the writer is already finished or cancelled") }
        guard nextIndex == specs.count else {
            let missing = specs[nextIndex...].map { "'\($0.name)'" }.prefix(5).joined(separator: ", ")
            discard()
            throw fail("finish() with \(specs.count - nextIndex) declared tensors not written (next: \(missing))")
        }
        guard fsync(descriptor) == 0, close(descriptor) == 0 else {
            let reason = String(cString: strerror(errno))
            discard()
            throw fail("cannot flush the temporary file \(temporaryPath) (\(reason))")
        }
        descriptor = -1
        let code = OutputStaging.withCleanupBlocked { rename(temporaryPath, url.path) == 0 ? 0 : errno }
        guard code == 0 else {
            discard()
            throw SafeTensorsError(path: url.path, problem: "cannot rename the temporary file \(temporaryPath) to the destination (\(String(cString: strerror(code))))",
                                   cause: FileAccessError(path: url.path, reason: FileAccessError.reason(errno: code)))
        }
        OutputStaging.unregister(temporaryPath)
        OutputStaging.syncFolder(of: url)
        closed = true
    }
}

/// POSIX `write(2)`, named apart from the writer's `write` methods.
@inline(__always)
private func Glibc_write(_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int) -> Int {
    #if canImport(Glibc)
    return Glibc.write(fd, buffer, count)
    #elseif canImport(Musl)
    return Musl.write(fd, buffer, count)
    #else
    return Darwin.write(fd, buffer, count)
    #endif
}
