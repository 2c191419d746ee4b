#!/usr/bin/env python3
"""PyTorch / torch.func / Opacus side of `squisher-bench transformers` (see Benchmarks/README.md).

Models: Hugging Face GPT2LMHeadModel / BertForSequenceClassification built from
Benchmarks/transformer_configs/<model>.json (the same configs Squisher builds), float32, eval mode
(no dropout in these configs anyway), random initialization. Data: token ids from the formula
((n*1103515245 + t*12345 + n*t*7) mod 2^31) mod 64 (the same ids as the Swift side); GPT-2 labels are
the ids (shifted inside: logits at t predict id t+1), BERT labels (n*7 + 3) mod 2.

Cases (each: one warm-up, then the median of REPEATS wall-clock runs over all N samples; a case whose timed runs
exceed 120 s in all stops there, so the exact true Fisher of GPT-2 may be the median of fewer runs):
  fwd_bwd           forward + backward of the sum-reduced cross-entropy (sum over samples and tokens)
  adamw_epoch       one epoch: zero_grad, forward, loss = (sum CE) / batch, backward, AdamW(lr 1e-3, wd 0.01) step
  vmap_grad_sq      empirical Fisher: torch.func vmap(grad) per-sample gradients, squared, summed over N
                    (attention_mask of ones passed explicitly: without it the mask code branches on data)
  opacus_grad_sq    empirical Fisher: Opacus 1.6 GradSampleModule (hooks; functorch for HF Conv1D), grad_sample², summed
                    (train mode, which Opacus needs to record activations; every dropout probability is 0)
  true_fisher_vmap  exact true Fisher: per sample (vmap, chunked), vjp of the logits vmapped over the T*C
                    cotangents sqrt(p_tc)(p_t - e_c) at position t (BERT: the C cotangents), squared, summed;
                    chunks of as many samples as fit in --true-fisher-chunk-mb (1 GB) of per-outcome gradients

Prints `RESULT <model> <case> <median seconds>` lines.
Usage: python pytorch_transformer_bench.py --models gpt2-tiny:256:32:16:32,... [--threads 2] [--repeats 5] [--cases ...]
  (model:samples:batch:length:true_fisher_samples; 0 true-Fisher samples skips that case)

With --serve (how `squisher-bench transformers` runs it, so that every repeat of a case runs on both sides
back to back), the script times one run at a time on request, one command per line on stdin:
  PREPARE <model> <case>   build the case and run it once (warm-up) -> `PREPARED <model> <case>`
                           or `FAILED <model> <case> <reason>`
  TIME <model> <case>      one untimed run of a prepared case (caches and threads warm again after the
                           other side's run), then one timed run    -> `TIME <model> <case> <seconds>`
  RELEASE                  drop every prepared case                 -> `RELEASED`
The answers are single lines; `INFO` lines may come before them. End of input ends the script.
"""
import argparse
import json
import os
import warnings

import torch
import torch.nn.functional as F

from peer_timing import median_time, summed_squared_gradients

CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "transformer_configs")


def make_model(key):
    import transformers
    with open(os.path.join(CONFIGS, key + ".json")) as f:
        raw = json.load(f)
    torch.manual_seed(0)
    if raw["model_type"] == "gpt2":
        config = transformers.GPT2Config(**raw)
        model = transformers.GPT2LMHeadModel(config)
    else:
        config = transformers.BertConfig(**raw)
        model = transformers.BertForSequenceClassification(config)
    return model.float().eval(), raw["model_type"] == "gpt2"


def token_ids(samples, length, vocabulary=64):
    return torch.tensor([[((n * 1103515245 + t * 12345 + n * t * 7) % 2147483648) % vocabulary for t in range(length)]
                         for n in range(samples)], dtype=torch.long)


def data(samples, length, is_lm):
    ids = token_ids(samples, length)
    if is_lm:
        return ids, ids
    return ids, torch.tensor([(n * 7 + 3) % 2 for n in range(samples)], dtype=torch.long)


def logits_of(model, ids):
    return model(input_ids=ids).logits


def summed_loss(logits, targets, is_lm):
    """Sum over samples (and predicted tokens) of the cross-entropy."""
    if is_lm:
        return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), targets[:, 1:].reshape(-1), reduction="sum")
    return F.cross_entropy(logits, targets, reduction="sum")


