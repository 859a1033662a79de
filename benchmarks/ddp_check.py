"""Two ranks of NCCL DDP on two GPUs train to the losses of one process (``gpu_check.sh`` runs it
when the machine has two GPUs; gloo on the CPU is the test suite's ``test_two_process_ddp_equals_one_process``).

    python benchmarks/ddp_check.py --out /tmp/ddp_check [--device cuda] [--steps 8]

The same tiny model, mix (``tests.support:tiny_stream``, global batch 4) and seed, in fp32:
once in one process (one micro-batch of 4 rows), once under ``torchrun --nproc_per_node 2``
(2 rows per rank, gradients all-reduced). Prints each step's two losses and the largest
relative difference; exits 1 when it is above ``--tolerance`` (1e-4: float summation order).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def train_args(out: Path, device: str, steps: int) -> list[str]:
    table = {"mix": "python:tests.support:tiny_stream", "out_dir": str(out), "steps": steps, "micro_batch": 4,
             "model.name": "tiny", "optim.lr": 3e-3, "checkpoint_interval": steps, "device": device,
             "precision": "fp32", "logging.tensorboard": False}
    return ["train", *[a for k, v in table.items() for a in ("--set", f"{k}={json.dumps(v)}")]]


def losses(out: Path) -> list[float]:
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [r["loss"] for r in records if "loss" in r]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="a fresh folder for the two runs")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--tolerance", type=float, default=1e-4)
    args = ap.parse_args()
    out = Path(args.out)
    env = dict(os.environ, PYTHONPATH=str(ROOT), NVIDIA_TF32_OVERRIDE="0")
    env.pop("WORLD_SIZE", None)
    runs = {"one": [sys.executable, "-m", "cli.trainer_cli"],
            "two": [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                    "-m", "cli.trainer_cli"]}
    for name, launcher in runs.items():
        done = subprocess.run([*launcher, *train_args(out / name, args.device, args.steps)], cwd=ROOT, env=env,
                              capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"the {name}-process run failed:\n{done.stderr[-3000:]}")
    a, b = losses(out / "one"), losses(out / "two")
    if len(a) != args.steps or len(b) != args.steps:
        sys.exit(f"expected {args.steps} steps, got {len(a)} and {len(b)}")
    worst = max(abs(x - y) / abs(x) for x, y in zip(a, b))
    for step, (x, y) in enumerate(zip(a, b)):
        print(f"step {step}: 1 process {x:.6f}   2 ranks {y:.6f}")
    print(f"max relative difference: {worst:.2e} (tolerance {args.tolerance:g})")
    sys.exit(0 if worst <= args.tolerance else 1)


if __name__ == "__main__":
    main()
