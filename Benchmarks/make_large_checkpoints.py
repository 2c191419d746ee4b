#!/usr/bin/env python3
"""Write three large fine-tuned GPT-2 checkpoints in each of three real layouts, for the merge benchmark.

Every file is written by the library itself, on CPU (never a hand-written format):
  hf/model_{a,b,c}/checkpoint-N/   transformers Trainer (default AdamW, its two param groups), weights saved by the
                                   Trainer's own save_pretrained call with max_shard_size (sharded safetensors +
                                   model.safetensors.index.json), optimizer.pt, scheduler.pt, trainer_state.json, ...
  deepspeed/model_{a,b,c}/         DeepSpeed ZeRO-2, world size 2 (two spawned processes, gloo, DS_ACCELERATOR=cpu),
                                   fp32: latest + global_stepN/ (mp_rank_00_model_states.pt with `module`, and
                                   zero_pp_rank_{0,1}_mp_rank_00_optim_states.pt); no config.json beside `latest`,
                                   which would make it look like a Trainer + DeepSpeed folder (whose weights are
                                   in model.safetensors)
  dcp/model_{a,b,c}/               PyTorch FSDP2 fully_shard, world size 2 (gloo), torch.distributed.checkpoint.save
                                   of {"model": ..., "optim": ...} in one folder (.metadata, __0_0.distcp,
                                   __1_0.distcp), config.json beside it
The three models share one initialization (seed 0: the "pretrained" base) and are fine-tuned on different seeded
synthetic token streams (seeds 1, 2, 3), so they are fine-tunes of one base, as Fisher merging expects. Gradients
are clipped to norm 1 in all three layouts (the Trainer's max_grad_norm and DeepSpeed's gradient_clipping default).

Model: GPT2LMHeadModel, n_embd 2048, 5 layers, 16 heads, vocab 1024, 128 positions, lm_head tied to wte:
254 M parameters, 1.02 GB of float32 weights; with Adam's two moments about 3.1 GB per checkpoint (HF, DCP) and
4.1 GB with DeepSpeed (its fp32 master partition and the `module` copy); 30.5 GB for all nine. One run of
everything took 15.5 minutes on 2 shared cores; the largest process peaked at 5.4 GB resident. Sizes are printed as each checkpoint is written.

Pinned versions (Tests/Generators/requirements.txt, the same venv as the test fixtures; Python 3.11):
    torch==2.13.0+cpu  transformers==5.24.0  accelerate==1.15.0  deepspeed==0.19.8  safetensors==0.8.0

Usage (from the repository root):
    DS_ACCELERATOR=cpu /work/peers-venv/bin/python Benchmarks/make_large_checkpoints.py /path/to/out
    ... /path/to/out --layouts hf,dcp --models a --n-layer 2     # a subset, or a smaller model for a trial
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import socket
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("DS_ACCELERATOR", "cpu")
for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(name, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
warnings.filterwarnings("ignore")

import torch  # noqa: E402

MODELS = {"a": 1, "b": 2, "c": 3}  # model name -> data seed
LAYOUTS = ("hf", "deepspeed", "dcp")
BASE_SEED = 0
SEQ_LEN = 64
MICRO_BATCH = 2
LEARNING_RATE = 1e-4


def gpt2_config(args):
    """The wide GPT-2 configuration (dropout 0 so that a step is a function of the data)."""
    from transformers import GPT2Config

    return GPT2Config(
        vocab_size=args.vocab, n_embd=args.n_embd, n_layer=args.n_layer, n_head=args.n_head, n_positions=SEQ_LEN * 2,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, tie_word_embeddings=True,
        bos_token_id=1, eos_token_id=2, pad_token_id=0,
    )


def base_model(args):
    """The shared initialization: the same seed for every fine-tune."""
    from transformers import GPT2LMHeadModel

    torch.manual_seed(BASE_SEED)
    return GPT2LMHeadModel(gpt2_config(args))


def token_rows(n: int, vocab: int, seed: int) -> torch.Tensor:
    """Seeded token rows with a learnable pattern (each token is often the previous + a seed-dependent step)."""
    g = torch.Generator().manual_seed(seed)
    start = torch.randint(3, vocab, (n, 1), generator=g)
    ids = (start + seed * torch.arange(SEQ_LEN)) % (vocab - 3) + 3
    noise = torch.rand(n, SEQ_LEN, generator=g) < 0.2
    ids[noise] = torch.randint(3, vocab, (int(noise.sum()),), generator=g)
    return ids


def trainer_groups(model, weight_decay: float = 0.01) -> list[dict]:
    """The Trainer's two AdamW groups: weight decay for all but biases and norm weights, then the rest."""
    from transformers import Trainer

    decay = set(Trainer.get_decay_parameter_names(None, model))
    named = list(model.named_parameters())
    return [
        {"params": [p for n, p in named if n in decay], "weight_decay": weight_decay},
        {"params": [p for n, p in named if n not in decay], "weight_decay": 0.0},
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dist_env(rank: int, world: int, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world))