def batches_of(x, y, batch):
    return [(x[i:i + batch], y[i:i + batch]) for i in range(0, len(x), batch)]


def fwd_bwd_case(key, samples, batch, length):
    model, is_lm = make_model(key)
    batches = batches_of(*data(samples, length, is_lm), batch)

    def run():
        for xb, yb in batches:
            summed_loss(logits_of(model, xb), yb, is_lm).backward()
    return run


def adamw_case(key, samples, batch, length):
    model, is_lm = make_model(key)
    batches = batches_of(*data(samples, length, is_lm), batch)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)

    def run():
        for xb, yb in batches:
            optimizer.zero_grad()
            (summed_loss(logits_of(model, xb), yb, is_lm) / len(xb)).backward()
            optimizer.step()
    return run


def vmap_case(key, samples, batch, length):
    from torch.func import functional_call, grad, vmap
    model, is_lm = make_model(key)
    batches = batches_of(*data(samples, length, is_lm), batch)
    params = {k: v.detach() for k, v in model.named_parameters()}  # tied weights appear once

    mask = torch.ones(1, length, dtype=torch.long)  # explicit: the mask-free path branches on data, which vmap cannot

    def sample_loss(p, xs, ys):
        logits = functional_call(model, p, (xs.unsqueeze(0),), {"attention_mask": mask}).logits
        return summed_loss(logits, ys.unsqueeze(0), is_lm)
    per_sample = vmap(grad(sample_loss), in_dims=(None, 0, 0))

    def run():
        return summed_squared_gradients(per_sample, params, batches)
    return run


def opacus_case(key, samples, batch, length):
    from opacus import GradSampleModule
    model, is_lm = make_model(key)
    batches = batches_of(*data(samples, length, is_lm), batch)
    model.train()  # Opacus records activations only in training mode (every dropout probability here is 0)
    gsm = GradSampleModule(model, batch_first=True, loss_reduction="sum")
    params = [p for p in gsm.parameters() if p.requires_grad]

    def run():
        totals = [torch.zeros_like(p) for p in params]
        for xb, yb in batches:
            gsm.zero_grad(set_to_none=True)
            summed_loss(gsm(input_ids=xb).logits, yb, is_lm).backward()
            for t, p in zip(totals, params):
                t.add_(p.grad_sample.square().sum(0))
        return totals
    return run


