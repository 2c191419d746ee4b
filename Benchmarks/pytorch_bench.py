#!/usr/bin/env python3
"""PyTorch / BackPACK / torch.func side of `squisher-bench peers` (see Benchmarks/README.md).

Times, for the two benchmark models on N random samples (float32, batch B):
  fwd_bwd          forward + backward of a sum-reduced cross-entropy over all N samples (no optimizer)
  adam_epoch       one training epoch: zero_grad, forward, mean cross-entropy, backward, Adam step
  sum_grad_squared BackPACK SumGradSquared (empirical Fisher diagonal), summed over N
  diag_ggn_exact   BackPACK DiagGGNExact (exact true Fisher diagonal, C backward passes per batch)
  diag_ggn_mc      BackPACK DiagGGNMC (true Fisher, 1 Monte-Carlo label per sample)
  vmap_grad_sq     torch.func vmap(grad) per-sample gradients, squared and summed (empirical Fisher)

Each case: one warm-up, then the median of REPEATS wall-clock runs over all N samples.
Prints one machine-readable line per case:
  RESULT <model> <case> <median seconds>
Usage: python pytorch_bench.py [--threads 2] [--samples 2048] [--batch 128] [--repeats 5] [--models mlp,cnn]
       [--cases fwd_bwd,adam_epoch,...] [--no-backpack]
"""
import argparse
import warnings

import torch
import torch.nn as nn

from peer_timing import median_time, summed_squared_gradients


def make_model(name):
    torch.manual_seed(0)
    if name == "mlp":
        return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10)), (784,)
    if name == "cnn":
        return nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(32 * 7 * 7, 10)), (1, 28, 28)
    raise ValueError(name)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--samples", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--models", default="mlp,cnn")
    parser.add_argument("--no-backpack", action="store_true")
    parser.add_argument("--cases", default="fwd_bwd,adam_epoch,sum_grad_squared,diag_ggn_exact,diag_ggn_mc,vmap_grad_sq",
                        help="comma-separated cases to run (default: all)")
    args = parser.parse_args()
    # BackPACK registers full backward hooks; PyTorch warns that inputs need no gradient (harmless here).
    warnings.filterwarnings("ignore", message="Full backward hook is firing")
    torch.set_num_threads(args.threads)
    wanted = set(args.cases.split(","))
    print(f"INFO torch {torch.__version__} threads {torch.get_num_threads()}", flush=True)
    try:
        import backpack
        from backpack import backpack as bp_context, extend
        from backpack.extensions import SumGradSquared, DiagGGNExact, DiagGGNMC
        have_backpack = not args.no_backpack
    except ImportError:
        have_backpack = False
        print("INFO backpack-for-pytorch not installed: BackPACK cases skipped", flush=True)
    from torch.func import functional_call, grad, vmap

    for name in args.models.split(","):
        model, sample_shape = make_model(name)
        g = torch.Generator().manual_seed(3)
        x = torch.randn((args.samples,) + sample_shape, generator=g)
        y = torch.randint(0, 10, (args.samples,), generator=g)
        batches = [(x[i:i + args.batch], y[i:i + args.batch]) for i in range(0, args.samples, args.batch)]
        sum_loss = nn.CrossEntropyLoss(reduction="sum")

        def fwd_bwd():
            for xb, yb in batches:
                sum_loss(model(xb), yb).backward()
        if "fwd_bwd" in wanted:
            print(f"RESULT {name} fwd_bwd {median_time(args.repeats, fwd_bwd):.6f}", flush=True)

        def adam_epoch():
            fresh, _ = make_model(name)
            opt = torch.optim.Adam(fresh.parameters(), lr=1e-3)
            mean_loss = nn.CrossEntropyLoss()
            for xb, yb in batches:
                opt.zero_grad()
                mean_loss(fresh(xb), yb).backward()
                opt.step()
        if "adam_epoch" in wanted:
            print(f"RESULT {name} adam_epoch {median_time(args.repeats, adam_epoch):.6f}", flush=True)

        if have_backpack:
            bp_model, _ = make_model(name)
            bp_model = extend(bp_model)
            bp_loss = extend(nn.CrossEntropyLoss(reduction="sum"))
            for case, extension, attribute in [("sum_grad_squared", SumGradSquared, "sum_grad_squared"),
                                               ("diag_ggn_exact", DiagGGNExact, "diag_ggn_exact"),
                                               ("diag_ggn_mc", DiagGGNMC, "diag_ggn_mc")]:
                if case not in wanted:
                    continue
                def run():
                    totals = [torch.zeros_like(p) for p in bp_model.parameters()]
                    for xb, yb in batches:
                        bp_model.zero_grad()
                        loss = bp_loss(bp_model(xb), yb)
                        with bp_context(extension()):
                            loss.backward()
                        for t, p in zip(totals, bp_model.parameters()):
                            t.add_(getattr(p, attribute))
                    return totals
                print(f"RESULT {name} {case} {median_time(args.repeats, run):.6f}", flush=True)

        params = {k: v.detach() for k, v in model.named_parameters()}

        def sample_loss(p, xs, ys):
            out = functional_call(model, p, (xs.unsqueeze(0),))
            return nn.functional.cross_entropy(out, ys.unsqueeze(0), reduction="sum")
        per_sample = vmap(grad(sample_loss), in_dims=(None, 0, 0))

        def vmap_run():
            return summed_squared_gradients(per_sample, params, batches)
        if "vmap_grad_sq" in wanted:
            print(f"RESULT {name} vmap_grad_sq {median_time(args.repeats, vmap_run):.6f}", flush=True)


if __name__ == "__main__":
    main()