# ---------------------------------------------------------------------------------------------------------------
# (a) Hugging Face Trainer


class RowsDataset(torch.utils.data.Dataset):
    def __init__(self, ids: torch.Tensor):
        self.ids = ids

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.ids[i], "attention_mask": torch.ones_like(self.ids[i]), "labels": self.ids[i]}


def make_hf(out: Path, seed: int, args) -> Path:
    """transformers.Trainer for `args.steps` steps; its checkpoint save writes sharded safetensors."""
    from transformers import Trainer, TrainingArguments

    model = base_model(args)
    # The Trainer's own save (Trainer._save -> model.save_pretrained(output_dir, state_dict=..., ...)), sharded.
    model.save_pretrained = functools.partial(type(model).save_pretrained, model, max_shard_size=args.shard_size)
    data = RowsDataset(token_rows(args.steps * MICRO_BATCH, args.vocab, seed))
    training = TrainingArguments(
        output_dir=str(out), max_steps=args.steps, save_steps=args.steps, save_strategy="steps",
        per_device_train_batch_size=MICRO_BATCH, learning_rate=LEARNING_RATE, weight_decay=0.01,
        use_cpu=True, report_to=[], seed=seed, data_seed=seed, logging_steps=args.steps, disable_tqdm=True,
        dataloader_num_workers=0,
    )
    Trainer(model=model, args=training, train_dataset=data).train()
    return out / f"checkpoint-{args.steps}"


# ---------------------------------------------------------------------------------------------------------------
# (b) DeepSpeed ZeRO-2, world size 2


def deepspeed_worker(rank: int, world: int, out: str, seed: int, args, port: int) -> None:
    dist_env(rank, world, port)
    import deepspeed

    deepspeed.init_distributed(dist_backend="gloo")
    torch.set_num_threads(1)
    model = base_model(args)
    optimizer = torch.optim.AdamW(trainer_groups(model), lr=LEARNING_RATE)
    config = {
        "train_micro_batch_size_per_gpu": MICRO_BATCH,
        "gradient_accumulation_steps": 1,
        "zero_optimization": {"stage": 2, "reduce_bucket_size": 50_000_000, "allgather_bucket_size": 50_000_000},
        "bf16": {"enabled": False},
        "steps_per_print": 1_000_000,
    }
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, config=config)
    ids = token_rows(args.steps * MICRO_BATCH * world, args.vocab, seed)
    for step in range(args.steps):
        lo = (step * world + rank) * MICRO_BATCH
        batch = ids[lo:lo + MICRO_BATCH]
        loss = engine(input_ids=batch, labels=batch).loss
        engine.backward(loss)
        engine.step()
    engine.save_checkpoint(out)
    torch.distributed.barrier()


def make_deepspeed(out: Path, seed: int, args) -> Path:
    import torch.multiprocessing as mp

    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"  # ninja for the op build
    mp.spawn(deepspeed_worker, args=(2, str(out), seed, args, free_port()), nprocs=2, join=True)
    for script in ("zero_to_fp32.py", "zero_to_torch.py"):  # helper scripts DeepSpeed drops beside `latest`
        (out / script).unlink(missing_ok=True)
    return out


# ---------------------------------------------------------------------------------------------------------------
# (c) FSDP2 + torch.distributed.checkpoint, world size 2


