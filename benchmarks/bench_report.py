"""Benchmark: writing the reports of a paper-sized experiment.

Builds, in a temporary directory, an experiment as ``mixkit experiment`` lays it out: the
paper's seven variants (base with two seeds, code20, math12, instructions5, qa20, code100,
math100), four SFT tasks, a 7 x 7 distance matrix, and per run ``--steps`` pretrain/midtrain
metric lines (the base run holds the shared pretraining prefix) plus ``--sft-steps`` lines per
SFT task. Times, best of ``--repeats``:

- ``lab.report.write_report`` (report.md and its four PNGs), and
- ``trainer report`` over the eight runs (``lab.run_report.write_report``: table, CSV, PNG).

Both are dominated by matplotlib; the numbers say whether a report is cheap enough to be
rewritten after every finished run.

    python benchmarks/bench_report.py [--steps 6000] [--sft-steps 500] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from timing import best_of  # benchmarks/ is on sys.path when run as a script

from lab import run_report as trainer_report
from lab.report import write_report

TASKS = ["gsm8k", "code", "instructions", "qa"]
VARIANTS = {"base": "c4:1", "code20": "c4:0.8,code:0.2", "math12": "c4:0.88,math:0.12",
            "instructions5": "c4:0.95,instructions:0.05", "qa20": "c4:0.8,qa:0.2", "code100": "code:1",
            "math100": "math:1"}


def jsonl(path: Path, records) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def make_run(d: Path, name: str, rng: np.random.Generator, steps: int, sft_steps: int, pretrain: bool) -> None:
    start = int(steps * 0.6)
    stages = []
    if pretrain:
        stages.append({"name": "pretrain", "kind": "pretrain", "dir": "pretrain", "start_step": 0, "end_step": start})
    stages.append({"name": "midtrain", "kind": "midtrain", "dir": "midtrain", "start_step": start, "end_step": steps})
    for s in stages:
        jsonl(d / s["dir"] / "metrics.jsonl",
              ({"step": k, "loss": 8.0 / (1 + k / 500) + 0.05 * rng.standard_normal(), "lr": 1e-3}
               for k in range(s["start_step"], s["end_step"])))
    sft = {}
    for t in TASKS:
        val, held = 2.0 + 0.1 * rng.standard_normal(), 3.5 + 0.05 * rng.standard_normal()
        jsonl(d / f"sft-{t}" / "metrics.jsonl",
              ({"stage": f"sft:{t}", "step": k, "loss": val + 1.0 / (1 + k)} for k in range(sft_steps)))
        sft[t] = {"val_loss": val, "heldout_loss": held, "steps": sft_steps, "dir": f"sft-{t}"}
    (d / "results.json").write_text(json.dumps({"run": name, "stages": stages, "sft": sft,
                                                "evals": {"midtrain": {"heldout_loss": 3.4}}}))


def make_experiment(root: Path, steps: int, sft_steps: int) -> list[Path]:
    rng = np.random.default_rng(0)
    variants, run_dirs = {}, []
    for v, mix in VARIANTS.items():
        seeds = ["1234", "1235"] if v == "base" else ["1234"]
        variants[v] = {"mixture": mix, "runs": {s: f"runs/{v}-s{s}" for s in seeds}}
        for s in seeds:
            make_run(root / "runs" / f"{v}-s{s}", f"{v}-s{s}", rng, steps, sft_steps, pretrain=(v, s) == ("base", "1234"))
            run_dirs.append(root / "runs" / f"{v}-s{s}")
    labels = ["c4", "code", "math", "instructions", "qa", "gsm8k", "humaneval"]
    m = rng.random((7, 7))
    m = (m + m.T) / 2
    np.fill_diagonal(m, 0)
    spec = {"name": "bench", "metric": "js", "tasks": TASKS, "baseline": "base",
            "distance": {"labels": labels, "matrix": m.tolist()}, "variants": variants,
            "proximity": {v: {t: float(rng.normal(0, 0.05)) for t in TASKS} for v in VARIANTS},
            "task_targets": {t: t for t in TASKS}, "command": "mixkit experiment --config bench.toml",
            "scale": {"model": "bench", "total_steps": steps}}
    (root / "experiment.json").write_text(json.dumps(spec))
    return run_dirs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--sft-steps", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        runs = make_experiment(root, args.steps, args.sft_steps)
        write_report(root)  # warm-up: matplotlib import and font cache
        t_exp = best_of(lambda: write_report(root), args.repeats)
        t_run = best_of(lambda: trainer_report.write_report(runs, "base-s1234", root / "trainer-report"), args.repeats)
    print(f"experiment report.md + 4 PNGs ({len(runs)} runs, {len(TASKS)} tasks, {args.steps} steps): {t_exp:.2f} s")
    print(f"trainer report table + CSV + PNG ({len(runs)} runs):                       {t_run:.2f} s")


if __name__ == "__main__":
    main()
