"""`torch.save` model state dicts whose tensors are views, for the lazy model-weights reader.

`torch_state_dict_views/checkpoint/model.pt` holds `{"model": state_dict, "epoch": 3}` (a state dict nested under a
key, as training scripts save it). The state dict is a tiny trained MLP's (registration order) plus tensors that
`torch.save` writes as they are in memory: a transpose (strides not row-major), slices of one shared storage (storage
offsets, one of them a column slice with a row stride), a float16, a bfloat16, a float64 and an int64 buffer, and a
0-dim tensor. The answer key `model_expected.safetensors` is each live tensor `.float().contiguous()`, by name.
"""

from __future__ import annotations

from pathlib import Path

import torch

from fixture_common import fresh_dir, library_versions, save_tensors, seed_all, write_json


def torch_state_dict_views(fixture: Path, work: Path) -> None:
    """Train a 6-5-3 MLP two Adam steps, add view tensors to its state dict, save it nested under "model"."""
    seed_all(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = torch.randn(16, 6), torch.randint(0, 3, (16,))
    for _ in range(2):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    state = model.state_dict()
    shared = torch.randn(7, 9)
    views = {
        "transposed": torch.randn(4, 6).t(),  # shape [6, 4], stride (1, 6)
        "rows_of_shared": shared[2:5],  # storage offset 18, contiguous
        "column_slice_of_shared": shared[1:6, 3:7],  # storage offset 12, stride (9, 1): not contiguous
        "half": torch.randn(3, 5).half(),
        "bfloat": torch.randn(2, 3, 4).bfloat16().permute(2, 0, 1),  # 3-d permutation of a bfloat16 storage
        "double": torch.randn(8, dtype=torch.float64),
        "steps": torch.arange(5, dtype=torch.int64) * 1000,
        "scalar": torch.tensor(2.5),
    }
    assert not views["transposed"].is_contiguous() and not views["column_slice_of_shared"].is_contiguous()
    assert views["rows_of_shared"].storage_offset() == 18 and not views["bfloat"].is_contiguous()
    state.update(views)
    fresh_dir(fixture)
    (fixture / "checkpoint").mkdir()
    torch.save({"model": state, "epoch": 3}, fixture / "checkpoint" / "model.pt")
    reloaded = torch.load(fixture / "checkpoint" / "model.pt", weights_only=True)["model"]
    for name, value in state.items():
        saved = reloaded[name]
        assert saved.stride() == value.stride() and saved.storage_offset() == value.storage_offset(), f"{name}: layout changed"
        assert torch.equal(saved, value), f"{name}: saved value differs"
    save_tensors(fixture / "model_expected.safetensors", {n: v.float().contiguous() for n, v in state.items()})
    write_json(fixture / "expected.json", {
        "fixture": fixture.name,
        "format": "torch_state_dict",
        "input": "checkpoint",
        "nested_key": "model",
        "names": list(state),
        "layouts": {n: {"dtype": str(v.dtype).removeprefix("torch."), "shape": list(v.shape), "stride": list(v.stride()),
                        "storage_offset": v.storage_offset(), "contiguous": v.is_contiguous()} for n, v in state.items()},
        "model_answer_key": "model_expected.safetensors",
        "model_answer_key_source": "each live tensor .float().contiguous() (float64 rounds to nearest even)",
        "versions": library_versions(),
    })


WEIGHTS_FIXTURES = {"torch_state_dict_views": torch_state_dict_views}
