#!/usr/bin/env python3
"""Two HF Trainer fine-tunes of one tiny pretrained BERT on two synthetic tasks, and an evaluator for merged folders.

Not a test fixture (nothing here is committed output): the coordinator uses it to measure `squisher merge` on real
Trainer checkpoints, reloading each merged folder with transformers.

Tasks (sequence classification, 2 labels, [CLS] + 15 tokens, vocab 64, balanced labels; the two tasks draw their
tokens from disjoint ranges and share the label meaning, so one merged model can solve both, and what each task
needs (its tokens' embeddings) lies in parameters the other task barely uses: the case Fisher merging is for):
  A: tokens from 5..34;  label = token 7 occurs in the sequence.
  B: tokens from 35..63; label = token 40 occurs in the sequence.
Recipe: a BertForMaskedLM (hidden 64, 2 layers, 4 heads, intermediate 128) is pretrained with masked-LM on
sequences from both ranges (`base_mlm/`); `base_encoder/` is its encoder alone (BertModel, keys without the
"bert." prefix) and `base_cls/` is the same encoder with the fine-tunes' common classifier init; A and B are
`BertForSequenceClassification` fine-tunes of base_mlm with the same seed (so the same classifier init), each
by a default `Trainer` (AdamW, linear schedule) saving `task_a/checkpoint-N/` and `task_b/checkpoint-N/`.

Pinned versions: torch==2.13.0+cpu transformers==5.24.0 accelerate==1.15.0 (Tests/Generators/requirements.txt).
Run from the repository root (about 2 minutes on 2 cores):
    P=/work/peers-venv/bin/python
    $P Tests/Generators/make_merge_eval.py train                 # writes /work/merge-eval/{base_*,task_a,task_b}
    $P Tests/Generators/make_merge_eval.py average OUT           # plain average of A and B into OUT, evaluated
    $P Tests/Generators/make_merge_eval.py eval FOLDER [...]     # accuracy of each folder on both tasks
    $P Tests/Generators/make_merge_eval.py reference-fisher OUT [--floor F]  # PyTorch Fisher merge, evaluated
e.g.
    swift run -c release squisher merge --method fisher /work/merge-eval/task_a/checkpoint-250 \
        /work/merge-eval/task_b/checkpoint-250 --output /work/merge-eval/fisher
    $P Tests/Generators/make_merge_eval.py eval /work/merge-eval/fisher
`eval` prints one line per folder: task A accuracy, task B accuracy and their mean, on 1,000 held-out
sequences per task (seeded, the same every run).

Measured with these versions (`train`, then the other commands; task A / task B accuracy): A alone 100.0% / 50.0%,
B alone 50.0% / 100.0%, plain average 50.0% / 81.2% (mean 65.6%); reference Fisher merge with raw exp_avg_sq
and floor 1e-30: 100.0% / 100.0%; the same with an absolute floor of 1e-6: 50.0% / 100.0% (mean 75.0%; 97% of
the raw exp_avg_sq entries are below 1e-6, median 1.1e-9).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fixture_common import DictDataset, fresh_dir, quiet_libraries, seed_all, word_level_tokenizer  # noqa: E402

quiet_libraries()
warnings.filterwarnings("ignore")

import torch  # noqa: E402

ROOT = Path("/work/merge-eval")
VOCAB = 64
LEN = 16
RANGES = {"a": (5, 35), "b": (35, 64)}
MARKERS = {"a": 7, "b": 40}
FINETUNE_STEPS = 250


def config():
    from transformers import BertConfig

    return BertConfig(
        vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
        max_position_embeddings=32, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, num_labels=2,
        pad_token_id=0,
    )


def task_data(task: str, n: int, seed: int) -> DictDataset:
    """n sequences of task `task` ('a' or 'b'): [CLS] + 15 tokens of the task's range, balanced labels."""
    lo, hi = RANGES[task]
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(lo, hi, (n, LEN), generator=g)
    ids[:, 0] = 2
    want = torch.arange(n) % 2
    marker = MARKERS[task]
    body = ids[:, 1:]
    body[body == marker] = marker + 1
    pos = torch.randint(1, LEN, (n,), generator=g)
    ids[want == 1, pos[want == 1]] = marker
    labels = (ids[:, 1:] == marker).any(dim=1).long()
    perm = torch.randperm(n, generator=g)
    return DictDataset(input_ids=ids[perm], attention_mask=torch.ones_like(ids), labels=labels[perm])