def true_fisher_case(key, samples, batch, length, chunk_bytes):
    """Exact true Fisher: per sample the per-outcome gradients of -log p_t(c), weighted by sqrt(p_t(c)), as one
    vmap over the outcomes of the logits' vjp (the sqrt-probability trick), vmapped (chunked) over samples."""
    from torch.func import functional_call, vjp, vmap
    model, is_lm = make_model(key)
    batches = batches_of(*data(samples, length, is_lm), batch)
    params = {k: v.detach() for k, v in model.named_parameters()}
    mask = torch.ones(1, length, dtype=torch.long)

    def sample_fisher(p, xs):
        logits_fn = lambda q: functional_call(model, q, (xs.unsqueeze(0),), {"attention_mask": mask}).logits[0]
        logits, vjp_fn = vjp(logits_fn, p)
        if is_lm:
            logits = logits[:-1]  # the last position predicts nothing
        probs = logits.softmax(-1).detach()                       # [T', C] (BERT: [C])
        c = probs.shape[-1]
        eye = torch.eye(c)
        if is_lm:
            t = probs.shape[0]
            # cotangent (t, c): sqrt(p_tc) (p_t - e_c) at row t, zero elsewhere (and at the unpredicted last row)
            rows = probs.sqrt().unsqueeze(-1) * (probs.unsqueeze(1) - eye)        # [T', C, C]
            cot = (rows.unsqueeze(2) * torch.eye(t, t + 1)[:, None, :, None]).reshape(t * c, t + 1, c)
        else:
            cot = probs.sqrt().unsqueeze(-1) * (probs.unsqueeze(0) - eye)         # [C, C]
        grads = vmap(vjp_fn)(cot)[0]
        return {k: g.square().sum(0) for k, g in grads.items()}
    # As many samples per vmap chunk as fit in chunk_bytes of per-outcome gradients (outcomes x parameters floats each).
    outcomes = (length - 1) * model.config.vocab_size if is_lm else model.config.num_labels
    chunk = max(1, min(batch, chunk_bytes // (4 * outcomes * sum(v.numel() for v in params.values()))))
    print(f"INFO {key} true_fisher_vmap: {outcomes} outcomes per sample, {chunk} samples per vmap chunk", flush=True)
    per_sample = vmap(sample_fisher, in_dims=(None, 0), chunk_size=chunk)

    def run():
        totals = {k: torch.zeros_like(v) for k, v in params.items()}
        for xb, _ in batches:
            out = per_sample(params, xb)
            for k in totals:
                totals[k].add_(out[k].sum(0))
        return totals
    return run


def case_makers(spec, chunk_bytes):
    """`key` and `{case: make}` of a `model:samples:batch:length:true_fisher_samples` spec."""
    key, samples, batch, length, tf_samples = spec.split(":")
    samples, batch, length, tf_samples = int(samples), int(batch), int(length), int(tf_samples)
    makers = {"fwd_bwd": lambda: fwd_bwd_case(key, samples, batch, length),
              "adamw_epoch": lambda: adamw_case(key, samples, batch, length),
              "vmap_grad_sq": lambda: vmap_case(key, samples, batch, length),
              "opacus_grad_sq": lambda: opacus_case(key, samples, batch, length)}
    if tf_samples > 0:
        makers["true_fisher_vmap"] = lambda: true_fisher_case(key, tf_samples, batch, length, chunk_bytes)
    return key, makers


def serve(makers):
    """The --serve loop (see the module's doc): `makers` maps (model, case) to the case's maker."""
    import gc
    import sys
    import time
    prepared = {}
    for line in sys.stdin:
        fields = line.split()
        if not fields:
            continue
        if fields[0] == "RELEASE":
            prepared.clear()
            gc.collect()
            print("RELEASED", flush=True)
            continue
        if len(fields) != 3 or fields[0] not in ("PREPARE", "TIME"):
            print(f"FAILED ? ? unknown command: {line.strip()[:200]}", flush=True)
            continue
        command, key, name = fields
        try:
            if command == "PREPARE":
                if (key, name) not in makers:
                    raise KeyError(f"no case {name} for model {key}")
                run = makers[(key, name)]()
                run()  # warm-up
                prepared[(key, name)] = run
                print(f"PREPARED {key} {name}", flush=True)
            else:
                run = prepared[(key, name)]
                run()  # re-warm: the other side ran in between
                start = time.perf_counter()
                run()
                print(f"TIME {key} {name} {time.perf_counter() - start:.6f}", flush=True)
        except Exception as error:  # report and go on: one failing peer must not hide the others
            prepared.pop((key, name), None)
            reason = f"{type(error).__name__}: {str(error)[:300]}".replace("\n", " ")
            print(f"FAILED {key} {name} {reason}", flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--models", default="gpt2-tiny:256:32:16:32,bert-tiny:256:32:16:256,gpt2-768:16:8:128:0")
    parser.add_argument("--cases", default="fwd_bwd,adamw_epoch,vmap_grad_sq,opacus_grad_sq,true_fisher_vmap")
    parser.add_argument("--true-fisher-chunk-mb", type=int, default=1024,
                        help="memory for the per-outcome gradients of one vmap chunk of the exact true Fisher (MB)")
    parser.add_argument("--serve", action="store_true", help="time single runs on request (stdin commands)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    wanted = set(args.cases.split(","))
    import transformers
    import opacus
    print(f"INFO torch {torch.__version__} transformers {transformers.__version__} opacus {opacus.__version__} "
          f"threads {torch.get_num_threads()}", flush=True)
    models = [case_makers(spec, args.true_fisher_chunk_mb << 20) for spec in args.models.split(",")]
    if args.serve:
        serve({(key, name): make for key, makers in models for name, make in makers.items() if name in wanted})
        return
    for key, makers in models:
        for name, make in makers.items():
            if name not in wanted:
                continue
            try:
                seconds = median_time(args.repeats, make(), budget=120.0)
                print(f"RESULT {key} {name} {seconds:.6f}", flush=True)
            except Exception as error:  # report and go on: one failing peer must not hide the others
                print(f"INFO {key} {name} failed: {type(error).__name__}: {str(error)[:300]}", flush=True)


if __name__ == "__main__":
    main()
