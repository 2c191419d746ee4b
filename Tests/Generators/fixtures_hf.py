"""Hugging Face `Trainer` checkpoint folders (`checkpoint-N/`): tiny BERT, tiny GPT-2 (tied LM head), Adafactor."""

from __future__ import annotations

from pathlib import Path

import torch

from answer_keys import copy_tree, optimizer_index_names, tied_pairs, write_answer_key
from fixture_common import (
    BERT_VOCAB,
    GPT2_VOCAB,
    classification_data,
    fresh_dir,
    lm_data,
    seed_all,
    tiny_bert_config,
    tiny_gpt2_config,
    word_level_tokenizer,
)

TRAINER_STEPS = 6
TRAINER_NAMES = (
    "Trainer rule: group 0 = Trainer.get_decay_parameter_names(model) (all but biases and LayerNorm weights), "
    "group 1 = the rest, each in model.named_parameters() order of the architecture in config.json"
)


def run_trainer(model, dataset, work: Path, *, steps: int = TRAINER_STEPS, processing_class=None, **kwargs):
    """Train `model` with a CPU `Trainer` for `steps` steps, saving `checkpoint-{steps}/`; returns (trainer, folder).

    Keyword arguments go to `TrainingArguments`, except `optimizer_cls_and_kwargs`, `deepspeed_init`, which go to
    the Trainer.
    """
    from transformers import Trainer, TrainingArguments

    trainer_kwargs = {}
    if "optimizer_cls_and_kwargs" in kwargs:
        trainer_kwargs["optimizer_cls_and_kwargs"] = kwargs.pop("optimizer_cls_and_kwargs")
    fresh_dir(work)
    defaults = dict(
        output_dir=str(work),
        max_steps=steps,
        save_strategy="steps",
        save_steps=steps,
        per_device_train_batch_size=4,
        learning_rate=1e-3,
        weight_decay=0.01,
        logging_steps=2,
        use_cpu=True,
        report_to="none",
        disable_tqdm=True,
        seed=0,
        data_seed=0,
        dataloader_num_workers=0,
    )
    defaults.update(kwargs)
    args = TrainingArguments(**defaults)
    trainer = Trainer(model=model, args=args, train_dataset=dataset, processing_class=processing_class, **trainer_kwargs)
    trainer.train()
    return trainer, work / f"checkpoint-{steps}"


def inner_optimizer(trainer):
    """The torch optimizer under accelerate's wrapper."""
    opt = trainer.optimizer
    return getattr(opt, "optimizer", opt)


def check_against_saved(ckpt: Path, optimizer, key: str = "exp_avg_sq") -> None:
    """The live optimizer state must be what optimizer.pt holds (training ended at the saved step)."""
    saved = torch.load(ckpt / "optimizer.pt", weights_only=True, map_location="cpu")["state"]
    live = optimizer.state_dict()["state"]
    assert saved.keys() == live.keys(), "optimizer.pt and the live optimizer number parameters differently"
    for i in saved:
        if key in saved[i]:
            assert torch.equal(saved[i][key], live[i][key]), f"optimizer.pt state {i}.{key} differs from the live one"


def adam_key(trainer, model, ckpt: Path, fixture: Path, fmt: str, tokenizer=True) -> None:
    """Answer key of an Adam-family Trainer run: live `exp_avg_sq` by live parameter name."""
    opt = inner_optimizer(trainer)
    check_against_saved(ckpt, opt)
    names = optimizer_index_names(opt, dict(model.named_parameters()))
    by_id = {id(p): n for n, p in model.named_parameters()}
    v = {by_id[id(p)]: s["exp_avg_sq"] for p, s in opt.state.items()}
    step = int(max(float(s["step"]) for s in opt.state.values()))
    write_answer_key(
        fixture,
        fmt=fmt,
        optimizer=opt,
        optimizer_class=type(opt).__name__,
        input_path=ckpt.name,
        names_recovered_from=TRAINER_NAMES,
        parameter_names=names,
        second_moment=v,
        step=step,
        tied=tied_pairs(model),
        extra={"trainer_optim": str(trainer.args.optim.value if hasattr(trainer.args.optim, "value") else trainer.args.optim)},
    )


