#!/usr/bin/env python3
"""Write tiny real checkpoints of every common optimizer-state format, with answer keys, into the Swift test resources.

Every checkpoint here is written by the library itself (transformers Trainer, torch.optim, PEFT, bitsandbytes,
DeepSpeed, torch.distributed.checkpoint), CPU only, on tiny seeded models trained a few steps on synthetic data.
Each answer key is taken from the live optimizer objects in this process (or the library's own reconstruction:
DeepSpeed `safe_get_full_optimizer_state`, FSDP `get_optimizer_state_dict(full_state_dict=True)`, bitsandbytes
`dequantize_blockwise`, transformers `Adafactor._approx_sq_grad`), never re-derived from the files.

Pinned versions (Tests/Generators/requirements.txt; the versions actually used are also written into each
fixture's expected.json):
    torch==2.13.0+cpu  transformers==5.24.0  accelerate==1.15.0  peft==0.21.2  deepspeed==0.19.8
    bitsandbytes==0.50.2  safetensors==0.8.0  numpy==2.4.6  (Python 3.11)

Set up and run (from the repository root; about 9 minutes on 2 cores, most of it the spawned DeepSpeed and FSDP
runs; the first DeepSpeed run also JIT-builds its CPU op, a few minutes more; needs g++):
    python3 -m venv /work/peers-venv && P=/work/peers-venv/bin/python
    $P -m pip install "torch==2.13.0+cpu"
    echo "torch==2.13.0+cpu" > /work/peers-venv/constraints.txt
    $P -m pip install -c /work/peers-venv/constraints.txt -r Tests/Generators/requirements.txt
    DS_ACCELERATOR=cpu $P Tests/Generators/make_checkpoint_fixtures.py            # every fixture
    DS_ACCELERATOR=cpu $P Tests/Generators/make_checkpoint_fixtures.py torch_nadam  # or some of them / a group

Output: Tests/SquisherCheckpointsTests/Resources/formats/<fixture>/ with the checkpoint as the library wrote it
(in the sub-folder named by expected.json "input") plus expected.safetensors and expected.json; the conventions
are in that folder's README.md. A rerun with the same versions rewrites every file byte for byte (seeded, one
thread, deterministic algorithms, fixed work paths under /tmp), except dcp/checkpoint/.metadata (DCP's random
save_id).
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("DS_ACCELERATOR", "cpu")

from fixture_common import REPO, dir_size, quiet_libraries  # noqa: E402

quiet_libraries()
warnings.filterwarnings("ignore")

OUT = REPO / "Tests/SquisherCheckpointsTests/Resources/formats"
WORK = Path("/tmp/squisher-fixture-work")

from fixtures_hf import HF_FIXTURES  # noqa: E402
from fixtures_torch import TORCH_FIXTURES  # noqa: E402
from fixtures_bnb import BNB_FIXTURES  # noqa: E402
from fixtures_peft import PEFT_FIXTURES  # noqa: E402
from fixtures_deepspeed import DEEPSPEED_FIXTURES  # noqa: E402
from fixtures_distributed import DISTRIBUTED_FIXTURES  # noqa: E402
from fixtures_weights import WEIGHTS_FIXTURES  # noqa: E402

GROUPS: dict[str, dict] = {
    "hf": HF_FIXTURES,
    "torch": TORCH_FIXTURES,
    "bnb": BNB_FIXTURES,
    "peft": PEFT_FIXTURES,
    "deepspeed": DEEPSPEED_FIXTURES,
    "distributed": DISTRIBUTED_FIXTURES,
    "weights": WEIGHTS_FIXTURES,
}

def main() -> None:
    everything = {name: fn for group in GROUPS.values() for name, fn in group.items()}
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"fixtures or groups ({', '.join(GROUPS)}); default: all")
    args = parser.parse_args()
    selected: list[str] = []
    for name in args.names or list(GROUPS):
        if name in GROUPS:
            selected += list(GROUPS[name])
        elif name in everything:
            selected.append(name)
        else:
            parser.error(f"unknown fixture or group '{name}'; known: {', '.join(list(GROUPS) + list(everything))}")
    OUT.mkdir(parents=True, exist_ok=True)
    for name in selected:
        everything[name](OUT / name, WORK / name)
        print(f"{name}: {dir_size(OUT / name) / 1024:.1f} KiB", flush=True)
    print(f"total of all fixtures: {dir_size(OUT) / 1024:.1f} KiB")


if __name__ == "__main__":
    main()
