/// Resource limits of the restricted pickle reader, so that a hostile or corrupt checkpoint ends in a
/// clear ``CheckpointError`` instead of exhausting memory or the call stack.
///
/// The defaults are far above what real `torch.save` files need (an optimizer state dict nests about 5
/// levels deep) and small enough to be safe on a laptop.
public struct PickleLimits: Sendable, Hashable {
    /// Maximum nesting of containers in the result (a list inside a list inside ... counts one per level).
    /// Also stops self-referencing structures, whose nesting is unbounded.
    public var maxNestingDepth: Int
    /// Maximum number of items on the unpickler's stack at any time.
    public var maxStackSize: Int
    /// Maximum number of memo entries (`BINPUT`/`LONG_BINPUT`/`MEMOIZE`).
    public var maxMemoSize: Int
    /// Maximum total number of values in the decoded result, counting a value once per place it
    /// appears. This stops "billion laughs" pickles, where memo references (`BINGET`) to one list
    /// repeated inside lists that are themselves repeated describe exponentially many elements.
    public var maxTotalElements: Int
    /// Maximum number of tensor scalars addressed over one load (each becomes 4 bytes of float32 when
    /// the tensor is read). Tensors are bounded by their storage bytes, except views with zero
    /// strides, which this limit keeps in check.
    public var maxTensorScalars: Int
    /// How many times more elements than its storage holds a tensor may have (views with zero or
    /// overlapping strides, like `torch.ones(1).expand(32768, 32768)`), with a floor of 4096
    /// elements: materializing is then bounded by the file's bytes times this factor.
    public var maxViewExpansion: Int

    /// Creates limits; every argument has a default suitable for real checkpoints.
    public init(
        maxNestingDepth: Int = 100, maxStackSize: Int = 1_000_000, maxMemoSize: Int = 1_000_000,
        maxTotalElements: Int = 5_000_000, maxTensorScalars: Int = 1 << 30, maxViewExpansion: Int = 16
    ) {
        self.maxNestingDepth = maxNestingDepth
        self.maxStackSize = maxStackSize
        self.maxMemoSize = maxMemoSize
        self.maxTotalElements = maxTotalElements
        self.maxTensorScalars = maxTensorScalars
        self.maxViewExpansion = maxViewExpansion
    }
}

/// A storage record of a checkpoint: the persistent id `('storage', torch.<T>Storage, key, location,
/// numel)` that a `torch.save` pickle hands to `persistent_load` for every tensor's storage.
public struct TorchStorageReference: Sendable, Hashable {
    /// The key: the storage bytes live in the archive entry `<prefix>/data/<key>`.
    public var key: String
    /// The element type (from the storage class name).
    public var dtype: TorchDType
    /// The device the storage was saved from (`"cpu"`, `"cuda:0"`, ...); the bytes are in the file either way.
    public var location: String
    /// The number of **elements** (not bytes) in the storage.
    public var elementCount: Int
}
