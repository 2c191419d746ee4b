"""Plain `torch.save(optimizer.state_dict())` next to a `save_pretrained` tiny BERT: NAdam, RAdam, Adamax, SGD, AdamW
built from `named_parameters()` (which stores `param_names`)."""

from __future__ import annotations

from pathlib import Path

import torch

from answer_keys import optimizer_index_names, tied_pairs, write_answer_key
from fixture_common import BERT_VOCAB, classification_data, fresh_dir, seed_all, tiny_bert_config

LOOP_STEPS = 5
ONE_GROUP_NAMES = (
    "one param group = model.parameters(), i.e. model.named_parameters() order of the architecture in config.json"
)


def train_loop(model, optimizer, steps: int = LOOP_STEPS, batch: int = 8) -> None:
    """A plain training loop over seeded synthetic classification batches."""
    data = classification_data(steps * batch, BERT_VOCAB, seed=3)
    model.train()
    for s in range(steps):
        rows = data[slice(s * batch, (s + 1) * batch)]
        loss = model(**rows).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def plain_fixture(fixture: Path, make_optimizer, *, refusal: str | None = None, named: bool = False) -> None:
    """Train tiny BERT with `make_optimizer(model)`, write `checkpoint/` (config.json, model.safetensors,
    optimizer.pt) and the answer key (live `exp_avg_sq` by name, or the expected refusal)."""
    from transformers import BertForSequenceClassification

    seed_all(0)
    model = BertForSequenceClassification(tiny_bert_config())
    opt = make_optimizer(model)
    train_loop(model, opt)
    fresh_dir(fixture)
    ckpt = fixture / "checkpoint"
    model.save_pretrained(ckpt)
    torch.save(opt.state_dict(), ckpt / "optimizer.pt")
    named_params = dict(model.named_parameters())
    by_id = {id(p): n for n, p in named_params.items()}
    v = None if refusal else {by_id[id(p)]: s["exp_avg_sq"] for p, s in opt.state.items()}
    steps = [float(s["step"]) for s in opt.state.values() if "step" in s]
    if named:
        stored = [n for g in opt.state_dict()["param_groups"] for n in g["param_names"]]
        assert stored == [n for g in optimizer_index_names(opt, named_params) for n in g]
    write_answer_key(
        fixture,
        fmt="torch_state_dict",
        optimizer=opt,
        optimizer_class=type(opt).__name__,
        input_path=ckpt.name,
        names_recovered_from="param_groups[i]['param_names'] stored in optimizer.pt" if named else ONE_GROUP_NAMES,
        parameter_names=optimizer_index_names(opt, named_params),
        second_moment=v,
        step=int(max(steps)) if steps else LOOP_STEPS,
        tied=tied_pairs(model),
        refusal=refusal,
        extra={"state_keys": sorted(next(iter(opt.state_dict()["state"].values())).keys())},
    )


def torch_nadam(fixture: Path, _work: Path) -> None:
    """torch.optim.NAdam: `exp_avg_sq` is Adam's EMA of g^2; `mu_product` extra; no `amsgrad` in the group."""
    plain_fixture(fixture, lambda m: torch.optim.NAdam(m.parameters(), lr=1e-3))


def torch_radam(fixture: Path, _work: Path) -> None:
    """torch.optim.RAdam: `exp_avg_sq` is Adam's EMA of g^2; no `amsgrad` in the group."""
    plain_fixture(fixture, lambda m: torch.optim.RAdam(m.parameters(), lr=1e-3))


def torch_adamax(fixture: Path, _work: Path) -> None:
    """torch.optim.Adamax: `exp_inf` is an infinity norm, not a second moment: a reader must refuse it."""
    plain_fixture(
        fixture,
        lambda m: torch.optim.Adamax(m.parameters(), lr=1e-3),
        refusal="Adamax keeps exp_inf = max(beta2 * u, |g| + eps), an infinity norm of the gradients, not a second moment",
    )


def torch_sgd_momentum(fixture: Path, _work: Path) -> None:
    """torch.optim.SGD with momentum: only `momentum_buffer`; a reader must refuse it."""
    plain_fixture(
        fixture,
        lambda m: torch.optim.SGD(m.parameters(), lr=1e-2, momentum=0.9),
        refusal="SGD keeps only momentum_buffer (a first moment); there is no second moment",
    )


def torch_adamw_named(fixture: Path, _work: Path) -> None:
    """torch.optim.AdamW over `model.named_parameters()`, two groups (decay / no decay): names stored."""

    def make(model):
        decay = [(n, p) for n, p in model.named_parameters() if p.ndim >= 2]
        rest = [(n, p) for n, p in model.named_parameters() if p.ndim < 2]
        return torch.optim.AdamW(
            [{"params": decay, "weight_decay": 0.01}, {"params": rest, "weight_decay": 0.0}], lr=1e-3
        )

    plain_fixture(fixture, make, named=True)


TORCH_FIXTURES = {
    "torch_nadam": torch_nadam,
    "torch_radam": torch_radam,
    "torch_adamax": torch_adamax,
    "torch_sgd_momentum": torch_sgd_momentum,
    "torch_adamw_named": torch_adamw_named,
}
