"""DeepSpeed ZeRO 1/2/3 checkpoints (fp32, bf16, world size 1 and 2) on CPU, and an HF Trainer + DeepSpeed folder.

Each run spawns `world_size` local processes (torch.multiprocessing, gloo on 127.0.0.1, DS_ACCELERATOR=cpu).
The answer key is DeepSpeed's own reconstruction, `deepspeed.utils.safe_get_full_optimizer_state(param,
"exp_avg_sq")`, called on every rank (it is a collective) for each parameter of the live engine; rank 0 writes it.
DeepSpeed JIT-builds its CPU shared-memory op once (g++ and the venv's ninja on PATH; a few minutes the first
time, cached under ~/.cache/torch_extensions after).
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
from pathlib import Path

import torch

from answer_keys import copy_tree, tied_pairs, write_answer_key
from fixture_common import (
    BERT_VOCAB,
    save_tensors,
    classification_data,
    fresh_dir,
    lm_data,
    seed_all,
    tiny_bert_config,
    tiny_gpt2_config,
)

DS_STEPS = 4
ODD_VOCAB = 63
MICRO_BATCH = 4
DS_NAMES = (
    "param_shapes in the model-states file (one ordered name -> shape map per optimizer group, in flattening "
    "order); shared_params lists tied aliases"
)


def free_port() -> int:
    """A free TCP port on 127.0.0.1 for the gloo rendezvous."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def trainer_groups(model) -> list[dict]:
    """The HF Trainer's two groups (weight decay / none), so the flat partitions hold two groups as in practice."""
    from transformers import Trainer

    decay = set(Trainer.get_decay_parameter_names(None, model))
    named = list(model.named_parameters())
    return [
        {"params": [p for n, p in named if n in decay], "weight_decay": 0.01},
        {"params": [p for n, p in named if n not in decay], "weight_decay": 0.0},
    ]


def make_model(arch: str):
    """Tiny BERT classifier, or a tiny GPT-2 (tied head) with odd sizes (vocab 63, n_embd 33, 3 heads) so that
    world size 2 needs padding (odd-length parameters and groups), and its seeded data."""
    from transformers import BertForSequenceClassification, GPT2LMHeadModel

    if arch == "bert":
        return BertForSequenceClassification(tiny_bert_config()), classification_data(64, BERT_VOCAB, seed=3)
    config = tiny_gpt2_config(vocab_size=ODD_VOCAB, n_embd=33)
    config.n_head = 3
    return GPT2LMHeadModel(config), lm_data(64, ODD_VOCAB, seed=3)


