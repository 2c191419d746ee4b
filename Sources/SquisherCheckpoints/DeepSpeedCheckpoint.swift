import Foundation
import SquisherTensor

/// Reads the second moments of a DeepSpeed ZeRO checkpoint (stages 1, 2 and 3; fp32 or bf16; any
/// world size), alone (`global_stepN/`) or inside a Hugging Face `Trainer` folder (`checkpoint-N/`
/// with a `latest` file naming the tag), without executing its pickles (``PickleAllowList/deepSpeed``).
///
/// - Names: `param_shapes` in the model states file (`mp_rank_00_model_states.pt`, or
///   `zero_pp_rank_0_mp_rank_00_model_states.pt` for stage 3): one ordered name → shape map per
///   optimizer group, in flattening order; `shared_params` gives tied aliases.
/// - Stage 1/2: each rank's `[bf16_]zero_pp_rank_R_mp_rank_00_optim_states.pt` holds, per group, a
///   flat fp32 partition of `exp_avg_sq`; ranks 0..W−1 concatenated give the group's flat vector,
///   sliced in `param_shapes` order (parameters are contiguous; the group ends with alignment padding).
/// - Stage 3: each rank holds, for each parameter in order, a chunk of ⌈n/W⌉ elements (zero-padded);
///   the parameter is the concatenation of its chunks over ranks, truncated to n elements.
///
/// This is the consolidation of DeepSpeed's `zero_to_fp32.py`, applied to `exp_avg_sq`.
public enum DeepSpeedCheckpoint {
    /// A located ZeRO checkpoint: the tag folder and whether it sits in a Trainer folder.
    public struct Location: Sendable, Hashable {
        /// The folder holding the model and optimizer states (`global_stepN/`).
        public var folder: URL
        /// Whether the folder is inside a Hugging Face `Trainer` checkpoint (`checkpoint-N/latest`).
        public var insideTrainerFolder: Bool
    }

    /// The ZeRO checkpoint in `folder`: the folder itself, the tag its `latest` file names, or its
    /// only `global_step*` subfolder; `nil` when there is none.
    public static func locate(in folder: URL) throws(CheckpointError) -> Location? {
        let manager = FileManager.default
        func holdsStates(_ url: URL) -> Bool {
            ((try? manager.contentsOfDirectory(atPath: url.path)) ?? []).contains { $0.hasSuffix("_optim_states.pt") }
        }
        if holdsStates(folder) {
            let parent = folder.deletingLastPathComponent()
            return Location(folder: folder, insideTrainerFolder: manager.fileExists(atPath: parent.appendingPathComponent("config.json").path))
        }
        let hasConfig = manager.fileExists(atPath: folder.appendingPathComponent("config.json").path)
        let latest = folder.appendingPathComponent("latest")
        if let data = manager.contents(atPath: latest.path) {
            let tag = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            guard !tag.isEmpty, !tag.contains("/"), !tag.contains(".."), holdsStates(folder.appendingPathComponent(tag)) else {
                throw CheckpointError(path: latest.path, problem: "names tag '\(tag.prefix(80))', which is not a folder of ZeRO optimizer states beside it")
            }
            return Location(folder: folder.appendingPathComponent(tag), insideTrainerFolder: hasConfig)
        }
        let steps = ((try? manager.contentsOfDirectory(atPath: folder.path)) ?? []).filter { $0.hasPrefix("global_step") && holdsStates(folder.appendingPathComponent($0)) }
        guard !steps.isEmpty else { return nil }
        guard steps.count == 1 else {
            throw CheckpointError(path: folder.path, problem: "holds several DeepSpeed tags (\(steps.sorted().joined(separator: ", "))) and no 'latest' file naming one; open the tag folder itself")
        }
        return Location(folder: folder.appendingPathComponent(steps[0]), insideTrainerFolder: hasConfig)
    }

    /// One rank's optimizer partition file.
    struct RankFile {
        var rank: Int
        var url: URL
        var bf16: Bool
    }

