#!/usr/bin/env python3
"""Tiny Hugging Face models, a token batch and exact Fisher diagonals (float64, PyTorch) for the estimator tests.

Writes Tests/SquisherEstimatorsTests/Resources/hf/{gpt2,bert}/:
  config.json, model.safetensors (and GPT-2's generation_config.json) from `save_pretrained` (float32 weights);
  tokens.safetensors: input_ids int64 [8, 8], attention_mask int64 [8, 8], labels (GPT-2: = input_ids, the model
  shifts inside; BERT: int64 [8]);
  fisher_empirical.safetensors, fisher_true_exact.safetensors, fisher_joint.safetensors: float64, one tensor per
  parameter, keyed by the names in model.safetensors (GPT-2's tied head: only `transformer.wte.weight`).

Conventions (also in the folder's README.md): dropout 0, eval mode, weights upcast to float64. A sample is one
sequence; its loss is the cross-entropy SUMMED over its predicted tokens (GPT-2: positions 1..T-1 predicted
from the prefix; positions whose attention_mask is 0 excluded; BERT: the one label). Reductions over samples are
SUMS.
  empirical  = sum_n (dL_n/dθ)^2                      per-sample gradients, one backward per sample
  true_exact = sum_n sum_t sum_c p_{n,t}(c) (d log p_{n,t}(c)/dθ)^2
             = sum_n sum_t diag(J_t^T (diag(p) - p p^T) J_t)   the GGN diagonal, one backward per (n, t, c)
  joint      = (d sum_n L_n / dθ)^2                   one backward over the whole batch

Pinned versions: torch==2.13.0+cpu transformers==5.24.0 safetensors==0.8.0 (Tests/Generators/requirements.txt).
Run from the repository root (a few seconds):
    /work/peers-venv/bin/python Tests/Generators/make_hf_model_fixtures.py
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fixture_common import REPO, fresh_dir, quiet_libraries, save_tensors, seed_all, tiny_bert_config, tiny_gpt2_config  # noqa: E402

quiet_libraries()
warnings.filterwarnings("ignore")

import torch  # noqa: E402

OUT = REPO / "Tests/SquisherEstimatorsTests/Resources/hf"
N, T = 8, 8
VOCAB = 24


def make_gpt2():
    from transformers import GPT2LMHeadModel

    seed_all(0)
    model = GPT2LMHeadModel(tiny_gpt2_config(vocab_size=VOCAB, n_embd=16, n_positions=16))
    assert model.lm_head.weight is model.transformer.wte.weight
    g = torch.Generator().manual_seed(10)
    ids = torch.randint(3, VOCAB, (N, T), generator=g)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}
    return model, batch


def make_bert():
    from transformers import BertForSequenceClassification

    seed_all(0)
    config = tiny_bert_config(vocab_size=VOCAB, hidden=16, intermediate=32, num_labels=2)
    config.max_position_embeddings = 16
    model = BertForSequenceClassification(config)
    g = torch.Generator().manual_seed(11)
    ids = torch.randint(5, VOCAB, (N, T), generator=g)
    ids[:, 0] = 2
    lengths = torch.tensor([8, 8, 6, 5, 8, 7, 4, 8])
    mask = (torch.arange(T)[None, :] < lengths[:, None]).long()
    ids[mask == 0] = 0
    labels = torch.randint(0, 2, (N,), generator=g)
    return model, {"input_ids": ids, "attention_mask": mask, "labels": labels}


def token_log_probs(model, arch: str, ids, mask):
    """log p over classes for every predicted position: GPT-2 [n_pred, V] (masked positions dropped), BERT [1, 2];
    and the label of each row."""
    logits = model(input_ids=ids, attention_mask=mask).logits
    if arch == "gpt2":
        lp = torch.log_softmax(logits[0, :-1], dim=-1)
        keep = mask[0, 1:].bool()
        return lp[keep], ids[0, 1:][keep]
    return torch.log_softmax(logits, dim=-1), None


def fishers(model, arch: str, batch: dict) -> dict[str, dict[str, torch.Tensor]]:
    """The three diagonals by parameter name (float64, sums over samples; see the module docstring)."""
    named = [(n, p) for n, p in model.named_parameters()]
    params = [p for _, p in named]
    emp = [torch.zeros_like(p) for p in params]
    true = [torch.zeros_like(p) for p in params]
    for n in range(N):
        ids, mask = batch["input_ids"][n : n + 1], batch["attention_mask"][n : n + 1]
        lp, targets = token_log_probs(model, arch, ids, mask)
        if arch == "bert":
            targets = batch["labels"][n : n + 1]
        loss = -lp.gather(1, targets[:, None]).sum()
        for acc, gr in zip(emp, torch.autograd.grad(loss, params, retain_graph=True)):
            acc += gr * gr
        probs = lp.detach().exp()
        for t in range(lp.shape[0]):
            for c in range(lp.shape[1]):
                grads = torch.autograd.grad(lp[t, c], params, retain_graph=True)
                for acc, gr in zip(true, grads):
                    acc += probs[t, c] * gr * gr
    total = 0.0
    for n in range(N):
        ids, mask = batch["input_ids"][n : n + 1], batch["attention_mask"][n : n + 1]
        lp, targets = token_log_probs(model, arch, ids, mask)
        if arch == "bert":
            targets = batch["labels"][n : n + 1]
        total = total - lp.gather(1, targets[:, None]).sum()
    joint = [g * g for g in torch.autograd.grad(total, params)]
    names = [n for n, _ in named]
    return {
        "fisher_empirical": dict(zip(names, emp)),
        "fisher_true_exact": dict(zip(names, true)),
        "fisher_joint": dict(zip(names, joint)),
    }


def check_against_batched_loss(model, arch: str, batch: dict) -> None:
    """The per-sample summed losses must add up to the library's own batched loss times its token count (a check
    that the manual shift/mask matches what transformers computes)."""
    with torch.no_grad():
        out = model(**batch)
        total = 0.0
        count = 0
        for n in range(N):
            ids, mask = batch["input_ids"][n : n + 1], batch["attention_mask"][n : n + 1]
            lp, targets = token_log_probs(model, arch, ids, mask)
            if arch == "bert":
                targets = batch["labels"][n : n + 1]
            total += float(-lp.gather(1, targets[:, None]).sum())
            count += lp.shape[0]
    rel = abs(total / count - float(out.loss)) / abs(float(out.loss))
    # transformers' causal-LM loss casts the logits to float32 (`logits.float()`): agree to float32 rounding.
    assert rel < 1e-6, f"{arch}: manual mean loss {total / count} != transformers {float(out.loss)}"


def check_true_by_jacobian(model, arch: str, batch: dict, true: dict[str, torch.Tensor]) -> None:
    """Recompute the true Fisher another way, diag(J^T (diag p - p p^T) J) per token from the full Jacobian of the
    logits (torch.func.jacrev), and require agreement to 1e-12 of the largest entry: the per-class loop and the
    closed form are the same quantity in exact arithmetic, so only float64 rounding may separate them. (Attention
    key biases have an exactly zero gradient, softmax being shift-invariant; their entries are ~1e-43 noise.)"""
    from torch.func import functional_call, jacrev

    params = {n: p.detach() for n, p in model.named_parameters()}
    acc = {n: torch.zeros_like(p) for n, p in params.items()}
    for n in range(N):
        ids, mask = batch["input_ids"][n : n + 1], batch["attention_mask"][n : n + 1]

        def logits_of(ps):
            logits = functional_call(model, ps, (), {"input_ids": ids, "attention_mask": mask}).logits
            return logits[0, :-1][mask[0, 1:].bool()] if arch == "gpt2" else logits

        probs = torch.softmax(logits_of(params).detach(), dim=-1)
        for name, jac in jacrev(logits_of)(params).items():
            j = jac.reshape(probs.shape[0], probs.shape[1], -1)
            weighted = probs[..., None] * j
            acc[name] += ((weighted * j).sum(1) - weighted.sum(1) ** 2).sum(0).reshape(params[name].shape)
    scale = max(float(v.abs().max()) for v in true.values())
    worst = max(float((acc[k] - true[k]).abs().max()) for k in true) / scale
    assert worst < 1e-12, f"{arch}: true Fisher by per-class loop and by Jacobian differ by {worst} of the max"
    print(f"{arch}: true Fisher, per-class loop vs Jacobian closed form: max difference {worst:.1e} of the largest entry")


def write(arch: str) -> None:
    model, batch = make_gpt2() if arch == "gpt2" else make_bert()
    folder = fresh_dir(OUT / arch)
    model.save_pretrained(folder)
    save_tensors(folder / "tokens.safetensors", batch, dtype=torch.int64)
    model = model.double().eval()
    check_against_batched_loss(model, arch, batch)
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        file_keys = set(f.keys())
    diagonals = fishers(model, arch, batch)
    check_true_by_jacobian(model, arch, batch, diagonals["fisher_true_exact"])
    for name, diag in diagonals.items():
        assert set(diag) == file_keys, f"{arch}: parameter names {sorted(set(diag) ^ file_keys)} differ from the file"
        save_tensors(folder / f"{name}.safetensors", diag, dtype=torch.float64)
    print(f"{arch}: {sum(f.stat().st_size for f in folder.iterdir()) / 1024:.1f} KiB")


if __name__ == "__main__":
    torch.set_default_dtype(torch.float32)
    for arch in ("gpt2", "bert"):
        write(arch)
