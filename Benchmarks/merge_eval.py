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
   task B whether token 100 occurs. Merges are scored with each
   task's own classifier head (the merged body, as Matena & Raffel evaluate). The Trainer writes ordinary
   `checkpoint-N/` folders (model.safetensors, optimizer.pt without names, scheduler.pt,
   trainer_state.json, rng_state.pth, ...).
3. `squisher merge` (default options, plus the variants below), `squisher prune` and `squisher mask`
   (FISH mask, then sparse training from the pretrained init with only the mask's entries updated)
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
    64..127, label: token 100 occurs). Balanced labels."""
    rng = np.random.default_rng(seed)
    low, high = (4, 64) if task == "A" else (64, 128)
    ids = rng.integers(low, high, size=(count, LENGTH))
    ids[:, 0] = 1  # [CLS]
    labels = rng.integers(0, 2, size=count)
    marker = 7 if task == "A" else 100
    for n in range(count):
        ids[n][ids[n] == marker] = marker + 1
        if labels[n]:
            ids[n, rng.integers(1, LENGTH)] = marker
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
    """Trainer fine-tune of a classifier from `base` (the new pooler and head initialized with one
    seed for both tasks, so that the two fine-tunes share their whole initialization, as merging
    assumes); returns the last checkpoint-N folder."""
    torch.manual_seed(0)
    model = BertForSequenceClassification.from_pretrained(base, num_labels=2)
    ids, labels = task_data(task, TRAIN, seed)
    args = TrainingArguments(output_dir=folder, per_device_train_batch_size=32, num_train_epochs=3,
                             learning_rate=2e-4, weight_decay=0.01, save_strategy="epoch", save_total_limit=1,
                             logging_strategy="no", report_to=[], seed=seed, use_cpu=True, dataloader_num_workers=0)
    Trainer(model=model, args=args, train_dataset=Examples(ids, labels)).train()
    checkpoints = sorted((d for d in os.listdir(folder) if d.startswith("checkpoint-")), key=lambda d: int(d.split("-")[1]))
    return os.path.join(folder, checkpoints[-1])


def accuracy(folder, task, head=None):
    """Accuracy (%) of the model in `folder` on held-out data of `task`; with `head`, a checkpoint
    folder whose `classifier.*` replaces the model's (merging bodies and keeping each task's own
    head, as Matena & Raffel evaluate merges)."""
    model = BertForSequenceClassification.from_pretrained(folder).eval()
    if head is not None:
        own = load_file(os.path.join(head, "model.safetensors"))
        model.load_state_dict({k: v for k, v in own.items() if k.startswith("classifier.")}, strict=False)
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
        scores = accuracy(out, "A", head=a), accuracy(out, "B", head=b)
        rows.append((label, scores[0], scores[1], (scores[0] + scores[1]) / 2))
    merged("fisher, default (raw v, relative floor)")
    merged("fisher, --scaling N=2048", "--scaling", "N=2048")
    merged("fisher, --epsilon 1e-6 (absolute floor)", "--epsilon", "1e-6")
    merged("average", "--method", "average")
    merged("ubgm, pretrained MLM base, N=2048", "--method", "ubgm", "--base", base, "--scaling", "N=2048")
    print("| merge of A and B (each task scored with its own classifier head) | task A % | task B % | mean % |\n|---|---|---|---|")
    for label, x, y, mean in rows:
        print(f"| {label} | {x:.1f} | {y:.1f} | {mean:.1f} |")
    return rows


def prune_table(binary, work, a, sparsities=(0.5, 0.7, 0.8, 0.9)):
    ones = uniform_importance(a, os.path.join(work, "ones.safetensors"), "ones")
    noise = uniform_importance(a, os.path.join(work, "noise.safetensors"), "noise")
    rows = [("dense", [accuracy(a, "A")] * len(sparsities))]
    for label, options in [("squisher, default scope (global-normalized)", []), ("squisher, --scope global", ["--scope", "global"]),
                           ("squisher, --scope per-tensor", ["--scope", "per-tensor"]),
                           ("magnitude θ², default scope", ["--importance-source", ones]),
                           ("random, default scope", ["--importance-source", noise])]:
        scores = []
        for sparsity in sparsities:
            out = os.path.join(work, f"pruned-{len(rows)}-{sparsity}")
            shutil.rmtree(out, ignore_errors=True)
            squisher(binary, "prune", a, "--sparsity", str(sparsity), "--output", out, *options)
            scores.append(accuracy(out, "A"))
        rows.append((label, scores))
    header = " | ".join(f"{int(s * 100)}%" for s in sparsities)
    print(f"\n| prune model A's weight matrices, no fine-tuning (task A %) | {header} |\n|---|" + "---|" * len(sparsities))
    for label, scores in rows:
        print(f"| {label} | " + " | ".join(f"{x:.1f}" for x in scores) + " |")
    return rows


def theta_squared(checkpoint, path):
    """An importance file θ² (FISH-mask ranking by magnitude)."""
    tensors = load_file(os.path.join(checkpoint, "model.safetensors"))
    save_file({name: t.float() ** 2 for name, t in tensors.items() if t.is_floating_point()}, path)
    return path


def sparse_finetune(base, mask_file, task, seed=3, epochs=2, lr=1e-3):
    """FISH-mask training: from the pretrained init, only the mask's entries (1 = trainable) are
    updated (gradients masked before each AdamW step, no weight decay); accuracy (%) on `task`."""
    torch.manual_seed(0)
    model = BertForSequenceClassification.from_pretrained(base, num_labels=2)
    masks = load_file(mask_file)
    parameters = dict(model.named_parameters())
    missing = [name for name in parameters if name not in masks]
    if missing:
        sys.exit(f"mask {mask_file} has no entry for {missing[:3]}")
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    ids, labels = task_data(task, TRAIN, seed)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(ids), generator=generator).split(32):
            loss = model(input_ids=ids[batch], labels=labels[batch]).loss
            optimizer.zero_grad()
            loss.backward()
            for name, parameter in parameters.items():
                parameter.grad *= masks[name].to(parameter.grad.dtype)
            optimizer.step()
    folder = mask_file + ".model"
    model.save_pretrained(folder)
    return accuracy(folder, task)


def mask_table(binary, work, base, b, keeps=(0.01, 0.05)):
    """FISH mask from task B's fine-tune (the Squisher: its exp_avg_sq), retrained sparsely from the
    pretrained init on task B, next to random and magnitude masks of the same size."""
    sources = [("squisher (exp_avg_sq of B's fine-tune)", []),
               ("magnitude θ²", ["--importance-source", theta_squared(b, os.path.join(work, "theta2.safetensors"))]),
               ("random", ["--importance-source", uniform_importance(b, os.path.join(work, "noise_b.safetensors"), "noise", seed=5)])]
    rows = []
    for label, options in sources:
        scores = []
        for keep in keeps:
            out = os.path.join(work, f"mask-{len(rows)}-{keep}.safetensors")
            if os.path.exists(out):
                os.remove(out)
            squisher(binary, "mask", b, "--keep", str(keep), "--classifier", "classifier.weight,classifier.bias", "--output", out, *options)
            scores.append(sparse_finetune(base, out, "B"))
        rows.append((label, scores))
    header = " | ".join(f"{keep * 100:g}% trainable" for keep in keeps)
    print(f"\n| FISH mask for task B, sparse training from the pretrained init (task B %) | {header} |\n|---|" + "---|" * len(keeps))
    for label, scores in rows:
        print(f"| {label} | " + " | ".join(f"{x:.1f}" for x in scores) + " |")
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
    mask_table(args.squisher, args.work, base, b)


if __name__ == "__main__":
    main()
