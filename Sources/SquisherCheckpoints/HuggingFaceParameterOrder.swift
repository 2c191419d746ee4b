/// The parameter order of a Hugging Face model (`model.named_parameters()`) and the `Trainer`'s
/// two param groups, derived from `config.json` and the weight names, so that an `optimizer.pt`
/// without names can be mapped to them.
///
/// **Registration order.** `named_parameters()` walks modules depth first: a module's own
/// parameters come before its children's (`weight` before `bias`), and children come in the order
/// `__init__` registered them. Numeric components (`layer.10`) sort numerically. The child order of
/// each known module comes from the architecture family's table (``Family``: BERT-style —
/// `BertModel`, `BertForSequenceClassification`, `BertForMaskedLM`, RoBERTa, ELECTRA —, GPT-2, and
/// LLaMA-style), plus PEFT's LoRA wrappers (`base_layer`, `lora_A`, `lora_B`). Children no table
/// ranks are ordered by name, and the order is **uncertain**: when two such siblings hold parameters
/// of the same shapes in every param group (so no shape check can tell them apart), the mapping is
/// refused as ambiguous, naming them, never guessed.
///
/// **Trainer grouping** (`Trainer.get_decay_parameter_names`): group 0 = parameters that get weight
/// decay = all but biases and normalization weights (names matching `bias`, `layernorm`,
/// `rmsnorm`, `(^|.)norm($|.)`, `_norm($|.)`, and modules known to be `nn.LayerNorm`, such as
/// GPT-2's `ln_1`); group 1 = the rest; each in registration order.
///
/// **Tied weights**: GPT-2's `lm_head.weight` is `transformer.wte.weight` (and BERT's MLM decoder is
/// the word embeddings): `named_parameters()` lists the pair once, under the embedding's name; the
/// alias is dropped from the order and reported in ``tiedParameters``.
public struct HuggingFaceParameterOrder: Sendable, Hashable {
    /// Architecture families with a known module registration order.
    public enum Family: String, Sendable, Hashable {
        /// BERT, RoBERTa, ELECTRA (embeddings, encoder.layer.N.{attention, intermediate, output}, pooler, heads).
        case bert
        /// GPT-2 (transformer.{wte, wpe, h.N.{ln_1, attn, ln_2, mlp}, ln_f}, lm_head).
        case gpt2
        /// LLaMA, Mistral, Qwen2 (model.{embed_tokens, layers.N.{self_attn, mlp, norms}, norm}, lm_head).
        case llama
        /// Any other architecture: no child order is known, only PyTorch's own rules.
        case generic
    }

    /// The architecture (`config.json` `architectures[0]`, else `model_type`).
    public var architecture: String
    /// The family whose order table was used.
    public var family: Family
    /// Every parameter in `named_parameters()` order (tied aliases dropped).
    public var parameters: [ModelTensorShape]
    /// Tied aliases: alias name → the name `named_parameters()` lists (e.g. `lm_head.weight` → `transformer.wte.weight`).
    public var tiedParameters: [String: String]
    /// The Trainer's group 0 (weight decay) and group 1 (no decay), in registration order.
    public var decayGroup: [String], noDecayGroup: [String]
    /// Sibling modules whose relative order no table gives: (parent path, first child, second child) as ordered.
    public var uncertainSiblings: [(parent: String, first: String, second: String)]

    /// Equal orders, groups and ties.
    public static func == (a: Self, b: Self) -> Bool { a.parameters == b.parameters && a.decayGroup == b.decayGroup && a.tiedParameters == b.tiedParameters }
    /// Hashes the parameter order.
    public func hash(into hasher: inout Hasher) { hasher.combine(parameters) }

    /// Derives the order of `weights` (names and shapes, any order) for the model `config.json` describes.
    /// - Parameters:
    ///   - config: the parsed `config.json` (`architectures`, `model_type`, `tie_word_embeddings`), or
    ///     empty when there is none (the family is then guessed from the names).
    public init(config: [String: Any], weights: [ModelTensorShape]) {
        let architectures = config["architectures"] as? [String] ?? []
        let modelType = config["model_type"] as? String
        architecture = architectures.first ?? modelType ?? "unknown architecture"
        family = Self.family(modelType: modelType, architecture: architectures.first, names: weights.map(\.name))
        let tied = Self.tiedPairs(family: family, architecture: architecture, config: config, names: Set(weights.map(\.name)))
        tiedParameters = tied
        let kept = weights.filter { tied[$0.name] == nil }
        let table = Self.tables[family] ?? [:]
        let sorted = kept.map { ($0, $0.name.split(separator: ".").map(String.init)) }
            .sorted { Self.precedes($0.1, $1.1, table: table) }
        parameters = sorted.map(\.0)
        let shapes = Dictionary(kept.map { ($0.name, $0.shape) }, uniquingKeysWith: { a, _ in a })
        let family = family
        decayGroup = sorted.map(\.0.name).filter { !Self.isNoDecay($0, family: family, shapes: shapes) }
        noDecayGroup = sorted.map(\.0.name).filter { Self.isNoDecay($0, family: family, shapes: shapes) }
        uncertainSiblings = Self.uncertainPairs(sorted.map(\.1), table: table)
    }

