/// The Python classes and constants that ``RestrictedUnpickler`` accepts beyond plain data and
/// tensors, chosen **per format**: a class DeepSpeed pickles is accepted when reading a DeepSpeed
/// checkpoint and refused in a plain `optimizer.pt`.
///
/// Nothing is ever imported or called. An allowed class is rebuilt as plain data:
/// - a **data class** (`NEWOBJ` + `BUILD`, or `REDUCE(cls, args)`) becomes a ``PickleValue/dict(_:)``
///   holding `"__class__": "module.Name"`, the `BUILD` state's entries (a dataclass's fields; a state
///   that is not a dictionary, such as DCP `TensorProperties`' tuple, under `"__state__"`), and
///   `"__args__"`: the arguments when it was rebuilt by `REDUCE` (an `Enum` member's value, the layout
///   name given to `torch.serialization._get_layout`), which are recorded, never passed to anything;
/// - a **tuple class** (`torch.Size`) called with one sequence becomes that ``PickleValue/tuple(_:)``;
/// - a **constant** (`torch.float32`, `torch.strided`) becomes the ``PickleValue/string(_:)`` of its
///   qualified name.
public struct PickleAllowList: Sendable, Hashable {
    /// The format this list is for, named in refusals (`"torch.save optimizer state"`, `"DeepSpeed"`).
    public var formatName: String
    /// Qualified names (`module.Name`) of classes rebuilt as a dictionary of their state.
    public var dataClasses: Set<String>
    /// Qualified names of tuple subclasses rebuilt as a plain tuple.
    public var tupleClasses: Set<String>
    /// Qualified names of module constants rebuilt as their name.
    public var constants: Set<String>
    /// Whether tensors carrying Python attributes are accepted: `torch._tensor._rebuild_from_type_v2(
    /// torch._utils._rebuild_tensor_v2, torch.Tensor or torch.nn.parameter.Parameter, args, attributes)`
    /// is read as the plain tensor `_rebuild_tensor_v2(*args)`; the attributes (DeepSpeed's `ds_id`)
    /// are dropped.
    public var tensorsWithAttributes: Bool

    /// Creates an allow-list.
    public init(formatName: String, dataClasses: Set<String> = [], tupleClasses: Set<String> = [], constants: Set<String> = [], tensorsWithAttributes: Bool = false) {
        self.formatName = formatName
        self.dataClasses = dataClasses
        self.tupleClasses = tupleClasses
        self.constants = constants
        self.tensorsWithAttributes = tensorsWithAttributes
    }

    /// The globals `tensorsWithAttributes` admits.
    static let tensorWithAttributesGlobals: Set<String> = ["torch._tensor._rebuild_from_type_v2", "torch.Tensor", "torch.nn.parameter.Parameter"]

    /// Plain `torch.save` files (`optimizer.pt`, `model.pt`, bitsandbytes and Adafactor states): only
    /// `collections.OrderedDict`, tensor rebuilding and storages (always allowed).
    public static let torchSave = PickleAllowList(formatName: "torch.save checkpoint")

    /// torch dtype, layout and memory-format constants as pickled by `torch.dtype.__reduce__`.
    static let torchConstants: Set<String> = Set(
        ["float32", "float64", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8", "bool",
         "float", "double", "half", "long", "int", "short", "strided", "contiguous_format", "preserve_format"]
            .map { "torch." + $0 })

    /// DeepSpeed ZeRO checkpoints (`mp_rank_00_model_states.pt`, `*_optim_states.pt`): `torch.Size`
    /// in `param_shapes`, the loss scaler, the ZeRO stage enum, tensor fragment addresses, and ZeRO-3's
    /// partitions, which carry a `ds_id` attribute.
    public static let deepSpeed = PickleAllowList(
        formatName: "DeepSpeed ZeRO checkpoint",
        dataClasses: [
            "deepspeed.runtime.fp16.loss_scaler.LossScaler", "deepspeed.runtime.fp16.loss_scaler.DynamicLossScaler",
            "deepspeed.runtime.zero.config.ZeroStageEnum", "deepspeed.utils.tensor_fragment.fragment_address",
            "torch.device",
        ],
        tupleClasses: ["torch.Size"],
        constants: torchConstants, tensorsWithAttributes: true)

    /// `torch.distributed.checkpoint` (DCP) `.metadata` pickles: the metadata dataclasses.
    public static let distributedCheckpoint = PickleAllowList(
        formatName: "torch.distributed.checkpoint metadata",
        dataClasses: Set(
            ["metadata.Metadata", "metadata.TensorStorageMetadata", "metadata.ChunkStorageMetadata",
             "metadata.TensorProperties", "metadata.BytesStorageMetadata", "metadata.MetadataIndex",
             "metadata.StorageMeta", "metadata._MEM_FORMAT_ENCODING", "filesystem._StorageInfo", "planner.LoadItemType",
             "planner.WriteItemType"]
                .map { "torch.distributed.checkpoint." + $0 } + ["torch.serialization._get_layout", "pathlib.PosixPath", "pathlib.PurePosixPath"]),
        tupleClasses: ["torch.Size"],
        constants: torchConstants)

    /// A short description of what is accepted, for refusals.
    var allowedText: String {
        let extra = (dataClasses.union(tupleClasses).union(tensorsWithAttributes ? Self.tensorWithAttributesGlobals : [])).sorted()
        return extra.isEmpty ? "" : "; for a \(formatName) also \(extra.joined(separator: ", ")) (rebuilt as plain data)"
    }
}
