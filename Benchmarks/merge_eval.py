#!/usr/bin/env python3
"""Squisher's checkpoint commands judged on real Hugging Face `Trainer` fine-tunes.

Versions (pinned as in Tests/Generators/requirements.txt): torch 2.13.0+cpu, transformers 5.24.0,
safetensors. CPU only; about a minute on 2 cores.

    P=/work/peers-venv/bin/python       # a venv made as ../shared/PEERS.md says, plus transformers
    swift build -c release --product squisher
    $P Benchmarks/merge_eval.py --squisher .build/release/squisher --work /tmp/merge-eval

What it does:
1. A tiny pretrained BERT (`BertForMaskedLM`: encoder + MLM head, no pooler, no classifier) is the
   shared initialization and the UBGM base.
2. Two `BertForSequenceClassification` models are fine-tuned from it by `transformers.Trainer`
   (AdamW, the Trainer's decay/no-decay groups) on two synthetic binary tasks over disjoint token
   ranges, so that one model can solve both: task A asks whether token 7 occurs in the sequence,
   task B whether the first token is in the upper half of its range. The Trainer writes ordinary
   `checkpoint-N/` folders (model.safetensors, optimizer.pt without names, scheduler.pt,
   trainer_state.json, rng_state.pth, ...).
3. `squisher merge` (default options, plus the variants below), `squisher prune` and `squisher mask`
   run on those folders with no mapping file; every output is reloaded with transformers and scored
   on held-out data of each task.

Prints one Markdown table per application; Guides/Merging.md and Guides/Pruning.md quote them.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from transformers import (BertConfig, BertForMaskedLM, BertForSequenceClassification, Trainer,
                          TrainingArguments)

VOCAB, LENGTH = 128, 16
TRAIN, TEST = 2048, 512


def task_data(task, count, seed):
    """(input_ids, labels) of task 'A' (tokens 4..63, label: token 7 occurs) or 'B' (tokens
    64..127, label: the first token after [CLS] is >= 96). Balanced labels."""
    rng = np.random.default_rng(seed)
    low, high = (4, 64) if task == "A" else (64, 128)
    ids = rng.integers(low, high, size=(count, LENGTH))
    ids[:, 0] = 1  # [CLS]
    labels = rng.integers(0, 2, size=count)
    for n in range(count):
        if task == "A":
            ids[n][ids[n] == 7] = 8
            if labels[n]:
                ids[n, rng.integers(1, LENGTH)] = 7
        else:
            ids[n, 1] = rng.integers(96, 128) if labels[n] else rng.integers(64, 96)
    return torch.tensor(ids), torch.tensor(labels)


class Examples(torch.utils.data.Dataset):
    def __init__(self, ids, labels):
        self.ids, self.labels = ids, labels

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "attention_mask": torch.ones_like(self.ids[i]), "labels": self.labels[i]}


def config():
    return BertConfig(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=128, max_position_embeddings=LENGTH, num_labels=2,
                      hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def pretrain(folder):
    """The shared initialization: a masked-LM BERT trained briefly on both token ranges."""
    torch.manual_seed(0)
    model = BertForMaskedLM(config())
    a, _ = task_data("A", 1024, 100)
    b, _ = task_data("B", 1024, 101)
    ids = torch.cat([a, b])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    for step in range(150):
        batch = ids[torch.randint(0, len(ids), (64,), generator=generator)]
        masked = batch.clone()
        where = torch.rand(batch.shape, generator=generator) < 0.15
        where[:, 0] = False
        masked[where] = 3  # [MASK]
        labels = torch.where(where, batch, torch.full_like(batch, -100))
        loss = model(input_ids=masked, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.save_pretrained(folder)


def finetune(base, task, folder, seed):
    """Trainer fine-tune of a classifier from `base`; returns the last checkpoint-N folder."""
    torch.manual_seed(seed)
    model = BertForSequenceClassification.from_pretrained(base, num_labels=2)
    ids, labels = task_data(task, TRAIN, seed)
    args = TrainingArguments(output_dir=folder, per_device_train_batch_size=32, num_train_epochs=3,
                             learning_rate=5e-4, weight_decay=0.01, save_strategy="epoch", save_total_limit=1,
                             logging_strategy="no", report_to=[], seed=seed, use_cpu=True, dataloader_num_workers=0)
    Trainer(model=model, args=args, train_dataset=Examples(ids, labels)).train()
    checkpoints = sorted((d for d in os.listdir(folder) if d.startswith("checkpoint-")), key=lambda d: int(d.split("-")[1]))
    return os.path.join(folder, checkpoints[-1])


def accuracy(folder, task):
    model = BertForSequenceClassification.from_pretrained(folder).eval()
    ids, labels = task_data(task, TEST, 999 if task == "A" else 998)
    with torch.no_grad():
        predictions = model(input_ids=ids).logits.argmax(-1)
    return 100.0 * (predictions == labels).float().mean().item()


def squisher(binary, *arguments):
    result = subprocess.run([binary, *arguments], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"squisher {' '.join(arguments)} failed: {result.stderr.strip()}")
    return result.stdout


def uniform_importance(checkpoint, path, kind, seed=0):
    """An importance file over the checkpoint's float tensors: all ones (magnitude pruning,
    saliency θ²/2) or seeded uniform noise (a random mask)."""
    tensors = load_file(os.path.join(checkpoint, "model.safetensors"))
    generator = torch.Generator().manual_seed(seed)
    values = {name: (torch.ones_like(t, dtype=torch.float32) if kind == "ones" else torch.rand(t.shape, generator=generator))
              for name, t in tensors.items() if t.is_floating_point()}
    save_file(values, path)
    return path


def merge_table(binary, work, a, b, base):
    rows = []
    def merged(label, *options):
        out = os.path.join(work, "merged-" + label.replace(" ", "_").replace("/", "_"))
        shutil.rmtree(out, ignore_errors=True)
        squisher(binary, "merge", a, b, "--output", out, *options)
        scores = accuracy(out, "A"), accuracy(out, "B")
        rows.append((label, scores[0], scores[1], (scores[0] + scores[1]) / 2))
    merged("fisher, default (raw v, relative floor)")
    merged("fisher, --scaling N=2048", "--scaling", "N=2048")
    merged("fisher, --epsilon 1e-6 (absolute floor)", "--epsilon", "1e-6")
    merged("average", "--method", "average")
    merged("ubgm, pretrained MLM base, N=2048", "--method", "ubgm", "--base", base, "--scaling", "N=2048")
    print("| merge of A and B | task A % | task B % | mean % |\n|---|---|---|---|")
    for label, x, y, mean in rows:
        print(f"| {label} | {x:.1f} | {y:.1f} | {mean:.1f} |")
    return rows


def prune_table(binary, work, a, sparsity=0.5):
    ones = uniform_importance(a, os.path.join(work, "ones.safetensors"), "ones")
    noise = uniform_importance(a, os.path.join(work, "noise.safetensors"), "noise")
    rows = [("dense", accuracy(a, "A"))]
    for label, options in [("squisher, default scope (global-normalized)", []), ("squisher, --scope global", ["--scope", "global"]),
                           ("squisher, --scope per-tensor", ["--scope", "per-tensor"]),
                           ("magnitude θ², default scope", ["--importance-source", ones]),
                           ("random, default scope", ["--importance-source", noise])]:
        out = os.path.join(work, "pruned-" + str(len(rows)))
        shutil.rmtree(out, ignore_errors=True)
        squisher(binary, "prune", a, "--sparsity", str(sparsity), "--output", out, *options)
        rows.append((label, accuracy(out, "A")))
    print(f"\n| prune model A, {int(sparsity * 100)}% of weight matrices, no fine-tuning | task A % |\n|---|---|")
    for label, x in rows:
        print(f"| {label} | {x:.1f} |")
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--squisher", required=True, help="the squisher binary")
    parser.add_argument("--work", default="/tmp/merge-eval", help="folder for the checkpoints and outputs")
    parser.add_argument("--retrain", action="store_true", help="train again even if the checkpoints exist")
    args = parser.parse_args()
    torch.set_num_threads(2)
    os.makedirs(args.work, exist_ok=True)
    base = os.path.join(args.work, "pretrained")
    state = os.path.join(args.work, "checkpoints.json")
    if args.retrain or not os.path.exists(state):
        pretrain(base)
        a = finetune(base, "A", os.path.join(args.work, "task_a"), seed=1)
        b = finetune(base, "B", os.path.join(args.work, "task_b"), seed=2)
        json.dump({"a": a, "b": b}, open(state, "w"))
    paths = json.load(open(state))
    a, b = paths["a"], paths["b"]
    print(f"fine-tuned: task A {accuracy(a, 'A'):.1f}% (on B {accuracy(a, 'B'):.1f}%), task B {accuracy(b, 'B'):.1f}% (on A {accuracy(b, 'A'):.1f}%)\n")
    merge_table(args.squisher, args.work, a, b, base)
    prune_table(args.squisher, args.work, a)


if __name__ == "__main__":
    main()
