"""Timing and per-sample-gradient helpers shared by the PyTorch sides of `squisher-bench peers`
(pytorch_bench.py) and `squisher-bench transformers` (pytorch_transformer_bench.py)."""
import statistics
import time

import torch


def median_time(repeats, body, budget=None):
    """Median wall-clock seconds of `repeats` runs of `body` after one warm-up. With a `budget` (seconds),
    a case slower than that in all stops after the first timed run that exceeds it."""
    body()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        body()
        times.append(time.perf_counter() - start)
        if budget is not None and sum(times) > budget:
            break
    return statistics.median(times)


def summed_squared_gradients(per_sample, params, batches):
    """The empirical Fisher diagonal `sum_n g_n**2` per parameter name: `per_sample(params, x, y)` returns
    each parameter's per-sample gradients of a batch (leading dimension: samples)."""
    totals = {k: torch.zeros_like(v) for k, v in params.items()}
    for xb, yb in batches:
        grads = per_sample(params, xb, yb)
        for k in totals:
            totals[k].add_(grads[k].square().sum(0))
    return totals
