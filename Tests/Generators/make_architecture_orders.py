#!/usr/bin/env python3
"""Write, for tiny models of several Hugging Face architectures, what an optimizer.pt without names depends on.

For each architecture: config.json as `save_pretrained` writes it, the tensors of model.safetensors (names and
shapes, in file order), `model.named_parameters()` order, the Trainer's decay group
(`Trainer.get_decay_parameter_names`), and tied pairs (a parameter object listed under two state-dict names).
`HuggingFaceOrderTests` checks that Squisher derives the same order, groups and ties from config + weights alone.

Pinned versions: torch==2.13.0+cpu, transformers==5.24.0, safetensors==0.8.0 (as make_checkpoint_fixtures.py).
Run from the repository root (seconds):
    /work/peers-venv/bin/python Tests/Generators/make_architecture_orders.py
Output: Tests/SquisherCheckpointsTests/Resources/orders/<Architecture>.json
"""
import json
import tempfile
from pathlib import Path

import torch
import transformers
from safetensors import safe_open
from transformers import (BertConfig, BertForMaskedLM, BertModel, GPT2Config, GPT2LMHeadModel, GPT2Model,
                          LlamaConfig, LlamaForCausalLM, RobertaConfig, RobertaForSequenceClassification, Trainer)

OUT = Path(__file__).resolve().parents[1] / "SquisherCheckpointsTests/Resources/orders"

bert = dict(vocab_size=64, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, max_position_embeddings=32)
MODELS = [
    (BertModel, BertConfig(**bert)),
    (BertForMaskedLM, BertConfig(**bert)),
    (RobertaForSequenceClassification, RobertaConfig(**bert, num_labels=3)),
    (GPT2Model, GPT2Config(vocab_size=64, n_embd=16, n_layer=2, n_head=2, n_positions=16)),
    (GPT2LMHeadModel, GPT2Config(vocab_size=64, n_embd=16, n_layer=2, n_head=2, n_positions=16)),
    (LlamaForCausalLM, LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                   num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=False)),
]


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for cls, config in MODELS:
        torch.manual_seed(0)
        model = cls(config)
        with tempfile.TemporaryDirectory() as folder:
            model.save_pretrained(folder)
            saved_config = json.loads((Path(folder) / "config.json").read_text())
            with safe_open(str(Path(folder) / "model.safetensors"), framework="pt") as f:
                weights = [[name, list(f.get_slice(name).get_shape())] for name in f.keys()]
        named = [name for name, _ in model.named_parameters()]
        decay = set(Trainer.get_decay_parameter_names(None, model))
        by_object = {}
        for name, parameter in model.named_parameters(remove_duplicate=False):
            by_object.setdefault(id(parameter), []).append(name)
        tied = [[names[i], names[0]] for names in by_object.values() for i in range(1, len(names))]
        record = {
            "architecture": cls.__name__, "config": saved_config, "weights": weights, "named_parameters": named,
            "decay": [n for n in named if n in decay], "no_decay": [n for n in named if n not in decay], "tied": tied,
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        }
        (OUT / f"{cls.__name__}.json").write_text(json.dumps(record, indent=1) + "\n")
        print(cls.__name__, len(named), "parameters,", len(tied), "tied")


if __name__ == "__main__":
    main()
