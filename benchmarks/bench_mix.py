"""Benchmark: building a mix's blending index, and fetching batches from a built mix.

1. Blending at the paper's run size (``--steps`` 61,035 x ``--global-batch`` 1,024 =
   62.5 M samples) for 2 datasets (0.8/0.2), 5 datasets (0.5/0.2/0.1/0.1/0.1) and 8
   datasets (0.3/0.2/0.1/0.1/0.1/0.1/0.05/0.05):
   ``mixkit.mix.indices.build_blending_indices`` against megatron-core's C++
   ``helpers_cpp.build_blending_indices``, each including the allocation of its two
   output arrays (int16 + int64, as ``BlendedDataset`` does), best of ``--repeats``, after
   one warm-up call (Numba compile excluded). Checks both outputs are identical and
   prints ``ratio = megatron_s / mixkit_s`` (above 1: mixkit is faster).

2. Batch fetch: builds a two-dataset mix (C4-like 0.8, code-like 0.2) over synthetic
   uint16 stores in a temporary data directory, then times ``MixStream.batch(step)``
   for 8 x 2049 and 1024 x 2049 batches (mean over distinct steps, files in the page
   cache) against a plain copy of an int64 array of the same shape (``np.copyto``).
   Prints ``fetch/copy`` (target: at most 2).

The last line, ``ratio: X``, is the smallest of the three blend ratios (target >= 1.5).

    python benchmarks/bench_mix.py [--steps 61035] [--global-batch 1024] [--repeats 3] [--skip-blend]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from timing import best_of  # benchmarks/ is on sys.path when run as a script

from mixkit.mix import MixPlan, MixStream, Phase, build_mix
from mixkit.mix.indices import build_blending_indices
from mixkit.store import write_store


def bench_blend(size: int, weights: list[float], repeats: int) -> float:
    from megatron.core.datasets import helpers_cpp

    w = np.array(weights, dtype=np.float64)
    w = w / w.sum()

    def megatron():
        ds = np.zeros(size, dtype=np.int16)
        sn = np.zeros(size, dtype=np.int64)
        helpers_cpp.build_blending_indices(ds, sn, w, len(w), size, False)
        return ds, sn

    def mixkit():
        return build_blending_indices(w, size)

    build_blending_indices(w, 16)  # compile outside the timing
    ours, theirs = mixkit(), megatron()
    same = np.array_equal(ours[0], theirs[0]) and np.array_equal(ours[1], theirs[1])
    del ours, theirs
    t_meg = best_of(megatron, repeats)
    t_mix = best_of(mixkit, repeats)
    print(
        f"blend {len(w)} datasets, {size:,} samples: mixkit {t_mix:.3f} s, megatron C++ {t_meg:.3f} s, "
        f"ratio {t_meg / t_mix:.2f}, identical={same}"
    )
    if not same:
        raise SystemExit("outputs differ")
    return t_meg / t_mix


def synthetic_docs(rng: np.random.Generator, n_tokens: int, vocab: int = 50277):
    """Documents of 1..4000 tokens (EOS 0 last) until ``n_tokens`` tokens."""
    total = 0
    while total < n_tokens:
        n = int(rng.integers(1, 4001))
        d = rng.integers(1, vocab, size=n, dtype=np.uint16)
        d[-1] = 0
        total += n
        yield d


def bench_fetch(repeats: int) -> None:
    seq_len = 2048
    work = Path(tempfile.mkdtemp(prefix="bench-mix-"))
    try:
        rng = np.random.default_rng(0)
        steps = 6
        need = steps * 1024 * (seq_len + 1)
        write_store(work / "c4", synthetic_docs(rng, int(0.85 * need)), vocab_size=50277)
        write_store(work / "code", synthetic_docs(rng, int(0.25 * need)), vocab_size=50277)
        for gb in (8, 1024):
            plan = MixPlan([Phase(0, {"c4": 0.8, "code": 0.2})], steps=steps, seq_len=seq_len, global_batch=gb, seed=1)
            build_mix(plan, f"gb{gb}", work, overwrite=True)
            s = MixStream.open(f"gb{gb}", work)
            for t in range(steps):  # warm the page cache and the kernels
                s.batch(t)
            src = np.ones((gb, seq_len + 1), dtype=np.int64)
            buf = np.empty_like(src)
            dst = np.empty_like(src)
            reps = max(repeats, 200 if gb == 8 else 5)

            def fetch(s=s):
                for t in range(steps):
                    s.batch(t)

            def fetch_into(s=s, buf=buf):
                for t in range(steps):
                    s.batch(t, out=buf)

            def copy(src=src):
                for _ in range(steps):
                    src.copy()

            def copy_into(src=src, dst=dst):
                for _ in range(steps):
                    np.copyto(dst, src)

            t_fetch, t_fetch_into = best_of(fetch, reps) / steps, best_of(fetch_into, reps) / steps
            t_copy, t_copy_into = best_of(copy, reps) / steps, best_of(copy_into, reps) / steps
            mb = src.nbytes / 1e6
            print(
                f"batch {gb} x {seq_len + 1} ({mb:.1f} MB): new array: fetch {t_fetch * 1e6:.0f} us vs copy "
                f"{t_copy * 1e6:.0f} us (fetch/copy {t_fetch / t_copy:.2f}); into a buffer: fetch "
                f"{t_fetch_into * 1e6:.0f} us vs copyto {t_copy_into * 1e6:.0f} us (fetch/copy {t_fetch_into / t_copy_into:.2f})"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=61035)
    ap.add_argument("--global-batch", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-blend", action="store_true")
    ap.add_argument("--skip-fetch", action="store_true")
    args = ap.parse_args()
    size = args.steps * args.global_batch
    print(f"load average {os.getloadavg()[0]:.2f}")
    ratios = []
    if not args.skip_blend:
        ratios.append(bench_blend(size, [0.8, 0.2], args.repeats))
        ratios.append(bench_blend(size, [0.5, 0.2, 0.1, 0.1, 0.1], args.repeats))
        ratios.append(bench_blend(size, [0.3, 0.2, 0.1, 0.1, 0.1, 0.1, 0.05, 0.05], args.repeats))
    if not args.skip_fetch:
        bench_fetch(args.repeats)
    if ratios:
        print(f"ratio: {min(ratios):.2f}")  # the smallest blend ratio: Megatron's C++ time over ours


if __name__ == "__main__":
    main()