    // MARK: Families and tables

    static func family(modelType: String?, architecture: String?, names: [String]) -> Family {
        switch modelType {
        case "bert", "roberta", "xlm-roberta", "camembert", "electra": return .bert
        case "gpt2": return .gpt2
        case "llama", "mistral", "qwen2", "qwen3": return .llama
        case .some: return .generic
        case nil: break
        }
        if let architecture {
            for (marker, family) in [("Bert", Family.bert), ("Roberta", .bert), ("Electra", .bert), ("GPT2", .gpt2), ("Llama", .llama), ("Mistral", .llama), ("Qwen2", .llama)]
            where architecture.contains(marker) { return family }
            return .generic
        }
        // No config (a PEFT adapter folder): recognise the family from the parameter paths.
        let paths = names.map { "." + $0 + "." }
        if paths.contains(where: { $0.contains(".bert.") || $0.contains(".roberta.") || $0.contains(".electra.") }) { return .bert }
        if paths.contains(where: { $0.contains(".transformer.h.") }) { return .gpt2 }
        if paths.contains(where: { $0.contains(".model.layers.") }) { return .llama }
        return .generic
    }

    /// Child registration order by parent context: the two nearest non-numeric ancestors
    /// (`roberta.embeddings`) when listed, else the nearest (`embeddings`); "" = the model.
    static let tables: [Family: [String: [String]]] = [
        .bert: [
            "": ["bert", "roberta", "electra", "embeddings", "embeddings_project", "encoder", "pooler", "dropout", "pre_classifier",
                 "classifier", "cls", "qa_outputs", "lm_head"],
            "bert": ["embeddings", "encoder", "pooler"], "roberta": ["embeddings", "encoder", "pooler"],
            "electra": ["embeddings", "embeddings_project", "encoder"],
            "embeddings": ["word_embeddings", "position_embeddings", "token_type_embeddings", "LayerNorm"],
            "roberta.embeddings": ["word_embeddings", "token_type_embeddings", "LayerNorm", "position_embeddings"],
            "encoder": ["layer"], "layer": ["attention", "crossattention", "intermediate", "output"],
            "attention": ["self", "output"], "crossattention": ["self", "output"], "self": ["query", "key", "value"],
            "output": ["dense", "LayerNorm"], "intermediate": ["dense"], "pooler": ["dense"],
            "cls": ["predictions", "seq_relationship"], "predictions": ["transform", "decoder"], "transform": ["dense", "LayerNorm"],
            "classifier": ["dense", "out_proj"], "lm_head": ["dense", "layer_norm", "decoder"],
        ],
        .gpt2: [
            "": ["transformer", "wte", "wpe", "h", "ln_f", "lm_head", "score"], "transformer": ["wte", "wpe", "h", "ln_f"],
            "h": ["ln_1", "attn", "ln_2", "crossattention", "ln_cross_attn", "mlp"],
            "attn": ["c_attn", "q_attn", "c_proj"], "crossattention": ["c_attn", "q_attn", "c_proj"], "mlp": ["c_fc", "c_proj"],
        ],
        .llama: [
            "": ["model", "embed_tokens", "layers", "norm", "lm_head", "score"], "model": ["embed_tokens", "layers", "norm"],
            "layers": ["self_attn", "mlp", "input_layernorm", "post_attention_layernorm"],
            "self_attn": ["q_proj", "k_proj", "v_proj", "o_proj", "q_norm", "k_norm"], "mlp": ["gate_proj", "up_proj", "down_proj"],
        ],
    ]