def ds_worker(rank: int, world: int, spec: dict, out: str, port: int) -> None:
    """One rank: initialize DeepSpeed, train DS_STEPS data-parallel steps, save, gather the answer key."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world),
    )
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import deepspeed
    from deepspeed.utils import safe_get_full_optimizer_state

    deepspeed.init_distributed(dist_backend="gloo")
    seed_all(0)
    model, data = make_model(spec["arch"])
    tied = tied_pairs(model)
    opt = torch.optim.AdamW(trainer_groups(model), lr=1e-3)
    config = {
        "train_micro_batch_size_per_gpu": MICRO_BATCH,
        "gradient_accumulation_steps": 1,
        "zero_optimization": {"stage": spec["stage"]},
        "bf16": {"enabled": spec.get("bf16", False)},
        "steps_per_print": 10_000,
        "wall_clock_breakdown": False,
    }
    engine, ds_opt, _, _ = deepspeed.initialize(model=model, optimizer=opt, config=config)
    for s in range(DS_STEPS):
        lo = (s * world + rank) * MICRO_BATCH
        rows = {k: v for k, v in data[slice(lo, lo + MICRO_BATCH)].items()}
        loss = engine(**rows).loss
        engine.backward(loss)
        engine.step()
    if hasattr(ds_opt, "_hp_optimizer_states_linked"):
        # ZeRO-1/2 step one param group at a time and link every parameter to its slice of the optimizer state
        # right after the first group's first step, before torch has created the other groups' lazy state; the
        # later groups stay unlinked and safe_get_full_optimizer_state raises "exp_avg_sq not found in optimizer
        # state fragment" for them (deepspeed 0.19.8, two groups). Re-run DeepSpeed's own linkage now that every
        # group has state.
        ds_opt._hp_optimizer_states_linked = False
        ds_opt._lazy_init_hp_params_optimizer_state()
    key = {}
    for name, p in engine.module.named_parameters():
        v = safe_get_full_optimizer_state(p, "exp_avg_sq")
        assert v is not None, f"safe_get_full_optimizer_state returned None for {name}"
        key[name] = v.detach().float().cpu().reshape(p.ds_shape if hasattr(p, "ds_shape") else p.shape).clone()
    # The model answer key: the live module's state dict (what save_checkpoint writes under "module"); under ZeRO-3
    # the module holds only this rank's partitions, and the file holds empty placeholders, so there is none.
    weights = None if spec["stage"] == 3 else {n: t.detach().float().cpu().clone() for n, t in engine.module.state_dict().items()}
    engine.save_checkpoint(out)
    if rank == 0:
        torch.save({"key": key, "weights": weights, "tied": tied, "optimizer_class": type(ds_opt).__name__,
                    "base_class": type(opt).__name__, "config": config,
                    "hyper": [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]},
                   Path(out) / "_answer.pt")
    torch.distributed.barrier()


def hf_ds_worker(rank: int, world: int, spec: dict, out: str, port: int) -> None:
    """One rank of an HF Trainer run with a DeepSpeed config (ZeRO-2): the Trainer builds its two-group AdamW,
    DeepSpeed wraps it, and `checkpoint-N/` gets model.safetensors plus DeepSpeed's `global_stepN/`."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world), ACCELERATE_USE_DEEPSPEED="true",
    )
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from deepspeed.utils import safe_get_full_optimizer_state
    from transformers import BertForSequenceClassification

    from fixture_common import word_level_tokenizer
    from fixtures_hf import run_trainer

    seed_all(0)
    model = BertForSequenceClassification(tiny_bert_config())
    config = {
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "zero_optimization": {"stage": spec["stage"]},
        "bf16": {"enabled": False},
        "steps_per_print": 10_000,
    }
    trainer, ckpt = run_trainer(
        model, classification_data(48, BERT_VOCAB, seed=1), Path(out), deepspeed=config, use_cpu=False,
        processing_class=word_level_tokenizer(BERT_VOCAB), steps=spec["steps"],
    )
    engine = trainer.model_wrapped
    ds_opt = engine.optimizer
    if hasattr(ds_opt, "_hp_optimizer_states_linked"):
        ds_opt._hp_optimizer_states_linked = False  # see ds_worker
        ds_opt._lazy_init_hp_params_optimizer_state()
    key = {n: safe_get_full_optimizer_state(p, "exp_avg_sq").float().cpu().reshape(p.shape).clone()
           for n, p in engine.module.named_parameters()}
    if rank == 0:
        base = ds_opt.optimizer
        torch.save({"key": key, "tied": tied_pairs(model), "optimizer_class": type(ds_opt).__name__,
                    "base_class": type(base).__name__, "config": config, "checkpoint": ckpt.name,
                    "hyper": [{k: v for k, v in g.items() if k != "params"} for g in base.param_groups]},
                   Path(out) / "_answer.pt")
    torch.distributed.barrier()


