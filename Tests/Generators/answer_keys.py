"""Answer keys for the checkpoint fixtures: the second moment by parameter name, taken from live objects.

`expected.safetensors`: one float32 tensor per trainable parameter, the parameter's shape, keyed by the name the
parameter has in the model's weights file. `expected.json`: how the fixture was made and what a reader must report.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from fixture_common import library_versions, save_tensors, write_json


def optimizer_index_names(optimizer: torch.optim.Optimizer, named: dict[str, torch.nn.Parameter]) -> list[list[str]]:
    """Names of the optimizer's parameters, one list per param group, in the order `state_dict()` numbers them.

    `named` maps names to the live parameters (`dict(model.named_parameters())`); a parameter is found by identity.
    """
    by_id = {id(p): n for n, p in named.items()}
    groups = []
    for group in optimizer.param_groups:
        names = []
        for p in group["params"]:
            if id(p) not in by_id:
                raise KeyError(f"optimizer parameter of shape {tuple(p.shape)} is not among the model's parameters")
            names.append(by_id[id(p)])
        groups.append(names)
    return groups


def tied_pairs(model: torch.nn.Module) -> list[list[str]]:
    """[alias, kept] pairs of parameter names that share one tensor; `kept` is the name `named_parameters()` yields."""
    first: dict[int, str] = {}
    pairs = []
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in first:
            pairs.append([name, first[id(p)]])
        else:
            first[id(p)] = name
    return pairs


def group_hyper(optimizer: torch.optim.Optimizer) -> list[dict]:
    """Each param group's scalar hyper-parameters (JSON-able ones), without the parameter list."""
    out = []
    for group in optimizer.param_groups:
        h = {}
        for k, v in group.items():
            if k in ("params", "param_names"):
                continue
            if isinstance(v, tuple):
                v = list(v)
            if isinstance(v, torch.Tensor):
                v = v.item()
            if v is None or isinstance(v, (bool, int, float, str, list)):
                h[k] = v
        out.append(h)
    return out


def write_answer_key(
    fixture: Path,
    *,
    fmt: str,
    optimizer: torch.optim.Optimizer | None,
    optimizer_class: str,
    input_path: str,
    names_recovered_from: str,
    parameter_names: list[list[str]],
    second_moment: dict[str, torch.Tensor] | None,
    step: int | None,
    tied: list[list[str]] | None = None,
    refusal: str | None = None,
    extra: dict | None = None,
) -> None:
    """Write `expected.safetensors` (unless the fixture is a refusal) and `expected.json` into `fixture`."""
    flat = [n for g in parameter_names for n in g]
    if second_moment is not None:
        missing = [n for n in flat if n not in second_moment]
        extra_keys = [n for n in second_moment if n not in flat]
        if missing or extra_keys:
            raise AssertionError(f"{fixture.name}: answer key names differ: missing {missing}, extra {extra_keys}")
        for name, v in second_moment.items():
            if not torch.isfinite(v).all():
                raise AssertionError(f"{fixture.name}: {name} has non-finite second moment")
            if float(v.abs().max()) == 0.0:
                raise AssertionError(f"{fixture.name}: {name} second moment is all zeros (not a useful fixture)")
        save_tensors(fixture / "expected.safetensors", second_moment)
    hyper = group_hyper(optimizer) if optimizer is not None else []
    meta = {
        "fixture": fixture.name,
        "format": fmt,
        "optimizer_class": optimizer_class,
        "input": input_path,
        "names_recovered_from": names_recovered_from,
        "betas": hyper[0].get("betas") if hyper else None,
        "eps": hyper[0].get("eps") if hyper else None,
        "step": step,
        "group_sizes": [len(g) for g in parameter_names],
        "parameter_names": flat,
        "tied_weights": tied or [],
        "answer_key": None if second_moment is None else "expected.safetensors",
        "answer_key_dtype": None if second_moment is None else "float32",
        "refusal": refusal,
        "param_groups": hyper,
        "versions": library_versions(),
    }
    if extra:
        meta.update(extra)
    write_json(fixture / "expected.json", meta)


def copy_tree(src: Path, dst: Path, skip: tuple[str, ...] = ()) -> None:
    """Copy a folder the library wrote, as written, leaving out files whose names are in `skip`."""
    shutil.copytree(src, dst, ignore=lambda _d, names: [n for n in names if n in skip])
