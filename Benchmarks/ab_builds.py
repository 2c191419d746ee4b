"""Interleaved A/B of two builds of squisher-bench on a shared machine.

Runs `BASE SUBCOMMAND ARGS` and `NEW SUBCOMMAND ARGS` alternately for ROUNDS rounds (so a change of the
machine's load weighs on both alike) and prints the median over the rounds of each side and their ratio:

- `gemm`: per case, GFLOP/s as `squisher-bench gemm` reports it (run with `--no-numpy`; add `--best` for
  each side's fastest sample);
- any other subcommand: the whole process's wall-clock and CPU seconds (e.g. a `--profile` run of the
  `transformers` benchmark, which times one case alone).

    python3 Benchmarks/ab_builds.py ../base/.build/release/squisher-bench .build/release/squisher-bench 3 \
        gemm --threads 2 --only gpt2 --best
    python3 Benchmarks/ab_builds.py ../base/.build/release/squisher-bench .build/release/squisher-bench 5 \
        transformers --profile gpt2-768:empirical_fisher --loops 4

Build the base with `git worktree add ../base REV && (cd ../base && swift build -c release)`.
"""
import resource
import statistics
import subprocess
import sys
import time
from collections import defaultdict


def gemm_gflops(binary, args):
    out = subprocess.run([binary, "gemm", "--no-numpy", *args], capture_output=True, text=True, check=True).stdout
    result = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(cells) > 2 and cells[2].replace(".", "").isdigit():
            result[cells[0]] = float(cells[2])
    return result


def process_seconds(binary, args):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([binary, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return {"wall seconds": wall, "CPU seconds": cpu}


def main():
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    base, new, rounds, subcommand, args = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5:]
    measure = (lambda b: gemm_gflops(b, args)) if subcommand == "gemm" else (lambda b: process_seconds(b, [subcommand, *args]))
    unit = "GFLOP/s" if subcommand == "gemm" else "s"
    samples = defaultdict(lambda: ([], []))
    for _ in range(rounds):
        for side, binary in enumerate((base, new)):
            for case, value in measure(binary).items():
                samples[case][side].append(value)
    print(f"| case | base ({unit}) | new ({unit}) | new / base |")
    print("|---|---:|---:|---:|")
    for case, (b, n) in samples.items():
        mb, mn = statistics.median(b), statistics.median(n)
        print(f"| {case} | {mb:.3f} | {mn:.3f} | {mn / mb:.2f} |")


if __name__ == "__main__":
    main()
