"""PyTorch FSDP2 (`fully_shard`) on CPU with gloo, world size 2: a full optimizer state dict saved with
`torch.save` (`fsdp_full/`), a `torch.distributed.checkpoint.save` folder (`dcp/`), and that folder converted by
`dcp_to_torch_save` (`dcp_to_torch_save/`). One training run writes all three; the answer key is the full
optimizer state from `get_optimizer_state_dict(model, opt, options=StateDictOptions(full_state_dict=True))`.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import torch

from answer_keys import tied_pairs, write_answer_key
from fixture_common import BERT_VOCAB, classification_data, fresh_dir, save_tensors, seed_all, tiny_bert_config

WORLD = 2
FSDP_STEPS = 4
MICRO_BATCH = 4
_RUNS_DONE: set[Path] = set()


def fsdp_worker(rank: int, world: int, out: str, port: int) -> None:
    """One rank: shard the tiny BERT (each encoder layer, then the root) over a CPU mesh, train, save all forms."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_optimizer_state_dict
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from transformers import BertForSequenceClassification

    from fixtures_deepspeed import trainer_groups

    dist.init_process_group("gloo", rank=rank, world_size=world)
    seed_all(0)
    # 3 labels: the classifier's dim 0 (3) shards unevenly over 2 ranks (2 + 1 rows).
    model = BertForSequenceClassification(tiny_bert_config(num_labels=3))
    tied = tied_pairs(model)
    mesh = init_device_mesh("cpu", (world,))
    for layer in model.bert.encoder.layer:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    opt = torch.optim.AdamW(trainer_groups(model), lr=1e-3)
    data = classification_data(64, BERT_VOCAB, seed=3)
    for s in range(FSDP_STEPS):
        lo = (s * world + rank) * MICRO_BATCH
        loss = model(**data[slice(lo, lo + MICRO_BATCH)]).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    out = Path(out)
    full = StateDictOptions(full_state_dict=True, cpu_offload=True)
    full_optim = get_optimizer_state_dict(model, opt, options=full)
    full_model = get_model_state_dict(model, options=full)
    if rank == 0:
        (out / "fsdp_full").mkdir()
        torch.save(full_optim, out / "fsdp_full" / "optimizer.pt")
        save_tensors(out / "fsdp_full" / "model.safetensors", full_model)
        torch.save({"optim": full_optim, "model": full_model, "tied": tied}, out / "_answer.pt")
    sharded = {"model": get_model_state_dict(model), "optim": get_optimizer_state_dict(model, opt)}
    dcp.save(sharded, checkpoint_id=str(out / "dcp"))
    dist.barrier()
    dist.destroy_process_group()


def fsdp_run(work: Path) -> dict:
    """Run the world-size-2 job once per generator process (into `work`) and return the answer bundle."""
    import torch.multiprocessing as mp

    from fixtures_deepspeed import free_port

    if work not in _RUNS_DONE:
        _RUNS_DONE.add(work)
        fresh_dir(work)
        mp.spawn(fsdp_worker, args=(WORLD, str(work), free_port()), nprocs=WORLD, join=True)
        from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

        (work / "dcp_to_torch_save").mkdir()
        dcp_to_torch_save(str(work / "dcp"), str(work / "dcp_to_torch_save" / "checkpoint.pt"))
    answer = torch.load(work / "_answer.pt", weights_only=False)
    converted = torch.load(work / "dcp_to_torch_save" / "checkpoint.pt", weights_only=False)
    for name, s in answer["optim"]["state"].items():
        assert torch.equal(converted["optim"]["state"][name]["exp_avg_sq"], s["exp_avg_sq"]), f"{name}: DCP round trip != full state"
    assert list(converted["model"]) == list(answer["model"]), "DCP round trip model keys != full model state"
    for name, w in answer["model"].items():
        assert torch.equal(converted["model"][name], w), f"{name}: DCP round trip model weight != full model state"
    return answer


