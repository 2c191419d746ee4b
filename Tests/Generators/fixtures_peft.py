"""PEFT LoRA on tiny BERT through a Trainer: checkpoint-6/ with adapter_model.safetensors, adapter_config.json and
an optimizer.pt over the trainable adapter tensors only."""

from __future__ import annotations

from pathlib import Path

import torch

from answer_keys import copy_tree, optimizer_index_names, write_answer_key
from fixture_common import BERT_VOCAB, classification_data, fresh_dir, seed_all, tiny_bert_config, word_level_tokenizer
from fixtures_hf import TRAINER_NAMES, check_against_saved, inner_optimizer, run_trainer


def adapter_file_names(model, named: dict[str, torch.nn.Parameter]) -> dict[str, str]:
    """Trainable parameter name -> key in adapter_model.safetensors, matched by storage (the tensors PEFT saves
    are the live parameters); checked against the naming rule "drop the adapter name segment"."""
    from peft import get_peft_model_state_dict

    saved = get_peft_model_state_dict(model)
    by_ptr = {t.data_ptr(): k for k, t in saved.items()}
    out = {}
    for n, p in named.items():
        if not p.requires_grad:
            continue
        key = by_ptr[p.data_ptr()]
        rule = n.replace(".default.", ".").replace(".modules_to_save.", ".")
        assert key == rule, f"adapter key {key} for parameter {n} does not follow the naming rule ({rule})"
        out[n] = key
    return out


def peft_lora(fixture: Path, work: Path) -> None:
    """LoRA r=4, alpha 8 on query/value of the tiny BERT, task SEQ_CLS (so the classifier is a module to save)."""
    from peft import LoraConfig, get_peft_model
    from transformers import BertForSequenceClassification

    seed_all(0)
    base = BertForSequenceClassification(tiny_bert_config())
    config = LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["query", "value"])
    model = get_peft_model(base, config)
    # LoRA B starts at zero; a few steps make it non-trivial.
    trainer, ckpt = run_trainer(
        model, classification_data(48, BERT_VOCAB, seed=1), work, processing_class=word_level_tokenizer(BERT_VOCAB)
    )
    opt = inner_optimizer(trainer)
    check_against_saved(ckpt, opt)
    named = dict(model.named_parameters())
    to_file = adapter_file_names(model, named)
    index_names = optimizer_index_names(opt, named)
    by_id = {id(p): n for n, p in named.items()}
    v = {to_file[by_id[id(p)]]: s["exp_avg_sq"] for p, s in opt.state.items()}
    from safetensors import safe_open

    with safe_open(str(ckpt / "adapter_model.safetensors"), "pt") as f:
        file_keys = set(f.keys())
    assert set(v) == file_keys, f"answer key names {sorted(v)} != adapter file keys {sorted(file_keys)}"
    fresh_dir(fixture)
    copy_tree(ckpt, fixture / ckpt.name)
    write_answer_key(
        fixture,
        fmt="peft_lora",
        optimizer=opt,
        optimizer_class=type(opt).__name__,
        input_path=ckpt.name,
        names_recovered_from=TRAINER_NAMES.replace("the architecture in config.json", "the PEFT model")
        + " over the trainable parameters only (LoRA A/B and modules_to_save); a name maps to its adapter-file key "
        "by dropping the adapter-name segment '.default' (and '.modules_to_save' for modules to save)",
        parameter_names=[[to_file[n] for n in g] for g in index_names],
        second_moment=v,
        step=int(max(float(s["step"]) for s in opt.state.values())),
        tied=[],
        extra={
            "adapter_name": "default",
            "parameter_names_in_model": [n for g in index_names for n in g],
            "lora": {"r": 4, "lora_alpha": 8, "target_modules": ["query", "value"], "modules_to_save": ["classifier"]},
        },
    )


PEFT_FIXTURES = {"peft_lora": peft_lora}