    /// Children that PEFT's wrappers register in any context, in order.
    static let wrapperOrder = ["base_model", "base_layer", "lora_dropout", "lora_A", "lora_B", "lora_embedding_A", "lora_embedding_B", "lora_magnitude_vector", "original_module", "modules_to_save"]
    /// A module's own parameters, in the order `nn.Linear`, `nn.LayerNorm`, `Conv1D` register them.
    static let leafOrder = ["weight", "bias"]

    /// Module names that are `nn.LayerNorm` although no name pattern says so.
    static let layerNormModules: [Family: Set<String>] = [.gpt2: ["ln_1", "ln_2", "ln_f", "ln_cross_attn"]]

    // MARK: Ordering

    /// The sort key of component `index` of `path` (smaller first) and whether it is known.
    static func key(_ path: [String], _ index: Int, table: [String: [String]]) -> (tier: Int, rank: Int, name: String, known: Bool) {
        let component = path[index]
        if index == path.count - 1 {  // a module's own parameter: before every child module
            let rank = leafOrder.firstIndex(of: component)
            return (0, rank ?? leafOrder.count, component, rank != nil)
        }
        if let number = Int(component) { return (1, number, "", true) }
        let ancestors = path[..<index].filter { Int($0) == nil }
        let context = ancestors.last ?? ""
        let contextKey = context == "model" && path.first == "base_model" && ancestors.count == 2 ? "" : context
        let qualified = ancestors.count >= 2 ? ancestors.suffix(2).joined(separator: ".") : nil
        let ranks = qualified.flatMap { table[$0] } ?? table[contextKey]
        if let rank = ranks?.firstIndex(of: component) ?? wrapperOrder.firstIndex(of: component).map({ 1000 + $0 }) {
            return (2, rank, "", true)
        }
        return (3, 0, component, false)
    }

    static func precedes(_ a: [String], _ b: [String], table: [String: [String]]) -> Bool {
        for index in 0..<min(a.count, b.count) where a[index] != b[index] {
            let ka = key(a, index, table: table), kb = key(b, index, table: table)
            if ka.tier != kb.tier { return ka.tier < kb.tier }
            if ka.rank != kb.rank { return ka.rank < kb.rank }
            return ka.name < kb.name
        }
        return a.count < b.count
    }

    /// Pairs of sibling child modules whose order no table decides.
    static func uncertainPairs(_ paths: [[String]], table: [String: [String]]) -> [(parent: String, first: String, second: String)] {
        var children: [String: [(name: String, known: Bool, leaf: Bool)]] = [:]
        var parents: [String] = []
        for path in paths {
            for index in path.indices {
                let parent = path[..<index].joined(separator: ".")
                let k = key(path, index, table: table)
                if children[parent] == nil { parents.append(parent) }
                if !(children[parent, default: []].contains { $0.name == path[index] }) {
                    children[parent, default: []].append((path[index], k.known, index == path.count - 1))
                }
            }
        }
        var pairs: [(String, String, String)] = []
        for parent in parents {
            let items = children[parent]!
            for i in items.indices {
                for j in items.indices where j > i && items[i].leaf == items[j].leaf && !(items[i].known && items[j].known) {
                    pairs.append((parent, items[i].name, items[j].name))
                }
            }
        }
        return pairs
    }

    // MARK: Grouping and ties

    /// Whether the Trainer puts `name` in the no-decay group.
    static func isNoDecay(_ name: String, family: Family, shapes: [String: [Int]]) -> Bool {
        let lower = "." + name.lowercased() + "."
        if lower.contains("bias") || lower.contains("layernorm") || lower.contains("rmsnorm") || lower.contains(".norm.") || lower.contains("_norm.") {
            return true
        }
        let components = name.split(separator: ".").map(String.init)
        guard components.count >= 2 else { return false }
        let module = components[components.count - 2]
        if layerNormModules[family]?.contains(module) == true { return true }
        // Generic: a rank-1 weight of a module named like a normalization layer (ln_*, *norm*).
        if family == .generic, components.last == "weight", shapes[name]?.count == 1 {
            let lowerModule = module.lowercased()
            return lowerModule.hasPrefix("ln") || lowerModule.contains("norm")
        }
        return false
    }