def hf_trainer_bert(fixture: Path, work: Path, *, task: str = "contains5", data_seed: int = 1) -> None:
    """Tiny BertForSequenceClassification (2 labels) fine-tuned 6 steps by the default Trainer optimizer."""
    from transformers import BertForSequenceClassification

    seed_all(0)
    model = BertForSequenceClassification(tiny_bert_config())
    tok = word_level_tokenizer(BERT_VOCAB)
    data = classification_data(48, BERT_VOCAB, seed=data_seed, task=task)
    trainer, ckpt = run_trainer(model, data, work, processing_class=tok)
    fresh_dir(fixture)
    copy_tree(ckpt, fixture / ckpt.name)
    adam_key(trainer, model, ckpt, fixture, "hf_trainer")


def hf_trainer_bert_b(fixture: Path, work: Path) -> None:
    """`hf_trainer_bert`'s init (seed 0) fine-tuned on another task (label = first content token < vocab/2)."""
    hf_trainer_bert(fixture, work, task="first_low", data_seed=4)


def hf_trainer_gpt2(fixture: Path, work: Path, *, data_seed: int = 2) -> None:
    """Tiny GPT2LMHeadModel (lm_head tied to transformer.wte) trained 6 steps by the default Trainer optimizer."""
    from transformers import GPT2LMHeadModel

    seed_all(0)
    model = GPT2LMHeadModel(tiny_gpt2_config())
    assert model.lm_head.weight is model.transformer.wte.weight, "lm_head is not tied"
    tok = word_level_tokenizer(GPT2_VOCAB)
    trainer, ckpt = run_trainer(model, lm_data(48, GPT2_VOCAB, seed=data_seed), work, processing_class=tok)
    fresh_dir(fixture)
    copy_tree(ckpt, fixture / ckpt.name)
    adam_key(trainer, model, ckpt, fixture, "hf_trainer")


def hf_trainer_gpt2_b(fixture: Path, work: Path) -> None:
    """`hf_trainer_gpt2`'s init (seed 0) trained on other data: the second input of a tied-weight merge."""
    hf_trainer_gpt2(fixture, work, data_seed=5)


def hf_base_bert_mlm(fixture: Path, _work: Path) -> None:
    """The common init of `hf_trainer_bert` and `hf_trainer_bert_b` as a pretrained base would come: a
    BertForMaskedLM holding the same encoder tensors (no pooler) plus a masked-LM head, no classifier."""
    from safetensors import safe_open
    from transformers import BertForMaskedLM, BertForSequenceClassification

    seed_all(0)
    init = BertForSequenceClassification(tiny_bert_config())
    seed_all(1)
    base = BertForMaskedLM(tiny_bert_config())
    missing, unexpected = base.bert.load_state_dict(init.bert.state_dict(), strict=False)
    assert not missing and all(k.startswith("pooler.") for k in unexpected), (missing, unexpected)
    fresh_dir(fixture)
    base.save_pretrained(fixture / "base")
    word_level_tokenizer(BERT_VOCAB).save_pretrained(fixture / "base")
    with safe_open(str(fixture / "base" / "model.safetensors"), "pt") as f:
        base_keys = set(f.keys())
    init_keys = set(init.state_dict().keys())
    for key in sorted(base_keys & init_keys):
        with safe_open(str(fixture / "base" / "model.safetensors"), "pt") as f:
            assert torch.equal(f.get_tensor(key), init.state_dict()[key]), f"{key} differs from the fine-tunes' init"
    from fixture_common import library_versions, write_json

    write_json(fixture / "expected.json", {
        "fixture": fixture.name,
        "format": "hf_pretrained_base",
        "input": "base",
        "architecture": "BertForMaskedLM",
        "base_of": ["hf_trainer_bert", "hf_trainer_bert_b"],
        "shared_tensors_equal_fine_tune_init": True,
        "only_in_base": sorted(base_keys - init_keys),
        "only_in_fine_tunes": sorted(init_keys - base_keys),
        "note": "the shared tensors equal the fine-tunes' weights before their first step; a tied decoder "
                "(cls.predictions.decoder.weight = bert.embeddings.word_embeddings.weight) is stored once",
        "versions": library_versions(),
    })


