"""Hostile checkpoints for the reliability tests (SquisherCommandsTests/ReliabilityTests.swift).

Pinned: Python 3.11, PyTorch 2.13.0+cpu. Run from this folder:
    /work/peers-venv/bin/python generate.py
Writes a tiny Linear(4, 3) checkpoint trained 2 Adam steps (model.safetensors with
__metadata__ {"format": "pt"}, model.pt) and optimizer states with one defect each:
step NaN / inf / 1e30, betas (0.9, 1.0), NaN in exp_avg_sq, and exp_avg_sq replaced by a
zero-stride view (torch.ones(1).expand(32768, 32768): 1.5 KB on disk, 4 GB if materialized);
plus expand_view.pt, a state dict holding such a view.
"""
import json
import struct

import torch

torch.manual_seed(0)
model = torch.nn.Linear(4, 3)
optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
for _ in range(2):
    optimizer.zero_grad()
    model(torch.randn(8, 4)).pow(2).sum().backward()
    optimizer.step()

state = model.state_dict()


def write_safetensors(path, tensors, metadata):
    header, offset, blobs = {"__metadata__": metadata}, 0, []
    for name, tensor in tensors.items():
        data = tensor.detach().contiguous().float().numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensor.shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


write_safetensors("model.safetensors", state, {"format": "pt"})
torch.save(state, "model.pt")


def variant(name, edit):
    saved = optimizer.state_dict()
    copy = {"state": {k: dict(v) for k, v in saved["state"].items()}, "param_groups": [dict(g) for g in saved["param_groups"]]}
    edit(copy)
    torch.save(copy, name)


def set_step(value):
    def edit(sd):
        for entry in sd["state"].values():
            entry["step"] = torch.tensor(value)
    return edit


variant("optimizer.pt", lambda sd: None)
variant("step_nan.optimizer.pt", set_step(float("nan")))
variant("step_inf.optimizer.pt", set_step(float("inf")))
variant("step_huge.optimizer.pt", set_step(1e30))
variant("beta2_one.optimizer.pt", lambda sd: sd["param_groups"][0].update(betas=(0.9, 1.0)))


def nan_v(sd):
    sd["state"][0]["exp_avg_sq"] = sd["state"][0]["exp_avg_sq"].clone()
    sd["state"][0]["exp_avg_sq"][0, 0] = float("nan")


variant("nan_exp_avg_sq.optimizer.pt", nan_v)


def expanded_v(sd):
    sd["state"][0]["exp_avg_sq"] = torch.ones(1).expand(32768, 32768)


variant("expand_exp_avg_sq.optimizer.pt", expanded_v)
torch.save({"weight": torch.ones(1).expand(32768, 32768)}, "expand_view.pt")