    /// Tied aliases of the architecture: alias → the parameter `named_parameters()` keeps.
    static func tiedPairs(family: Family, architecture: String, config: [String: Any], names: Set<String>) -> [String: String] {
        let hasLanguageHead = ["LMHead", "CausalLM", "MaskedLM", "PreTraining"].contains { architecture.contains($0) }
        let tieEmbeddings = config["tie_word_embeddings"] as? Bool ?? (family != .llama)
        var pairs: [(String, String, Bool)] = []
        switch family {
        case .gpt2: pairs = [("lm_head.weight", "transformer.wte.weight", tieEmbeddings && hasLanguageHead)]
        case .llama: pairs = [("lm_head.weight", "model.embed_tokens.weight", tieEmbeddings && hasLanguageHead)]
        case .bert:
            for (head, body) in [("cls.predictions", "bert"), ("lm_head", "roberta")] {
                pairs.append(("\(head).decoder.weight", "\(body).embeddings.word_embeddings.weight", tieEmbeddings && hasLanguageHead))
                pairs.append(("\(head).decoder.bias", "\(head).bias", hasLanguageHead))
            }
        case .generic: break
        }
        var tied: [String: String] = [:]
        for (alias, target, applies) in pairs where applies && names.contains(target) { tied[alias] = target }
        return tied
    }
}

extension HuggingFaceParameterOrder {
    /// The parameter name of every index of `optimizer`, by the Trainer's grouping (two param groups)
    /// or the plain order (one group), after checking group sizes, every state's shape, and that no
    /// two siblings of uncertain order could be swapped unnoticed.
    /// - Throws: ``CheckpointError`` naming the ambiguity, the group sizes or the first shape that
    ///   does not fit.
    public func names(for optimizer: TorchOptimizerState, path: String) throws(CheckpointError) -> [Int: String] {
        func fail(_ problem: String) -> CheckpointError { CheckpointError(path: path, problem: "cannot map optimizer indices to names: \(problem); pass a mapping file {\"0\": \"name\", ...}") }
        let expected: [[String]]
        switch optimizer.groups.count {
        case 1: expected = [parameters.map(\.name)]
        case 2: expected = [decayGroup, noDecayGroup]
        default: throw fail("\(optimizer.groups.count) param groups, but a Trainer optimizer has two (decay, no decay) and a plain one has one")
        }
        let sizes = optimizer.groups.map(\.parameterIndices.count)
        guard sizes == expected.map(\.count) else {
            throw fail("the param groups have \(sizes) parameters but \(architecture)'s \(parameters.count) parameters give \(expected.map(\.count)) by the Trainer's rule (decay = all but biases and normalization weights); frozen parameters or a custom grouping?")
        }
        try checkAmbiguity(expected, fail: fail)
        let stateShapes = try OptimizerParameterMapping.parameterShapes(optimizer, path: path)
        let shapes = Dictionary(parameters.map { ($0.name, $0.shape) }, uniquingKeysWith: { a, _ in a })
        var names: [Int: String] = [:]
        for (number, (group, groupNames)) in zip(optimizer.groups, expected).enumerated() {
            for (item, (index, name)) in zip(group.parameterIndices, groupNames).enumerated() {
                if let shape = stateShapes[index], shape != shapes[name] {
                    throw fail("param_groups[\(number)] item \(item) (index \(index)) has state of shape \(shape), but \(architecture)'s order (\(family.rawValue) rule) puts '\(name)' of shape \(shapes[name] ?? []) there")
                }
                names[index] = name
            }
        }
        return names
    }

    /// Refuses when two siblings of unknown relative order hold same-shaped parameters in every group.
    func checkAmbiguity(_ groups: [[String]], fail: (String) -> CheckpointError) throws(CheckpointError) {
        let shapes = Dictionary(parameters.map { ($0.name, $0.shape) }, uniquingKeysWith: { a, _ in a })
        var ambiguous: [String] = []
        for (parent, first, second) in uncertainSiblings {
            let prefix = parent.isEmpty ? "" : parent + "."
            func signature(_ child: String) -> [[[Int]]] {
                groups.map { $0.filter { $0.hasPrefix(prefix + child + ".") }.map { shapes[$0] ?? [] } }
            }
            let a = signature(first)
            if a.contains(where: { !$0.isEmpty }), a == signature(second) {
                ambiguous.append("'\(prefix)\(first)' and '\(prefix)\(second)'")
            }
        }
        guard ambiguous.isEmpty else {
            throw fail("ambiguous parameter order for \(architecture) (\(family == .generic ? "no known registration order for this architecture" : "\(family.rawValue) rule")): \(ambiguous.prefix(3).joined(separator: "; "))\(ambiguous.count > 3 ? " and \(ambiguous.count - 3) more pairs" : "") hold parameters of the same shapes, so either registration order fits the optimizer state and swapping them cannot be detected; refusing to guess")
        }
    }
}
