#!/usr/bin/env python3
"""numpy (OpenBLAS) or torch.mm side of `swift run -c release squisher-bench gemm`.

Usage: numpy_gemm.py [--torch] SAMPLES MIN_SECONDS CASE...   with CASE = m,n,k,ta,tb (ta/tb = 0 or 1)
For each case it times C = op(A) @ op(B) in float32 (op(X) = X.T on a stored transposed array, a
view, so the BLAS gets the transpose flag), with the same protocol as the Swift side: warm-up, then
SAMPLES samples, each the mean over enough calls to last MIN_SECONDS; prints the median (and the
fastest sample) as
    RESULT m,n,k,ta,tb <median seconds per call> <GFLOP/s of the median> <fastest seconds per call>
numpy: the thread count is whatever OpenBLAS picks up (the caller sets OPENBLAS_NUM_THREADS). Run it
with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset, or OpenBLAS runs a slower kernel (see STYLE.md).
--torch: times torch.mm(op(A), op(B), out=C) instead (run it with a Python that has CPU PyTorch), with
torch.set_num_threads(OMP_NUM_THREADS).
"""
import os
import statistics
import sys
import time

import numpy as np


def timed(call, samples: int, min_seconds: float) -> list:
    for _ in range(3):
        call()
    start = time.perf_counter()
    call()
    once = max(time.perf_counter() - start, 1e-7)
    calls = max(1, int(min_seconds / once))
    times = []
    for _ in range(samples):
        start = time.perf_counter()
        for _ in range(calls):
            call()
        times.append((time.perf_counter() - start) / calls)
    return times


def main() -> None:
    args = sys.argv[1:]
    use_torch = bool(args) and args[0] == "--torch"
    if use_torch:
        import torch

        args = args[1:]
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        print(f"INFO torch {torch.__version__}", flush=True)
    else:
        print(f"INFO numpy {np.__version__}", flush=True)
    samples, min_seconds = int(args[0]), float(args[1])
    rng = np.random.default_rng(0)
    for spec in args[2:]:
        m, n, k, ta, tb = (int(x) for x in spec.split(","))
        a = rng.uniform(-1, 1, (k, m) if ta else (m, k)).astype(np.float32)
        b = rng.uniform(-1, 1, (n, k) if tb else (k, n)).astype(np.float32)
        if use_torch:
            ta_, tb_ = torch.from_numpy(a), torch.from_numpy(b)
            a_op = ta_.t() if ta else ta_
            b_op = tb_.t() if tb else tb_
            c = torch.empty((m, n), dtype=torch.float32)
            times = timed(lambda: torch.mm(a_op, b_op, out=c), samples, min_seconds)
        else:
            a_op = a.T if ta else a
            b_op = b.T if tb else b
            c = np.empty((m, n), dtype=np.float32)
            times = timed(lambda: np.matmul(a_op, b_op, out=c), samples, min_seconds)
        t = statistics.median(times)
        print(f"RESULT {spec} {t:.9e} {2.0 * m * n * k / t / 1e9:.3f} {min(times):.9e}", flush=True)


if __name__ == "__main__":
    main()