def full_key(answer: dict) -> tuple[dict[str, torch.Tensor], list[list[str]], int, list[dict]]:
    """Second moment by name, names per group, step and group hyper-parameters from the full optimizer state."""
    optim = answer["optim"]
    v = {name: s["exp_avg_sq"] for name, s in optim["state"].items()}
    groups = [list(g["params"]) for g in optim["param_groups"]]
    step = int(max(float(s["step"]) for s in optim["state"].values()))
    hyper = [{k: (list(x) if isinstance(x, tuple) else x) for k, x in g.items()
              if k != "params" and isinstance(x, (int, float, str, bool, tuple, list, type(None)))}
             for g in optim["param_groups"]]
    return v, groups, step, hyper


def distributed_fixture(
    fixture: Path, work: Path, form: str, fmt: str, names: str, extra: dict, model_key: bool = False
) -> None:
    """Copy one of the forms the shared run wrote into `<fixture>/checkpoint/` and write the answer key (and, with
    `model_key`, `model_expected.safetensors`: the full model state dict, float32)."""
    answer = fsdp_run(work.parent / "fsdp_run")
    v, groups, step, hyper = full_key(answer)
    fresh_dir(fixture)
    shutil.copytree(work.parent / "fsdp_run" / form, fixture / "checkpoint")
    if model_key:
        save_tensors(fixture / "model_expected.safetensors", answer["model"])
        extra = {**extra, "model_answer_key": "model_expected.safetensors",
                 "model_answer_key_source": "get_model_state_dict(model, options=StateDictOptions(full_state_dict=True,"
                 " cpu_offload=True)) in the same run, float32"}
    write_answer_key(
        fixture,
        fmt=fmt,
        optimizer=None,
        optimizer_class="AdamW",
        input_path="checkpoint",
        names_recovered_from=names,
        parameter_names=groups,
        second_moment=v,
        step=step,
        tied=answer["tied"],
        extra={
            "betas": hyper[0]["betas"],
            "eps": hyper[0]["eps"],
            "param_groups": hyper,
            "world_size": WORLD,
            "answer_key_source": "get_optimizer_state_dict(model, opt, options=StateDictOptions(full_state_dict=True,"
            " cpu_offload=True)) after FSDP2 fully_shard training",
            **extra,
        },
    )


def fsdp_full(fixture: Path, work: Path) -> None:
    """`torch.save` of the full optimizer state dict (names as `state` keys and in `param_groups[i]['params']`)."""
    distributed_fixture(
        fixture, work, "fsdp_full", "fsdp_full_state_dict",
        "state keys and param_groups[i]['params'] are parameter names (fully qualified)",
        {"files": "optimizer.pt (torch.save of the full optimizer state dict), model.safetensors (full model state)"},
    )


def dcp(fixture: Path, work: Path) -> None:
    """A `torch.distributed.checkpoint.save` folder of {"model", "optim"} sharded state dicts, world size 2."""
    distributed_fixture(
        fixture, work, "dcp", "dcp",
        ".metadata keys 'optim.state.<fqn>.exp_avg_sq' (FSDP2 shards dim 0 across the 2 ranks; chunks in "
        "__0_0.distcp and __1_0.distcp)",
        {"files": ".metadata, __0_0.distcp, __1_0.distcp"}, model_key=True,
    )


def dcp_to_torch_save(fixture: Path, work: Path) -> None:
    """`torch.distributed.checkpoint.format_utils.dcp_to_torch_save` of the `dcp` folder: one torch.save file."""
    distributed_fixture(
        fixture, work, "dcp_to_torch_save", "dcp_torch_save",
        "checkpoint.pt = {'model': {fqn: tensor}, 'optim': {'state': {fqn: {...}}, 'param_groups': [...names...]}}",
        {"files": "checkpoint.pt"}, model_key=True,
    )


DISTRIBUTED_FIXTURES = {"fsdp_full": fsdp_full, "dcp": dcp, "dcp_to_torch_save": dcp_to_torch_save}