def hf_trainer_deepspeed(fixture: Path, work: Path) -> None:
    """HF Trainer + DeepSpeed ZeRO-2 on CPU: copy `checkpoint-N/` as written (no optimizer.pt)."""
    import torch.multiprocessing as mp

    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    spec = {"stage": 2, "world": 1, "steps": 6}
    fresh_dir(work)
    mp.spawn(hf_ds_worker, args=(spec["world"], spec, str(work), free_port()), nprocs=spec["world"], join=True)
    answer = torch.load(work / "_answer.pt", weights_only=False)
    ckpt = work / answer["checkpoint"]
    assert not (ckpt / "optimizer.pt").exists(), "HF + DeepSpeed wrote an optimizer.pt"
    tag = (ckpt / "latest").read_text().strip()
    from_files = consolidate_from_files(ckpt / tag, spec["stage"], spec["world"])
    for name, v in answer["key"].items():
        assert torch.equal(from_files[name], v), f"{fixture.name}: {name}: file layout rule != safe_get_full_optimizer_state"
    fresh_dir(fixture)
    copy_tree(ckpt, fixture / ckpt.name, skip=("zero_to_fp32.py", "zero_to_torch.py"))
    hyper = answer["hyper"]
    write_answer_key(
        fixture,
        fmt="hf_trainer_deepspeed",
        optimizer=None,
        optimizer_class=f"{answer['optimizer_class']} over torch {answer['base_class']}",
        input_path=ckpt.name,
        names_recovered_from=DS_NAMES + f" ({ckpt.name}/{tag}/mp_rank_00_model_states.pt)",
        parameter_names=read_param_shapes(ckpt / tag),
        second_moment=answer["key"],
        step=spec["steps"],
        tied=answer["tied"],
        extra={
            "betas": list(hyper[0]["betas"]),
            "eps": hyper[0]["eps"],
            "param_groups": [{k: (list(v) if isinstance(v, tuple) else v) for k, v in h.items()
                              if isinstance(v, (int, float, str, bool, tuple, list, type(None)))} for h in hyper],
            "world_size": spec["world"],
            "zero_stage": spec["stage"],
            "bf16": False,
            "tag": tag,
            "answer_key_source": "deepspeed.utils.safe_get_full_optimizer_state(param, 'exp_avg_sq') on the live engine",
            "deepspeed_config": answer["config"],
            "not_copied": "zero_to_fp32.py and zero_to_torch.py (scripts DeepSpeed drops beside `latest`)",
        },
    )


def read_param_shapes(step_dir: Path) -> list[list[str]]:
    """Names per group from the model-states file DeepSpeed wrote (its pickles need the DeepSpeed classes)."""
    files = sorted(step_dir.glob("*model_states.pt"))
    states = torch.load(files[0], weights_only=False, map_location="cpu")
    return [list(g.keys()) for g in states["param_shapes"]]


