"""One writer per store, mix and run folder: a second one is refused at once; a dead one's lock is taken over.

The contention tests are deterministic: the first writer is held inside its write (reading
from a named pipe, or a mix stream waiting for a gate file) while the second one starts.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mixkit import locks
from mixkit.errors import MixkitError
from tests.support import run_cli, run_cli_fail, tiny_stream, write_jsonl
from trainer.run_dir import read_metrics

REPO = Path(__file__).resolve().parents[2]
MIXKIT = str(Path(sys.executable).with_name("mixkit"))
TRAINER = str(Path(sys.executable).with_name("trainer"))
BUSY = re.compile(r"is being written by process (\d+) \(since \d\d:\d\d:\d\d\); wait or pick another")


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", **extra)
    env.pop("WORLD_SIZE", None)
    return env


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            pytest.fail(f"the first writer ended before taking its lock: {proc.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"{path} did not appear")
        time.sleep(0.01)


def _docs(n: int) -> list[dict[str, str]]:
    return [{"text": f"document {i}: " + "some words " * (3 + i % 11)} for i in range(n)]


def test_two_tokenize_jobs_same_name_one_writes_the_other_is_refused(tmp_path):
    d = tmp_path / "d"
    pipe = tmp_path / "incoming.jsonl"
    os.mkfifo(pipe)
    args = ["tokenize", str(pipe), "--name", "w", "--data-dir", str(d), "--quiet", "--workers", "1", "--encoder", "hf"]
    first = subprocess.Popen([MIXKIT, *args], env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(d / ".w.lock", first)  # the first holds the lock, blocked reading the pipe
        time.sleep(0.2)
        before = {p.name: p.stat().st_mtime_ns for p in d.iterdir()}
        second = subprocess.run([MIXKIT, *args], env=_env(), capture_output=True, text=True, timeout=120)
        assert second.returncode == 1, second.stderr
        assert second.stderr.startswith("Error: store 'w' is being written by process ")
        assert int(BUSY.search(second.stderr).group(1)) == first.pid
        assert len(second.stderr.strip().splitlines()) == 1 and "Traceback" not in second.stderr
        assert {p.name: p.stat().st_mtime_ns for p in d.iterdir()} == before, "the refused job touched nothing"
        with open(pipe, "w") as f:  # now feed the first one its documents
            for doc in _docs(200):
                f.write(json.dumps(doc) + "\n")
        out, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, err
    assert "w: 200 documents" in out
    info = subprocess.run([MIXKIT, "info", "w", "--data-dir", str(d)], env=_env(), capture_output=True, text=True)
    assert info.returncode == 0, info.stderr
    assert sorted(p.name for p in d.iterdir()) == ["w.bin", "w.idx", "w.json"], "the lock goes with its holder"
    # the same documents from a regular file give the same store: the refused job wrote nothing into it
    regular = write_jsonl(tmp_path / "same.jsonl", _docs(200))
    run_cli("tokenize", str(regular), "--name", "v", "--data-dir", str(d), "--quiet", "--encoder", "hf")
    for ext in (".bin", ".idx"):
        assert (d / f"w{ext}").read_bytes() == (d / f"v{ext}").read_bytes()
    manifest = json.loads((d / "w.json").read_text())
    assert manifest["sources"][0]["bytes"] == regular.stat().st_size  # a pipe's bytes are counted as read


class GatedStream:
    """``tiny_stream`` whose first batch waits for the file ``$GATE`` to exist."""

    def __init__(self) -> None:
        self._inner = tiny_stream()
        self._gate = Path(os.environ["GATE"])

    def __getattr__(self, name: str):
        return getattr(self._inner, name)

    def batch(self, step: int, rank: int = 0, world_size: int = 1) -> np.ndarray:
        while not self._gate.exists():
            time.sleep(0.01)
        return self._inner.batch(step, rank, world_size)


def gated_stream() -> GatedStream:
    return GatedStream()


@pytest.mark.slow
def test_two_trainers_one_out_dir_the_second_refuses(tmp_path):
    out = tmp_path / "run"
    gate = tmp_path / "gate"
    args = ["train", "--set", "mix=python:tests.reliability.test_locks:gated_stream", "--set", f"out_dir={out}",
            "--set", "steps=4", "--set", "micro_batch=2", "--set", "checkpoint_interval=2", "--set", "model.name=tiny"]
    env = _env(GATE=str(gate))
    first = subprocess.Popen([TRAINER, *args], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(out / ".lock", first)
        second = subprocess.run([TRAINER, *args, "--set", "mix=python:tests.support:tiny_stream"], cwd=REPO, env=env,
                                capture_output=True, text=True, timeout=300)
        assert second.returncode == 1, second.stderr
        assert f"Error: run folder '{out}' is being written by process {first.pid}" in second.stderr
        assert "wait or pick another out_dir" in second.stderr and "Traceback" not in second.stderr
        gate.touch()
        _, err = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, err[-2000:]
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl") if "loss" in r] == [0, 1, 2, 3]
    assert not (out / ".lock").exists()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path, data_dir):
    stale = {"pid": _dead_pid(), "host": "here", "started": "01:02:03"}
    (data_dir / ".w.lock").write_text(json.dumps(stale))
    src = write_jsonl(tmp_path / "a.jsonl", _docs(5))
    out = run_cli("tokenize", str(src), "--name", "w", "--data-dir", str(data_dir), "--quiet", "--encoder", "hf")
    assert "w: 5 documents" in out
    assert sorted(p.name for p in data_dir.iterdir()) == ["w.bin", "w.idx", "w.json"]
    with locks.write_lock(data_dir / ".x.lock", "store 'x'") as previous:
        assert previous == {}


def test_a_writer_killed_holding_its_lock_leaves_it_to_the_next(tmp_path):
    """The kernel drops the lock of a SIGKILLed holder: the next writer takes it and learns who died."""
    lock = tmp_path / ".w.lock"
    code = f"from mixkit import locks; import time\nwith locks.write_lock({str(lock)!r}, 'store'):\n    print('held', flush=True); time.sleep(60)"
    holder = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=_env(), stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(MixkitError, match=f"store is being written by process {holder.pid} "):
        with locks.write_lock(lock, "store"):
            pass
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with locks.write_lock(lock, "store") as previous:
        assert previous["pid"] == holder.pid
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert not lock.exists()


def test_build_mix_and_merge_refuse_while_the_name_is_written(make_store, data_dir):
    make_store("c4", [np.arange(1, 300, dtype=np.int64) % 97 for _ in range(40)], vocab_size=100)
    mix_args = ["build-mix", "--name", "x", "--base", "c4", "--steps", "2", "--seq-len", "16", "--global-batch", "2",
                "--data-dir", str(data_dir)]
    with locks.write_lock(data_dir / "mixes" / ".x.lock", "mix 'x'"):
        out = run_cli_fail(*mix_args)
        assert f"mix 'x' is being written by process {os.getpid()}" in out
        assert sorted(p.name for p in (data_dir / "mixes").iterdir()) == [".x.lock"]
    run_cli(*mix_args)
    with locks.write_lock(data_dir / ".m-holdout.lock", "store 'm-holdout'"):
        out = run_cli_fail("merge", "m", "c4", "--holdout-docs", "2", "--data-dir", str(data_dir))
        assert "store 'm-holdout' is being written by process" in out
    assert not (data_dir / "m.json").exists()


def test_busy_exit_status_is_1(tmp_path):
    from click.testing import CliRunner

    from cli.mixkit_cli import main

    src = write_jsonl(tmp_path / "a.jsonl", _docs(3))
    with locks.write_lock(tmp_path / "d" / ".w.lock", "store 'w'"):
        result = CliRunner().invoke(main, ["tokenize", str(src), "--name", "w", "--data-dir", str(tmp_path / "d")])
    assert result.exit_code == 1
    assert result.output.strip().count("\n") == 0


def test_remove_orphans_keeps_live_writers_temporaries(tmp_path):
    live = tmp_path / f".w.json.{os.getpid()}.abcd1234.tmp"
    other_live = tmp_path / f".w.json.{os.getppid()}.abcd1234.tmp"
    dead = tmp_path / f".w.idx.partial.{_dead_pid()}.zz_91xq.tmp"
    legacy = tmp_path / ".w.json.k2j4h5g6.tmp"
    old_dir = tmp_path / ".w.old"
    folder = tmp_path / f".w.{_dead_pid()}.q1w2e3r4.tmp"
    unrelated = tmp_path / ".wx.json.1.abcd1234.tmp"
    for p in (live, other_live, dead, legacy, unrelated):
        p.write_text("x")
    for p in (old_dir, folder):
        p.mkdir()
        (p / "inner").write_text("x")
    removed = locks.remove_orphans(tmp_path, "w")
    assert sorted(removed) == sorted([live, dead, legacy, old_dir, folder])  # our own pid: we hold the lock
    assert other_live.exists() and unrelated.exists()
    assert locks.temporary_owner(dead) is not None and locks.temporary_owner(legacy) is None


def test_a_lock_that_cannot_be_created_is_one_line(tmp_path):
    blocker = tmp_path / "out"
    blocker.write_text("a file where the run folder should be")
    with pytest.raises(MixkitError, match=f"cannot write run folder 'x': cannot create its lock file .* \\({blocker} is a file, not a folder\\)"):
        with locks.write_lock(blocker / ".lock", "run folder 'x'"):
            pass


def test_a_study_folder_has_one_runner(tmp_path):
    from lab.config import load_study
    from lab.runner import run_study
    from tests.support import ROOT

    cfg = load_study(ROOT / "experiments" / "quickstart.toml", kind="experiment")
    out = tmp_path / "study"
    with locks.write_lock(out / ".lock", f"study folder '{out}'"):
        with pytest.raises(MixkitError, match=f"study folder '{out}' is being written by process {os.getpid()} .*pick another --out"):
            run_study(cfg, out, log=lambda *_: None)
        assert sorted(p.name for p in out.iterdir()) == [".lock"], "the refused runner wrote nothing"
