"""Shared helpers for the fixture generators in this folder (tiny models, data, answer-key writers).

Imported by make_checkpoint_fixtures.py, make_hf_model_fixtures.py and make_merge_eval.py; not run on its own.
Versions and the command to run each generator are in that generator's header and in requirements.txt.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]

# Tiny architectures: a few KB to a few hundred KB per checkpoint.
BERT_VOCAB = 64
GPT2_VOCAB = 64
SEQ_LEN = 8


def seed_all(seed: int) -> None:
    """Seed every generator the fixtures touch and pin the arithmetic to one thread (bitwise reruns)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)


def tiny_bert_config(vocab_size: int = BERT_VOCAB, hidden: int = 32, intermediate: int = 64, num_labels: int = 2):
    """A 2-layer, 2-head BertConfig for sequence classification; dropout 0 so a step is a function of the data."""
    from transformers import BertConfig

    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=intermediate,
        max_position_embeddings=32,
        type_vocab_size=2,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        num_labels=num_labels,
        pad_token_id=0,
    )


def tiny_gpt2_config(vocab_size: int = GPT2_VOCAB, n_embd: int = 32, n_positions: int = 16):
    """A 2-layer, 2-head GPT2Config with the LM head tied to `transformer.wte` (the library default)."""
    from transformers import GPT2Config

    return GPT2Config(
        vocab_size=vocab_size,
        n_embd=n_embd,
        n_layer=2,
        n_head=2,
        n_positions=n_positions,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )


def word_level_tokenizer(vocab_size: int):
    """A whitespace word-level tokenizer over tokens `[PAD] [UNK] [CLS] [SEP] [MASK] t5 ... t{V-1}` (no hub access)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = {tok: i for i, tok in enumerate(specials)}
    vocab.update({f"t{i}": i for i in range(len(specials), vocab_size)})
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


class DictDataset(torch.utils.data.Dataset):
    """A map-style dataset of equal-length tensors, one dict per row (what `default_data_collator` stacks)."""

    def __init__(self, **columns: torch.Tensor):
        lengths = {len(v) for v in columns.values()}
        assert len(lengths) == 1, f"columns differ in length: {lengths}"
        self.columns = columns
        self.n = lengths.pop()

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        return {k: v[i] for k, v in self.columns.items()}


def classification_data(n: int, vocab_size: int, seed: int, task: str = "contains5") -> DictDataset:
    """Random token rows (ids >= 5) with a [CLS] first; label = whether token 5 occurs (`contains5`) or whether the
    first content token is below vocab/2 (`first_low`)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab_size, (n, SEQ_LEN), generator=g)
    ids[:, 0] = 2
    if task == "contains5":
        plant = torch.rand(n, generator=g) < 0.5
        pos = torch.randint(1, SEQ_LEN, (n,), generator=g)
        ids[plant, pos[plant]] = 5
        labels = (ids[:, 1:] == 5).any(dim=1).long()
    elif task == "first_low":
        labels = (ids[:, 1] < vocab_size // 2).long()
    else:
        raise ValueError(f"unknown task {task}")
    mask = torch.ones_like(ids)
    return DictDataset(input_ids=ids, attention_mask=mask, labels=labels)


def lm_data(n: int, vocab_size: int, seed: int) -> DictDataset:
    """Random token rows with a learnable pattern (each token is often the previous + 1); labels = input_ids."""
    g = torch.Generator().manual_seed(seed)
    start = torch.randint(3, vocab_size, (n, 1), generator=g)
    ids = (start + torch.arange(SEQ_LEN)) % (vocab_size - 3) + 3
    noise = torch.rand(n, SEQ_LEN, generator=g) < 0.25
    ids[noise] = torch.randint(3, vocab_size, (int(noise.sum()),), generator=g)
    return DictDataset(input_ids=ids, attention_mask=torch.ones_like(ids), labels=ids.clone())


def fresh_dir(path: Path) -> Path:
    """Remove `path` if present and create it empty."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], dtype: torch.dtype = torch.float32) -> None:
    """Write a safetensors file of contiguous CPU tensors cast to `dtype`, metadata {"format": "pt"}."""
    from safetensors.torch import save_file

    out = {k: v.detach().to("cpu", dtype).contiguous().clone() for k, v in tensors.items()}
    save_file(out, str(path), metadata={"format": "pt"})


def write_json(path: Path, obj: dict) -> None:
    """Pretty, key-stable JSON with a trailing newline."""
    path.write_text(json.dumps(obj, indent=2) + "\n")


def library_versions() -> dict[str, str]:
    """Versions of every library that may have written a fixture, as installed now."""
    import importlib.metadata as md

    out = {}
    for name in ["torch", "transformers", "accelerate", "peft", "deepspeed", "bitsandbytes", "safetensors", "numpy"]:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


def dir_size(path: Path) -> int:
    """Total bytes of the regular files under `path`."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def quiet_libraries() -> None:
    """Silence progress bars and hub look-ups (there is no network here)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("DISABLE_TQDM", "1")