def adafactor_second_moment(opt, named: dict[str, torch.nn.Parameter]) -> dict[str, torch.Tensor]:
    """Adafactor's second moment per parameter as the library reconstructs it.

    Factored (rank >= 2): `_approx_sq_grad(row, col)` returns rsqrt(v_hat) with
    v_hat = (row / row.mean(-1, keepdim)).unsqueeze(-1) * col.unsqueeze(-2); the key is 1 / _approx_sq_grad**2,
    computed in float64, and checked against the closed form row ⊗ col / mean(row) to 1e-12 relative.
    Rank 1: the state's own `exp_avg_sq`.
    """
    from transformers.optimization import Adafactor

    by_id = {id(p): n for n, p in named.items()}
    out = {}
    for p, s in opt.state.items():
        name = by_id[id(p)]
        if "exp_avg_sq_row" in s:
            row = s["exp_avg_sq_row"].double()
            col = s["exp_avg_sq_col"].double()
            v = Adafactor._approx_sq_grad(row, col).pow(-2)
            closed = row.unsqueeze(-1) * col.unsqueeze(-2) / row.mean(dim=-1, keepdim=True).unsqueeze(-1)
            rel = ((v - closed).abs() / closed.abs()).max().item()
            assert rel < 1e-12, f"{name}: 1/_approx_sq_grad^2 and row⊗col/mean(row) differ by {rel}"
            assert v.shape == p.shape, f"{name}: reconstruction shape {tuple(v.shape)} != {tuple(p.shape)}"
            out[name] = v
        else:
            out[name] = s["exp_avg_sq"]
    return out


def adafactor(fixture: Path, work: Path) -> None:
    """Tiny BERT in a Trainer run with `--optim adafactor` (scale_parameter=False, relative_step=False, lr 1e-3)."""
    from transformers import BertForSequenceClassification

    seed_all(0)
    model = BertForSequenceClassification(tiny_bert_config())
    trainer, ckpt = run_trainer(
        model, classification_data(48, BERT_VOCAB, seed=1), work, optim="adafactor", processing_class=word_level_tokenizer(BERT_VOCAB)
    )
    opt = inner_optimizer(trainer)
    check_against_saved(ckpt, opt, key="exp_avg_sq_row")
    check_against_saved(ckpt, opt, key="exp_avg_sq")
    fresh_dir(fixture)
    copy_tree(ckpt, fixture / ckpt.name)
    step = int(max(int(s["step"]) for s in opt.state.values()))
    decay_rate = opt.param_groups[0]["decay_rate"]
    write_answer_key(
        fixture,
        fmt="hf_trainer",
        optimizer=opt,
        optimizer_class=type(opt).__name__,
        input_path=ckpt.name,
        names_recovered_from=TRAINER_NAMES,
        parameter_names=optimizer_index_names(opt, dict(model.named_parameters())),
        second_moment=adafactor_second_moment(opt, dict(model.named_parameters())),
        step=step,
        tied=tied_pairs(model),
        extra={
            "trainer_optim": "adafactor",
            "reconstruction": "rank>=2: v = row ⊗ col / mean(row, last dim) = 1/Adafactor._approx_sq_grad(row, col)^2; "
            "rank 1: exp_avg_sq",
            "beta2_at_step": f"1 - step^({decay_rate}) (decay_rate); last step {step}: {1 - step ** decay_rate}",
        },
    )


HF_FIXTURES = {
    "hf_trainer_bert": hf_trainer_bert,
    "hf_trainer_gpt2": hf_trainer_gpt2,
    "adafactor": adafactor,
    "hf_trainer_bert_b": hf_trainer_bert_b,
    "hf_trainer_gpt2_b": hf_trainer_gpt2_b,
    "hf_base_bert_mlm": hf_base_bert_mlm,
}