def fsdp_worker(rank: int, world: int, out: str, seed: int, args, port: int) -> None:
    dist_env(rank, world, port)
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    model = base_model(args)
    mesh = init_device_mesh("cpu", (world,))
    for block in model.transformer.h:
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    optimizer = torch.optim.AdamW(trainer_groups(model), lr=LEARNING_RATE)
    ids = token_rows(args.steps * MICRO_BATCH * world, args.vocab, seed)
    for step in range(args.steps):
        lo = (step * world + rank) * MICRO_BATCH
        batch = ids[lo:lo + MICRO_BATCH]
        loss = model(input_ids=batch, labels=batch).loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # as the Trainer (max_grad_norm) and DeepSpeed do by default
        optimizer.step()
    state = {"model": get_model_state_dict(model), "optim": get_optimizer_state_dict(model, optimizer)}
    dcp.save(state, checkpoint_id=out)
    if rank == 0:
        gpt2_config(args).save_pretrained(out)
    dist.barrier()
    dist.destroy_process_group()


def make_dcp(out: Path, seed: int, args) -> Path:
    import torch.multiprocessing as mp

    mp.spawn(fsdp_worker, args=(2, str(out), seed, args, free_port()), nprocs=2, join=True)
    return out


# ---------------------------------------------------------------------------------------------------------------


def tree_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def weights_size(path: Path) -> int:
    """Bytes of model weights alone: safetensors shards, DeepSpeed's `module` file, DCP's model.* byte ranges."""
    shards = list(path.glob("*.safetensors"))
    if shards:
        return sum(f.stat().st_size for f in shards)
    states = list(path.glob("global_step*/mp_rank_00_model_states.pt"))
    if states:
        return states[0].stat().st_size  # `module` plus small metadata
    metadata = path / ".metadata"
    if metadata.exists():
        from torch.distributed.checkpoint import FileSystemReader

        read = FileSystemReader(str(path)).read_metadata()
        return sum(info.length for index, info in read.storage_data.items() if index.fqn.startswith("model."))
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder to write into (created; existing model folders are refused)")
    parser.add_argument("--layouts", default=",".join(LAYOUTS), help=f"comma-separated subset of {','.join(LAYOUTS)}")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of a,b,c")
    parser.add_argument("--n-embd", type=int, default=2048)
    parser.add_argument("--n-layer", type=int, default=5)
    parser.add_argument("--n-head", type=int, default=16)
    parser.add_argument("--vocab", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=2, help="optimizer steps per fine-tune")
    parser.add_argument("--shard-size", default="300MB", help="max_shard_size of the HF safetensors shards")
    args = parser.parse_args()
    layouts = [x for x in args.layouts.split(",") if x]
    models = [x for x in args.models.split(",") if x]
    for x in layouts:
        if x not in LAYOUTS:
            parser.error(f"unknown layout {x}; known: {', '.join(LAYOUTS)}")
    for x in models:
        if x not in MODELS:
            parser.error(f"unknown model {x}; known: {', '.join(MODELS)}")
    parameters = sum(p.numel() for p in base_model(args).parameters())
    print(f"GPT-2 n_embd {args.n_embd}, {args.n_layer} layers, vocab {args.vocab}: {parameters / 1e6:.1f} M parameters, "
          f"{parameters * 4 / 1e9:.3f} GB float32", flush=True)
    makers = {"hf": make_hf, "deepspeed": make_deepspeed, "dcp": make_dcp}
    summary = []
    for layout in layouts:
        for model in models:
            target = args.out / layout / f"model_{model}"
            if target.exists():
                sys.exit(f"{target} exists; remove it or choose another folder")
            target.mkdir(parents=True)
            started = time.time()
            written = makers[layout](target, MODELS[model], args)
            total, weights = tree_size(target), weights_size(written)
            summary.append({"layout": layout, "model": model, "path": str(written), "bytes": total, "weight_bytes": weights})
            print(f"{layout}/model_{model}: {written} {total / 1e9:.2f} GB on disk ({weights / 1e9:.2f} GB model weights), "
                  f"{time.time() - started:.0f} s", flush=True)
    (args.out / "checkpoints.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"total {sum(s['bytes'] for s in summary) / 1e9:.2f} GB; list in {args.out / 'checkpoints.json'}")


if __name__ == "__main__":
    main()
