#!/usr/bin/env python3
"""numpy (OpenBLAS) side of `swift run -c release squisher-bench gemm`.

Usage: numpy_gemm.py SAMPLES MIN_SECONDS CASE...   with CASE = m,n,k,ta,tb (ta/tb = 0 or 1)
For each case it times C = op(A) @ op(B) in float32 (op(X) = X.T on a stored transposed array, a
view, so OpenBLAS gets the transpose flag), with the same protocol as the Swift side: warm-up, then
SAMPLES samples, each the mean over enough calls to last MIN_SECONDS; prints the median (and the
fastest sample) as
    RESULT m,n,k,ta,tb <median seconds per call> <GFLOP/s of the median> <fastest seconds per call>
The thread count is whatever OpenBLAS picks up (the caller sets OPENBLAS_NUM_THREADS). Run it with
OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset, or OpenBLAS runs a slower kernel (see STYLE.md).
"""
import statistics
import sys
import time

import numpy as np


def main() -> None:
    samples, min_seconds = int(sys.argv[1]), float(sys.argv[2])
    print(f"INFO numpy {np.__version__}", flush=True)
    rng = np.random.default_rng(0)
    for spec in sys.argv[3:]:
        m, n, k, ta, tb = (int(x) for x in spec.split(","))
        a = rng.uniform(-1, 1, (k, m) if ta else (m, k)).astype(np.float32)
        b = rng.uniform(-1, 1, (n, k) if tb else (k, n)).astype(np.float32)
        a_op = a.T if ta else a
        b_op = b.T if tb else b
        c = np.empty((m, n), dtype=np.float32)
        for _ in range(3):
            np.matmul(a_op, b_op, out=c)
        start = time.perf_counter()
        np.matmul(a_op, b_op, out=c)
        once = max(time.perf_counter() - start, 1e-7)
        calls = max(1, int(min_seconds / once))
        times = []
        for _ in range(samples):
            start = time.perf_counter()
            for _ in range(calls):
                np.matmul(a_op, b_op, out=c)
            times.append((time.perf_counter() - start) / calls)
        t = statistics.median(times)
        print(f"RESULT {spec} {t:.9e} {2.0 * m * n * k / t / 1e9:.3f} {min(times):.9e}", flush=True)


if __name__ == "__main__":
    main()
