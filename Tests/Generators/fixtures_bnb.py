"""bitsandbytes optimizers (8-bit, 32-bit, paged, Lion) inside HF Trainer checkpoint folders, on CPU.

The tiny BERT here has vocab 128 and intermediate 128 so that the word embeddings and the feed-forward weights
have numel 4096 = bitsandbytes' `min_8bit_size`: those take the blockwise 8-bit path (block 256), the smaller
tensors keep 32-bit state, so one fixture holds both layouts.
"""

from __future__ import annotations

from pathlib import Path

import torch

from answer_keys import copy_tree, optimizer_index_names, tied_pairs, write_answer_key
from fixture_common import classification_data, fresh_dir, seed_all, tiny_bert_config, word_level_tokenizer
from fixtures_hf import TRAINER_NAMES, inner_optimizer, run_trainer

BNB_VOCAB = 128
BLOCKSIZE = 256


def bnb_second_moment(opt, named: dict[str, torch.nn.Parameter]) -> dict[str, torch.Tensor]:
    """v per parameter: `F.dequantize_blockwise(state2, absmax=absmax2, code=qmap2, blocksize=256)` for 8-bit
    state, `state2` itself for 32-bit state; the 8-bit result is checked against qmap2[state2] * absmax2[i // 256]."""
    import bitsandbytes.functional as F

    by_id = {id(p): n for n, p in named.items()}
    out = {}
    for p, s in opt.state.items():
        name = by_id[id(p)]
        q = s["state2"]
        if q.dtype == torch.uint8:
            v = F.dequantize_blockwise(q, absmax=s["absmax2"], code=s["qmap2"], blocksize=BLOCKSIZE)
            flat = s["qmap2"][q.flatten().long()] * s["absmax2"].repeat_interleave(BLOCKSIZE)[: q.numel()]
            assert torch.allclose(v.flatten(), flat, rtol=1e-6, atol=0), f"{name}: dequantize_blockwise != closed form"
        else:
            v = q.clone()
        out[name] = v.reshape(p.shape)
    return out


def bnb_fixture(fixture: Path, work: Path, optimizer_cls, *, refusal: str | None = None, note: str | None = None):
    """Train the tiny BERT with a Trainer whose optimizer is `optimizer_cls` (Trainer's two groups), copy
    `checkpoint-6/`, write the answer key (dequantized second moment by name, or the expected refusal)."""
    from transformers import BertForSequenceClassification

    seed_all(0)
    model = BertForSequenceClassification(tiny_bert_config(vocab_size=BNB_VOCAB, intermediate=128))
    assert any(p.numel() >= 4096 for p in model.parameters())
    trainer, ckpt = run_trainer(
        model,
        classification_data(48, BNB_VOCAB, seed=1),
        work,
        processing_class=word_level_tokenizer(BNB_VOCAB),
        optimizer_cls_and_kwargs=(optimizer_cls, {"lr": 1e-3}),
    )
    opt = inner_optimizer(trainer)
    named = dict(model.named_parameters())
    saved = torch.load(ckpt / "optimizer.pt", weights_only=True, map_location="cpu")["state"]
    quant = {n: s["__bnb_optimizer_quant_state__"] for n, s in saved.items()}
    live = opt.state_dict()["state"]
    for i, q in quant.items():
        for k, t in q.items():
            assert torch.equal(t, live[i]["__bnb_optimizer_quant_state__"][k]), f"optimizer.pt {i}.{k} != live"
    fresh_dir(fixture)
    copy_tree(ckpt, fixture / ckpt.name)
    eight_bit = [n for n, p in named.items() if opt.state[p]["state1"].dtype == torch.uint8]
    extra = {
        "trainer_optim": "optimizer_cls_and_kwargs",
        "state_layout": "state[i] = {'step': int, '__bnb_optimizer_quant_state__': {...}}",
        "eight_bit_parameters": eight_bit,
        "blocksize": BLOCKSIZE,
    }
    if note:
        extra["note"] = note
    write_answer_key(
        fixture,
        fmt="hf_trainer",
        optimizer=opt,
        optimizer_class=type(opt).__name__,
        input_path=ckpt.name,
        names_recovered_from=TRAINER_NAMES,
        parameter_names=optimizer_index_names(opt, named),
        second_moment=None if refusal else bnb_second_moment(opt, named),
        step=int(max(int(s["step"]) for s in opt.state.values())),
        tied=tied_pairs(model),
        refusal=refusal,
        extra=extra,
    )


def bnb_adamw8bit(fixture: Path, work: Path) -> None:
    """bitsandbytes AdamW8bit: blockwise 8-bit state2 for numel >= 4096, float32 state2 below."""
    import bitsandbytes as bnb

    bnb_fixture(fixture, work, bnb.optim.AdamW8bit)


def bnb_adamw32bit(fixture: Path, work: Path) -> None:
    """bitsandbytes AdamW32bit: float32 state2 nested under `__bnb_optimizer_quant_state__`."""
    import bitsandbytes as bnb

    bnb_fixture(fixture, work, bnb.optim.AdamW32bit)


def bnb_paged_adamw8bit(fixture: Path, work: Path) -> None:
    """bitsandbytes PagedAdamW8bit: on CPU the library falls back to non-paged buffers (same saved layout)."""
    import bitsandbytes as bnb

    bnb_fixture(
        fixture,
        work,
        bnb.optim.PagedAdamW8bit,
        note="bitsandbytes 0.50.2 on CPU warns 'Paged optimizers are not supported on CPU. Falling back to non-paged "
        "optimizer behavior.'; the saved state has the same layout as AdamW8bit",
    )


def bnb_lion8bit(fixture: Path, work: Path) -> None:
    """bitsandbytes Lion8bit: one 8-bit momentum (state1), no second moment: a reader must refuse it."""
    import bitsandbytes as bnb

    bnb_fixture(
        fixture,
        work,
        bnb.optim.Lion8bit,
        refusal="Lion keeps only a momentum (state1, sign-based update); there is no second moment (no state2)",
    )


BNB_FIXTURES = {
    "bnb_adamw8bit": bnb_adamw8bit,
    "bnb_adamw32bit": bnb_adamw32bit,
    "bnb_paged_adamw8bit": bnb_paged_adamw8bit,
    "bnb_lion8bit": bnb_lion8bit,
}
