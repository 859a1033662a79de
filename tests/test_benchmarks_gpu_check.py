"""benchmarks/gpu_check.sh without a GPU: its dry run, its refusals, and the CPU-runnable parts of
its steps (the DDP equality check on gloo, the training benchmark's rows as JSON)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


def run(args: list[str], extra_env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHON=sys.executable, MIXKIT=str(Path(sys.executable).with_name("mixkit")),
               OMP_NUM_THREADS="1", **(extra_env or {}))
    env.pop("WORLD_SIZE", None)
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_dry_run_lists_every_step_and_checks_the_environment(tmp_path):
    proc = run(["bash", str(SCRIPT), "--dry-run", "--out", str(tmp_path / "gc")])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    steps = [ln.split()[1] for ln in lines if ln.strip()[:2] in {f"{i}." for i in range(1, 6)}]
    assert steps == ["env", "parity", "bench", "ddp", "smoke"]
    out = proc.stdout
    assert "tests/trainer/test_accelerated.py -k cuda" in out
    assert f"benchmarks/bench_train.py --device cuda --steps 5 --warmup 2 --json {tmp_path / 'gc'}/bench.json" in out
    assert "benchmarks/ddp_check.py" in out and "[only with 2+ GPUs]" in out
    assert "experiment --config experiments/pythia-70m-smoke.toml" in out
    assert "torch " in out and "transformers " in out
    assert "dry run: environment ready, 5 steps" in out
    assert not (tmp_path / "gc").exists(), "a dry run writes nothing"


@pytest.mark.slow
def test_dry_run_names_what_cannot_be_imported(tmp_path):
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "transformers.py").write_text("raise ImportError('broken on purpose')\n")
    proc = run(["bash", str(SCRIPT), "--dry-run"], {"PYTHONPATH": str(shadow)})
    assert proc.returncode == 1
    assert "cannot use transformers (ImportError: broken on purpose)" in proc.stdout
    assert "the environment is NOT ready" in proc.stderr


@pytest.mark.slow
@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the run without a GPU")
def test_without_a_gpu_the_run_stops_at_the_environment_with_a_summary(tmp_path):
    proc = run(["bash", str(SCRIPT), "--out", str(tmp_path / "gc")])
    assert proc.returncode == 1
    summary = proc.stdout[proc.stdout.index("gpu_check summary"):].splitlines()
    rows = {ln.split()[0]: ln for ln in summary[2:] if ln and not ln.startswith("total")}
    assert list(rows) == ["env", "parity", "bench", "ddp", "smoke"]
    assert "FAILED (1)" in rows["env"] and "no CUDA device" in rows["env"]
    assert all("not run" in rows[s] for s in ("parity", "bench", "ddp", "smoke"))
    assert (tmp_path / "gc" / "env.log").is_file()


def test_unknown_option_is_refused():
    proc = run(["bash", str(SCRIPT), "--fast"])
    assert proc.returncode == 2 and "unknown option: --fast" in proc.stderr


@pytest.mark.slow
def test_ddp_check_passes_on_gloo(tmp_path):
    """The step gpu_check runs on two GPUs, run on the CPU: 2 gloo ranks equal 1 process."""
    proc = run([sys.executable, "benchmarks/ddp_check.py", "--out", str(tmp_path), "--device", "cpu", "--steps", "3"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [ln.split(":")[0] for ln in proc.stdout.splitlines()[:3]] == ["step 0", "step 1", "step 2"]
    assert "max relative difference" in proc.stdout


@pytest.mark.slow
def test_bench_train_rows_as_json(tmp_path):
    """bench_train's --models NAME:SEQ:PREC and --json on a small CPU row (no timing is checked)."""
    out = tmp_path / "rows.json"
    proc = run([sys.executable, "benchmarks/bench_train.py", "--device", "cpu", "--models", "pythia-14m:32:fp32",
                "--batch", "1", "--steps", "1", "--warmup", "0", "--json", str(out)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1].startswith("ratio: ")
    (row,) = json.loads(out.read_text())
    assert (row["model"], row["seq"], row["batch"], row["precision"], row["compile"]) == ("pythia-14m", 32, 1, "fp32", False)
    assert row["max_logit_diff"] < 1e-3 and row["ours_tok_s"] > 0 and row["hf_tok_s"] > 0
    assert "ours_mfu" not in row  # no known peak FLOP/s on a CPU
    bad = run([sys.executable, "benchmarks/bench_train.py", "--models", "pythia-14m:long"])
    assert bad.returncode != 0 and "expected NAME:SEQ" in bad.stderr