def consolidate_from_files(step_dir: Path, stage: int, world: int) -> dict[str, torch.Tensor]:
    """The layout rule a native reader follows (see shared FORMATS.md), applied to the saved files; used only to
    cross-check the library's own reconstruction.

    Stage 1/2: per group, concatenate the ranks' flat `exp_avg_sq`, then slice in `param_shapes` order, skipping
    `param_alignment_paddings[g][i]` after parameter i. Stage 3: each rank holds ceil(n / W) elements of every
    parameter in `param_shapes` order (zero-padded); a parameter is its chunks over ranks, truncated to n.
    """
    model_files = sorted(step_dir.glob("*model_states.pt"))
    shapes = torch.load(model_files[0], weights_only=False, map_location="cpu")["param_shapes"]
    optim = []
    for r in range(world):
        (f,) = step_dir.glob(f"*zero_pp_rank_{r}_mp_rank_00_optim_states.pt")
        optim.append(torch.load(f, weights_only=False, map_location="cpu")["optimizer_state_dict"])
    out = {}
    for g, group in enumerate(shapes):
        if stage < 3:
            flat = torch.cat([o["base_optimizer_state"]["state"][g]["exp_avg_sq"] for o in optim])
            pads = optim[0]["param_alignment_paddings"][g]
            offset = 0
            for i, (name, shape) in enumerate(group.items()):
                n = shape.numel()
                out[name] = flat[offset : offset + n].reshape(shape)
                offset += n + pads[i]
        else:
            flats = [o["optimizer_state_dict"]["state"][g]["exp_avg_sq"] for o in optim]
            offset = 0
            for name, shape in group.items():
                n = shape.numel()
                chunk = -(-n // world)
                out[name] = torch.cat([f[offset : offset + chunk] for f in flats])[:n].reshape(shape)
                offset += chunk
    return out


def deepspeed_fixture(fixture: Path, work: Path, spec: dict) -> None:
    """Spawn the ranks, copy `latest` + `global_stepN/` into `<fixture>/checkpoint/`, write the answer key."""
    import torch.multiprocessing as mp

    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    fresh_dir(work)
    mp.spawn(ds_worker, args=(spec["world"], spec, str(work), free_port()), nprocs=spec["world"], join=True)
    answer = torch.load(work / "_answer.pt", weights_only=False)
    tag = (work / "latest").read_text().strip()
    fresh_dir(fixture)
    ckpt = fixture / "checkpoint"
    ckpt.mkdir()
    shutil.copy(work / "latest", ckpt / "latest")
    copy_tree(work / tag, ckpt / tag)
    groups = read_param_shapes(work / tag)
    assert sorted(n for g in groups for n in g) == sorted(answer["key"]), "param_shapes names != live names"
    from_files = consolidate_from_files(work / tag, spec["stage"], spec["world"])
    for name, v in answer["key"].items():
        assert torch.equal(from_files[name], v), f"{fixture.name}: {name}: file layout rule != safe_get_full_optimizer_state"
    model_key = write_model_answer_key(fixture, answer["weights"], work / tag)
    hyper = answer["hyper"]
    write_answer_key(
        fixture,
        fmt=f"deepspeed_zero{spec['stage']}",
        optimizer=None,
        optimizer_class=f"{answer['optimizer_class']} over torch {answer['base_class']}",
        input_path=ckpt.name,
        names_recovered_from=DS_NAMES,
        parameter_names=groups,
        second_moment=answer["key"],
        step=DS_STEPS,
        tied=answer["tied"],
        extra={
            "betas": list(hyper[0]["betas"]),
            "eps": hyper[0]["eps"],
            "param_groups": [{k: (list(v) if isinstance(v, tuple) else v) for k, v in h.items()
                              if isinstance(v, (int, float, str, bool, tuple, list, type(None)))} for h in hyper],
            "world_size": spec["world"],
            "zero_stage": spec["stage"],
            "bf16": spec.get("bf16", False),
            "tag": tag,
            "answer_key_source": "deepspeed.utils.safe_get_full_optimizer_state(param, 'exp_avg_sq') on the live engine",
            "deepspeed_config": answer["config"],
            "not_copied": "zero_to_fp32.py and zero_to_torch.py (scripts DeepSpeed drops beside `latest`)",
            **model_key,
        },
    )


def write_model_answer_key(fixture: Path, weights: dict[str, torch.Tensor] | None, step_dir: Path) -> dict:
    """Write `model_expected.safetensors` (the live module's weights, float32) after checking that the model-states
    file's `module` holds exactly those values; under ZeRO-3 (`weights` None) record why there is none."""
    if weights is None:
        return {"model_answer_key": None,
                "model_answer_key_note": "ZeRO-3 saves empty placeholders (shape [0]) under 'module'; the weights live "
                                         "only in the ranks' fp32 partitions of the optimizer states"}
    (states,) = sorted(step_dir.glob("*model_states.pt"))
    module = torch.load(states, weights_only=False, map_location="cpu")["module"]
    assert list(module) == list(weights), f"{fixture.name}: module keys {list(module)} != live state dict {list(weights)}"
    for name, value in weights.items():
        assert torch.equal(module[name].float(), value), f"{fixture.name}: saved module['{name}'] != live weight"
    save_tensors(fixture / "model_expected.safetensors", weights)
    return {"model_answer_key": "model_expected.safetensors",
            "model_answer_key_source": "engine.module.state_dict() of the live engine before save_checkpoint, as float32 "
                                       "(every key of the saved 'module', tied aliases included; bf16 converts exactly)",
            "model_dtype": str(next(iter(module.values())).dtype).removeprefix("torch.")}


def spec_fixture(spec: dict):
    def make(fixture: Path, work: Path) -> None:
        deepspeed_fixture(fixture, work, spec)

    return make


DEEPSPEED_FIXTURES = {
    "deepspeed_zero1": spec_fixture({"arch": "bert", "stage": 1, "world": 1}),
    "deepspeed_zero2": spec_fixture({"arch": "bert", "stage": 2, "world": 1}),
    "deepspeed_zero3": spec_fixture({"arch": "bert", "stage": 3, "world": 1}),
    "deepspeed_zero2_bf16": spec_fixture({"arch": "bert", "stage": 2, "world": 1, "bf16": True}),
    "deepspeed_zero2_ws2": spec_fixture({"arch": "gpt2", "stage": 2, "world": 2}),
    "deepspeed_zero3_ws2": spec_fixture({"arch": "gpt2", "stage": 3, "world": 2}),
    "hf_trainer_deepspeed": hf_trainer_deepspeed,
}