    /// The per-rank optimizer files of `folder`, ordered by rank and checked to be 0..W−1.
    static func rankFiles(in folder: URL) throws(CheckpointError) -> [RankFile] {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []).filter { $0.hasSuffix("_mp_rank_00_optim_states.pt") }
        var files: [RankFile] = []
        for name in names {
            let bf16 = name.hasPrefix("bf16_")
            let stem = bf16 ? String(name.dropFirst(5)) : name
            guard stem.hasPrefix("zero_pp_rank_"), let rank = Int(stem.dropFirst("zero_pp_rank_".count).prefix { $0.isNumber }) else {
                throw CheckpointError(path: folder.appendingPathComponent(name).path, problem: "unexpected optimizer file name; expected [bf16_]zero_pp_rank_<R>_mp_rank_00_optim_states.pt")
            }
            files.append(RankFile(rank: rank, url: folder.appendingPathComponent(name), bf16: bf16))
        }
        files.sort { $0.rank < $1.rank }
        guard !files.isEmpty, files.map(\.rank) == Array(0..<files.count) else {
            throw CheckpointError(path: folder.path, problem: "ZeRO optimizer files cover ranks \(files.map(\.rank)); expected every rank 0..W-1 once (a missing rank file?)")
        }
        guard Set(files.map(\.bf16)).count == 1 else {
            throw CheckpointError(path: folder.path, problem: "mixes bf16_ and fp32 optimizer files")
        }
        return files
    }

    /// The names and shapes per group, and the tied aliases, from the model states file.
    static func parameterShapes(in folder: URL) throws(CheckpointError) -> (groups: [[ModelTensorShape]], tied: [String: String], file: String) {
        let candidates = ["mp_rank_00_model_states.pt", "zero_pp_rank_0_mp_rank_00_model_states.pt"].map { folder.appendingPathComponent($0) }
        guard let url = candidates.first(where: { FileManager.default.fileExists(atPath: $0.path) }) else {
            throw CheckpointError(path: folder.path, problem: "no mp_rank_00_model_states.pt (or zero_pp_rank_0_mp_rank_00_model_states.pt): DeepSpeed's param_shapes, which name the optimizer's flat partitions, are missing")
        }
        let value = try TorchCheckpoint.load(url, allowList: .deepSpeed)
        let (groups, tied) = try parameterShapes(value, path: url.path)
        return (groups, tied, url.path)
    }

    /// The names and shapes per group (`param_shapes`) and the tied aliases (`shared_params`) of a
    /// loaded model states file; `path` names it in messages.
    static func parameterShapes(_ value: PickleValue, path: String) throws(CheckpointError) -> (groups: [[ModelTensorShape]], tied: [String: String]) {
        func fail(_ problem: String) -> CheckpointError { CheckpointError(path: path, problem: problem) }
        guard let shapesValue = value["param_shapes"] else { throw fail("has no 'param_shapes'") }
        let groupValues = shapesValue.dictionaryValue.map { [PickleValue.dict($0)] } ?? shapesValue.elements ?? []
        var groups: [[ModelTensorShape]] = []
        for (number, groupValue) in groupValues.enumerated() {
            guard let dictionary = groupValue.dictionaryValue else { throw fail("param_shapes[\(number)] is a \(groupValue.kindName), not a name -> torch.Size map") }
            var group: [ModelTensorShape] = []
            for (key, shapeValue) in dictionary.entries {
                guard let name = key.stringValue, let items = shapeValue.elements, let shape = Optional(items.compactMap(\.intValue)), shape.count == items.count,
                      shape.allSatisfy({ $0 >= 0 }) else {
                    throw fail("param_shapes[\(number)] has an entry that is not name -> torch.Size")
                }
                guard ShapeElementCount.of(shape) != nil else {
                    throw fail("param_shapes[\(number)] gives '\(name)' the shape \(shape), more than \(ShapeElementCount.maximum) elements")
                }
                group.append(ModelTensorShape(name: name, shape: shape))
            }
            groups.append(group)
        }
        guard !groups.isEmpty else { throw fail("param_shapes is empty or not a list of name -> torch.Size maps") }
        var seen = Set<String>()
        if let repeated = groups.joined().first(where: { !seen.insert($0.name).inserted }) {
            throw fail("param_shapes lists '\(repeated.name)' twice")
        }
        var tied: [String: String] = [:]
        for (key, target) in value["shared_params"]?.dictionaryValue?.entries.map({ ($0, $1) }) ?? [] {
            if let alias = key.stringValue, let target = target.stringValue { tied[alias] = target }
        }
        return (groups, tied)
    }

    /// Reads the checkpoint at `location`.
    /// - Throws: ``CheckpointError`` naming the file: missing ranks or `param_shapes`, partitions
    ///   whose sizes do not match the shapes, an optimizer without `exp_avg_sq`, invalid steps.
    public static func read(_ location: Location) throws(CheckpointError) -> OptimizerCheckpoint {
        let (groups, tied, shapesFile) = try parameterShapes(in: location.folder)
        let files = try rankFiles(in: location.folder)
        var partitions: [RankPartition] = []
        for file in files {
            let value = try TorchCheckpoint.load(file.url, allowList: .deepSpeed)
            partitions.append(try basePartition(value, path: file.url.path))
        }
        let stage = partitions[0].stage
        let first = partitions[0].state
        if let counts = partitions[0].partitionCount, counts.contains(where: { $0 != files.count }) {
            throw CheckpointError(path: files[0].url.path, problem: "partition_count \(counts) does not match the \(files.count) rank file(s) in \(location.folder.path) (a rank file missing?)")
        }
        if let reason = SecondMoments.refusal(for: first.kind, buffers: Set(first.states.values.flatMap(\.bufferNames))) {
            throw CheckpointError(path: files[0].url.path, problem: "cannot recycle a second moment: \(reason)")
        }
        let assembled = stage == 3
            ? try assembleStage3(groups: groups, partitions: partitions.map { ($0.state, $0.path) })
            : try assembleStage12(groups: groups, partitions: partitions.map { ($0.state, $0.path) }, paddings: partitions[0].alignmentPaddings)
        var steps: [String: Int] = [:], decay: [String: Double] = [:]
        for (number, group) in groups.enumerated() {
            let groupState = first.states[first.groups.indices.contains(number) ? first.groups[number].parameterIndices.first ?? number : number]
            let beta2 = first.groups.indices.contains(number) ? first.groups[number].betas?.1 : nil
            for parameter in group {
                if let step = groupState?.step { steps[parameter.name] = try SecondMoments.stepCount(step, parameter: parameter.name, path: files[0].url.path) }
                if let beta2 { decay[parameter.name] = beta2 }
            }
        }
        let moments = SecondMoments(
            names: assembled.map(\.0), recipes: Dictionary(assembled.map { ($0.0, .tensor($0.1)) }, uniquingKeysWith: { a, _ in a }),
            shapes: Dictionary(assembled.map { ($0.0, $0.1.shape) }, uniquingKeysWith: { a, _ in a }), path: location.folder.path,
            source: .expAvgSq, steps: steps, decay: decay, parametersWithoutState: [])
        _ = shapesFile
        return OptimizerCheckpoint(
            format: .deepSpeedZeRO(stage: stage, worldSize: files.count, bf16: files[0].bf16, huggingFaceFolder: location.insideTrainerFolder),
            optimizer: first.kind, nameSource: .deepSpeedParamShapes, moments: moments, tiedParameters: tied, path: location.folder.path)
    }

    /// One rank's base (torch) optimizer state, the ZeRO stage, and the layout facts DeepSpeed records.
    struct RankPartition {
        var state: TorchOptimizerState
        var stage: Int
        var path: String
        /// `param_alignment_paddings[g][i]`: elements of padding after parameter i of group g (ZeRO 1/2).
        var alignmentPaddings: [[Int]]?
        /// `partition_count` per group: the world size the partitions were made for.
        var partitionCount: [Int]?
    }

    /// The base optimizer state of one rank's file and what DeepSpeed records about its layout.
    static func basePartition(_ value: PickleValue, path: String) throws(CheckpointError) -> RankPartition {
        guard let outer = value["optimizer_state_dict"] else {
            throw CheckpointError(path: path, problem: "has no 'optimizer_state_dict'; not a DeepSpeed ZeRO optimizer file")
        }
        var stage = 0
        if let stageValue = outer["zero_stage"] { stage = stageValue.intValue ?? stageValue["__args__"]?.elements?.first?.intValue ?? 0 }
        let paddings = outer["param_alignment_paddings"]?.elements?.map { $0.elements?.compactMap(\.intValue) ?? [] }
        let counts = outer["partition_count"].flatMap { $0.elements?.compactMap(\.intValue) ?? $0.intValue.map { [$0] } }
        if let base = outer["base_optimizer_state"], base["state"] != nil {
            let state = try TorchOptimizerState(base, path: path + " (base_optimizer_state)")
            return RankPartition(state: state, stage: stage == 0 ? 1 : stage, path: path, alignmentPaddings: paddings, partitionCount: counts)
        }
        if let inner = outer["optimizer_state_dict"], inner["state"] != nil {
            let state = try TorchOptimizerState(inner, path: path + " (optimizer_state_dict)")
            return RankPartition(state: state, stage: 3, path: path, alignmentPaddings: nil, partitionCount: counts)
        }
        throw CheckpointError(path: path, problem: "optimizer_state_dict holds neither 'base_optimizer_state' (ZeRO 1/2) nor an inner 'optimizer_state_dict' (ZeRO 3) with a 'state'")
    }

    /// The flat `exp_avg_sq` of group `number` in one rank's state (a view; nothing converted).
    static func flat(_ state: TorchOptimizerState, group number: Int, path: String) throws(CheckpointError) -> TorchTensor {
        guard state.groups.indices.contains(number), let index = state.groups[number].parameterIndices.first else {
            throw CheckpointError(path: path, problem: "has no param group \(number), which param_shapes lists")
        }
        guard let tensor = state.states[index]?.buffers["exp_avg_sq"] else {
            throw CheckpointError(path: path, problem: "group \(number) has no exp_avg_sq partition (buffers \(state.states[index]?.bufferNames ?? []))")
        }
        return tensor
    }

    /// Flat tensors laid end to end, addressed by one element range.
    struct FlatConcatenation {
        var parts: [TorchTensor] = []
        var starts: [Int] = []
        var count = 0

        mutating func append(_ tensor: TorchTensor) {
            parts.append(tensor)
            starts.append(count)
            count += tensor.count
        }

        /// The pieces (part, range in it) covering `range` of the concatenation.
        func pieces(_ range: Range<Int>) -> [(source: TorchTensor, range: Range<Int>)] {
            var pieces: [(source: TorchTensor, range: Range<Int>)] = []
            for (part, start) in zip(parts, starts) {
                let lower = max(range.lowerBound, start), upper = min(range.upperBound, start + part.count)
                if lower < upper { pieces.append((part, (lower - start)..<(upper - start))) }
            }
            return pieces
        }
    }

    /// Stage 1/2: ranks' flat partitions concatenated per group, sliced in `param_shapes` order,
    /// skipping `paddings[g][i]` elements after parameter i (when DeepSpeed recorded them).
    static func assembleStage12(groups: [[ModelTensorShape]], partitions: [(TorchOptimizerState, String)], paddings: [[Int]]?) throws(CheckpointError) -> [(String, TorchTensor)] {
        var result: [(String, TorchTensor)] = []
        for (number, group) in groups.enumerated() {
            var vector = FlatConcatenation()
            for (state, path) in partitions { vector.append(try flat(state, group: number, path: path)) }
            if let paddings, paddings.count != groups.count || paddings[number].count != group.count || paddings[number].contains(where: { $0 < 0 || $0 > vector.count }) {
                throw CheckpointError(path: partitions[0].1, problem: "param_alignment_paddings (\(paddings.map(\.count)) entries per group) does not match param_shapes (\(groups.map(\.count)) parameters per group), or pads group \(number) by a negative amount or by more than its \(vector.count) elements")
            }
            var offset = 0
            for (item, parameter) in group.enumerated() {
                let count = parameter.shape.reduce(1, *)
                guard offset + count <= vector.count else {
                    throw CheckpointError(path: partitions[0].1, problem: "group \(number)'s exp_avg_sq partitions hold \(vector.count) elements over \(partitions.count) ranks, too few for '\(parameter.name)' \(parameter.shape) at offset \(offset)")
                }
                result.append((parameter.name, TorchTensor(concatenating: vector.pieces(offset..<(offset + count)), shape: parameter.shape)))
                offset += count + (paddings?[number][item] ?? 0)
            }
            guard vector.count - offset < max(2 * partitions.count, 1) * 64 else {
                throw CheckpointError(path: partitions[0].1, problem: "group \(number)'s exp_avg_sq partitions hold \(vector.count) elements but param_shapes account for \(offset): the shapes do not describe these partitions")
            }
        }
        return result
    }

    /// Stage 3: each parameter is its ⌈n/W⌉-element chunks over ranks, concatenated and truncated.
    static func assembleStage3(groups: [[ModelTensorShape]], partitions: [(TorchOptimizerState, String)]) throws(CheckpointError) -> [(String, TorchTensor)] {
        let worldSize = partitions.count
        var flats: [FlatConcatenation] = []
        for (state, path) in partitions {
            var all = FlatConcatenation()
            for number in groups.indices { all.append(try flat(state, group: number, path: path)) }
            flats.append(all)
        }
        var result: [(String, TorchTensor)] = []
        var offset = 0
        for parameter in groups.joined() {
            let count = parameter.shape.reduce(1, *)
            let chunk = (count + worldSize - 1) / worldSize
            var pieces: [(source: TorchTensor, range: Range<Int>)] = []
            var remaining = count
            for (rank, flat) in flats.enumerated() {
                guard offset + chunk <= flat.count else {
                    throw CheckpointError(path: partitions[rank].1, problem: "rank \(rank)'s exp_avg_sq holds \(flat.count) elements, too few for the chunk of '\(parameter.name)' \(parameter.shape) at offset \(offset)")
                }
                let take = min(chunk, remaining)  // the last ranks' chunks end in padding
                pieces += flat.pieces(offset..<(offset + take))
                remaining -= take
            }
            result.append((parameter.name, TorchTensor(concatenating: pieces, shape: parameter.shape)))
            offset += chunk
        }
        return result
    }
}
