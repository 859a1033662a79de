"""Resources: a full disk, a huge --steps, as one-line errors before (or instead of) the damage.

A full disk is simulated two ways: the free-space probe made to report a small figure
(``mixkit.resources.free_bytes``), and a real write limit in a subprocess (``RLIMIT_FSIZE``:
writes past it fail with ``EFBIG``, which CPython's ignored ``SIGXFSZ`` leaves to the
caller, as ``ENOSPC`` is on a full disk).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cli.mixkit_cli import main as mixkit_main
from mixkit import resources
from mixkit.errors import MixkitError
from mixkit.mix.build import array_bytes, sample_bounds
from mixkit.mix.plan import MixPlan, Phase
from mixkit.store import StoreWriter, TokenStore, write_store
from tests.reliability.test_damage import one_line_error
from tests.support import random_docs

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def stores(data_dir):
    rng = np.random.default_rng(0)
    write_store(data_dir / "web", random_docs(rng, 200, 500, max_len=80), vocab_size=500)
    write_store(data_dir / "math", random_docs(rng, 200, 500, max_len=80), vocab_size=500)
    return data_dir


def build_mix_args(data_dir: Path, *extra: str) -> list[str]:
    return ["build-mix", "--name", "m", "--base", "web", "--add", "math", "--ratio", "0.3", "--seq-len", "16",
            "--global-batch", "4", "--data-dir", str(data_dir), *extra]


def leftovers(data_dir: Path) -> list[str]:
    mixes = data_dir / "mixes"
    return sorted(p.name for p in mixes.iterdir()) if mixes.exists() else []


def test_too_little_free_space_is_refused_before_writing(stores, monkeypatch):
    monkeypatch.setattr(resources, "free_bytes", lambda path: 1000)
    result = CliRunner().invoke(mixkit_main, build_mix_args(stores, "--steps", "50"))
    assert result.exit_code != 0
    line = one_line_error(result.output)
    assert "not enough disk space for the arrays of mix 'm': needs" in line and "1000 B free in" in line, line
    assert leftovers(stores) == []


def test_ensure_free_space_names_the_need_and_the_free_space(tmp_path, monkeypatch):
    monkeypatch.setattr(resources, "free_bytes", lambda path: 3 * 2**30)
    resources.ensure_free_space(tmp_path / "not" / "yet", 2**30, "a checkpoint")
    with pytest.raises(MixkitError, match=r"not enough disk space for a checkpoint: needs 4\.0 GiB, 3\.0 GiB free in .*"):
        resources.ensure_free_space(tmp_path / "not" / "yet", 4 * 2**30, "a checkpoint")


def test_huge_steps_are_refused_before_anything_is_allocated(stores, monkeypatch):
    """--steps 1e9 used to fail allocating 1.86 TiB before the repeat check; now the plan's bounds decide."""
    result = CliRunner().invoke(mixkit_main, build_mix_args(stores, "--steps", "1000000000"))
    line = one_line_error(result.output)
    assert "would be read" in line and "at least" in line and "--allow-repeat" in line, line
    # With --allow-repeat the repeat is accepted, and the arrays' size (over 40 GB) meets the free space
    # (a fixed figure, so that no machine starts preallocating them).
    monkeypatch.setattr(resources, "free_bytes", lambda path: 20 * 2**30)
    result = CliRunner().invoke(mixkit_main, build_mix_args(stores, "--steps", "1000000000", "--allow-repeat"))
    line = one_line_error(result.output)
    assert "not enough disk space for the arrays of mix 'm': needs" in line and "20.0 GiB free in" in line, line
    assert leftovers(stores) == []


def test_sample_bounds_hold_the_blend(stores):
    """The bounds the pre-allocation checks use contain what the blend really draws."""
    from mixkit.mix.build import blend_plan

    for weights, steps in (({"web": 0.7, "math": 0.3}, 97), ({"web": 0.5, "math": 0.5}, 8), ({"web": 0.999, "math": 0.001}, 333)):
        plan = MixPlan([Phase(0, {"web": 1.0}), Phase(5, weights)], steps=steps, seq_len=16, global_batch=4)
        names = plan.datasets
        low, high = sample_bounds(plan, names)
        _, _, phases = blend_plan(plan, names)
        used = np.array([sum(p["samples"].get(n, 0) for p in phases) for n in names])
        assert (low <= used).all() and (used <= high).all(), (low, used, high)
        stores_ = [TokenStore.open(n, stores) for n in names]
        assert array_bytes(plan, stores_, [1, 1], [10, 10]) >= steps * 4 * 10


RUN_UNDER_LIMIT = """
import resource, sys
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
from cli.mixkit_cli import main
sys.argv = ["mixkit", *sys.argv[2:]]
main()
"""


def run_under_file_limit(limit: int, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-c", RUN_UNDER_LIMIT, str(limit), *args], env=env,
                          capture_output=True, text=True, timeout=300)


def test_disk_full_during_build_mix_is_one_line_and_leaves_nothing(stores):
    """The arrays are preallocated, so the limit is met before any write through the memory map:
    an error line, not ``Bus error``; the temporary folder is removed."""
    r = run_under_file_limit(64 * 1024, *build_mix_args(stores, "--steps", "20000", "--allow-repeat"))
    assert r.returncode not in (0, -7, 135), (r.returncode, r.stderr)  # -7 / 135: SIGBUS
    line = one_line_error(r.stdout + r.stderr)
    assert "writing mix array" in line and "the file size limit was reached" in line, line
    assert leftovers(stores) == []


WRITE_UNDER_LIMIT = """
import resource, sys
import numpy as np
from mixkit.errors import MixkitError
from mixkit.store import StoreWriter
resource.setrlimit(resource.RLIMIT_FSIZE, (32 * 1024, 32 * 1024))
w = StoreWriter(sys.argv[1], np.uint16)
try:
    for _ in range(100):
        w.add(np.ones(1000, dtype=np.uint16))
    w.flush()
except MixkitError as e:
    print("Error:", e.message)
    sys.exit(1)
"""


def test_disk_full_while_writing_a_store_is_one_line(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-c", WRITE_UNDER_LIMIT, str(tmp_path / "s")], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stderr
    line = one_line_error(r.stdout + r.stderr)
    assert "writing store 's' to" in line and "s.bin.partial" in line and "file size limit" in line, line


def test_the_index_write_checks_free_space(tmp_path, monkeypatch):
    w = StoreWriter(tmp_path / "s", np.uint16)
    w.add(np.ones(10, dtype=np.uint16))
    monkeypatch.setattr(resources, "free_bytes", lambda path: 10)
    with pytest.raises(MixkitError, match=r"not enough disk space for the index of store 's': needs 62 B, 10 B free"):
        w.finish({"tokenizer": {"sha256": "x", "vocab_size": 10}})