def mlm_data(n: int, seed: int) -> DictDataset:
    """Unlabelled sequences, half from each task's token range, for masked-LM pretraining."""
    a, b = task_data("a", n // 2, seed), task_data("b", n - n // 2, seed + 1)
    ids = torch.cat([a.columns["input_ids"], b.columns["input_ids"]])
    return DictDataset(input_ids=ids, attention_mask=torch.ones_like(ids))


def train_args(out: Path, steps: int, lr: float):
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=str(out), max_steps=steps, save_strategy="steps", save_steps=steps, per_device_train_batch_size=32,
        learning_rate=lr, weight_decay=0.01, logging_steps=max(steps // 4, 1), use_cpu=True, report_to="none",
        disable_tqdm=True, seed=0, data_seed=0, dataloader_num_workers=0,
    )


def pretrain() -> None:
    """Masked-LM pretraining of the shared base; writes base_mlm/, base_encoder/."""
    from transformers import BertForMaskedLM, DataCollatorForLanguageModeling, Trainer

    seed_all(0)
    tok = word_level_tokenizer(VOCAB)
    model = BertForMaskedLM(config())
    work = fresh_dir(ROOT / "_pretrain")
    collator = DataCollatorForLanguageModeling(tokenizer=tok, mlm_probability=0.15)
    Trainer(model=model, args=train_args(work, 600, 1e-3), train_dataset=mlm_data(8192, seed=100),
            data_collator=collator).train()
    model.save_pretrained(fresh_dir(ROOT / "base_mlm"))
    tok.save_pretrained(ROOT / "base_mlm")
    model.bert.save_pretrained(fresh_dir(ROOT / "base_encoder"))
    tok.save_pretrained(ROOT / "base_encoder")


def finetune(task: str) -> Path:
    """Fine-tune base_mlm on one task with a default Trainer; returns the checkpoint folder."""
    from transformers import BertForSequenceClassification, Trainer

    seed_all(0)  # same seed for both tasks: the same classifier init
    model = BertForSequenceClassification.from_pretrained(ROOT / "base_mlm", num_labels=2)
    if task == "a":
        model.save_pretrained(fresh_dir(ROOT / "base_cls"))
        word_level_tokenizer(VOCAB).save_pretrained(ROOT / "base_cls")
    out = fresh_dir(ROOT / f"task_{task}")
    trainer = Trainer(model=model, args=train_args(out, FINETUNE_STEPS, 2e-4),
                      train_dataset=task_data(task, 4096, seed=200 + ord(task)),
                      processing_class=word_level_tokenizer(VOCAB))
    trainer.train()
    return out / f"checkpoint-{FINETUNE_STEPS}"


def accuracy(model, task: str) -> float:
    data = task_data(task, 1000, seed=900 + ord(task))
    with torch.no_grad():
        logits = model(input_ids=data.columns["input_ids"], attention_mask=data.columns["attention_mask"]).logits
    return float((logits.argmax(-1) == data.columns["labels"]).float().mean())


def evaluate(folder: Path) -> tuple[float, float]:
    """Reload `folder` with transformers and print task A, task B and mean accuracy."""
    from transformers import BertForSequenceClassification

    model = BertForSequenceClassification.from_pretrained(folder).eval()
    a, b = accuracy(model, "a"), accuracy(model, "b")
    print(f"{folder}: task A {100 * a:.1f}%  task B {100 * b:.1f}%  mean {100 * (a + b) / 2:.1f}%", flush=True)
    return a, b


def average(a: Path, b: Path, out: Path) -> None:
    """Plain average of every tensor of A and B (the baseline), with A's config and tokenizer files."""
    import shutil

    from safetensors.torch import load_file, save_file

    ta, tb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert ta.keys() == tb.keys(), "A and B hold different tensors"
    fresh_dir(out)
    save_file({k: (ta[k] + tb[k]) / 2 for k in ta}, str(out / "model.safetensors"), metadata={"format": "pt"})
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        if (a / name).exists():
            shutil.copy(a / name, out / name)


def trainer_order_second_moments(ckpt: Path) -> dict[str, torch.Tensor]:
    """exp_avg_sq by name from a Trainer checkpoint: the live model's Trainer groups give the index order."""
    from transformers import BertForSequenceClassification, Trainer

    model = BertForSequenceClassification.from_pretrained(ckpt)
    decay = set(Trainer.get_decay_parameter_names(None, model))
    named = [n for n, _ in model.named_parameters()]
    order = [n for n in named if n in decay] + [n for n in named if n not in decay]
    state = torch.load(ckpt / "optimizer.pt", weights_only=True, map_location="cpu")["state"]
    assert len(state) == len(order), f"{ckpt}: {len(state)} states for {len(order)} parameters"
    return {n: state[i]["exp_avg_sq"] for i, n in enumerate(order)}


def reference_fisher(a: Path, b: Path, out: Path, floor: float) -> None:
    """PyTorch reference of the diagonal Fisher merge: θ = Σ_i (v_i + floor) θ_i / Σ_i (v_i + floor), raw
    exp_avg_sq as v, with A's config and tokenizer files (a tensor without optimizer state is averaged)."""
    from safetensors.torch import load_file, save_file

    average(a, b, out)
    ta, tb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    va, vb = trainer_order_second_moments(a), trainer_order_second_moments(b)
    merged = {k: ((va[k] + floor) * ta[k] + (vb[k] + floor) * tb[k]) / (va[k] + vb[k] + 2 * floor) if k in va
              else (ta[k] + tb[k]) / 2 for k in ta}
    save_file(merged, str(out / "model.safetensors"), metadata={"format": "pt"})


def main() -> None:
    parser = argparse.ArgumentParser(description="Fine-tune two tiny BERTs and evaluate merged folders")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("train", help=f"pretrain the base and fine-tune A and B under {ROOT}")
    avg = sub.add_parser("average", help="plain average of A and B into OUT, then evaluate it")
    avg.add_argument("out", type=Path)
    ref = sub.add_parser("reference-fisher", help="PyTorch Fisher merge of A and B into OUT, then evaluate it")
    ref.add_argument("out", type=Path)
    ref.add_argument("--floor", type=float, default=1e-30, help="added to both importances (default 1e-30)")
    ev = sub.add_parser("eval", help="accuracy on both tasks of each folder")
    ev.add_argument("folders", type=Path, nargs="+")
    args = parser.parse_args()
    ckpt = {t: ROOT / f"task_{t}" / f"checkpoint-{FINETUNE_STEPS}" for t in "ab"}
    if args.command == "train":
        pretrain()
        for t in "ab":
            finetune(t)
        for folder in (ROOT / "base_cls", ckpt["a"], ckpt["b"]):
            evaluate(folder)
    elif args.command == "average":
        average(ckpt["a"], ckpt["b"], args.out)
        evaluate(args.out)
    elif args.command == "reference-fisher":
        reference_fisher(ckpt["a"], ckpt["b"], args.out, args.floor)
        evaluate(args.out)
    else:
        for folder in args.folders:
            evaluate(folder)


if __name__ == "__main__":
    main()
