"""Writes the seeds of the format fuzz targets (Fuzz/corpus/<target>/seed-<n>) from the real fixtures.

Each seed is one selector byte (the index of the fixture in FuzzFormatTarget.variants, in
Tests/SquisherCheckpointsTests/Fuzzing/FuzzFormatTarget.swift) followed by the bytes the target
replaces: the data.pkl pickle of a torch.save archive, or a whole file (config.json, DCP .metadata).
Keep VARIANTS in the same order as the Swift list. Python 3.11, standard library only:
    python3 Fuzz/make_seeds.py
"""
import pathlib
import zipfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
FORMATS = ROOT / "Tests/SquisherCheckpointsTests/Resources/formats"

VARIANTS = {
    "deepspeed-model": [
        "deepspeed_zero2/checkpoint/global_step4/mp_rank_00_model_states.pt",
        "deepspeed_zero3_ws2/checkpoint/global_step4/zero_pp_rank_0_mp_rank_00_model_states.pt",
        "deepspeed_zero2_bf16/checkpoint/global_step4/mp_rank_00_model_states.pt",
        "hf_trainer_deepspeed/checkpoint-6/global_step6/mp_rank_00_model_states.pt",
    ],
    "deepspeed-optim": [
        "deepspeed_zero1/checkpoint/global_step4/zero_pp_rank_0_mp_rank_00_optim_states.pt",
        "deepspeed_zero2_bf16/checkpoint/global_step4/bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt",
        "deepspeed_zero2_ws2/checkpoint/global_step4/zero_pp_rank_1_mp_rank_00_optim_states.pt",
        "deepspeed_zero3/checkpoint/global_step4/zero_pp_rank_0_mp_rank_00_optim_states.pt",
        "deepspeed_zero3_ws2/checkpoint/global_step4/zero_pp_rank_1_mp_rank_00_optim_states.pt",
    ],
    "dcp-metadata": ["dcp/checkpoint/.metadata"],
    "bnb": [
        "bnb_adamw8bit/checkpoint-6/optimizer.pt",
        "bnb_adamw32bit/checkpoint-6/optimizer.pt",
        "bnb_lion8bit/checkpoint-6/optimizer.pt",
        "bnb_paged_adamw8bit/checkpoint-6/optimizer.pt",
    ],
    "adafactor": ["adafactor/checkpoint-6/optimizer.pt"],
    "hf-config": [
        "hf_trainer_bert/checkpoint-6/config.json",
        "hf_trainer_gpt2/checkpoint-6/config.json",
        "adafactor/checkpoint-6/config.json",
    ],
}


def payload(path: pathlib.Path) -> bytes:
    if path.suffix != ".pt":
        return path.read_bytes()
    with zipfile.ZipFile(path) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith("data.pkl")]
        return archive.read(name)


for target, files in VARIANTS.items():
    folder = ROOT / "Fuzz/corpus" / target
    folder.mkdir(parents=True, exist_ok=True)
    for index, file in enumerate(files):
        (folder / f"seed-{index}").write_bytes(bytes([index]) + payload(FORMATS / file))
