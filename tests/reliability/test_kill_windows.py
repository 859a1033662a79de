"""A kill in every publish window: the same command then finishes cleanly, with the same bytes.

Every artifact appears by ``os.replace`` (atomic files, the store's ``.bin``/``.idx``, the
set-aside output of a holdout split, mix and checkpoint folders). A child process runs the
command with ``os.replace`` wrapped so that it SIGKILLs itself just before the k-th call
(and, once, just after the last): that visits each window between two renames. The command
is then run again unchanged; it must succeed (after the last rename: finding its outputs already
built), give outputs byte-identical to an uninterrupted run and leave no temporaries, partial
files, checkpoints of its own or locks behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mixkit.samples import SAMPLES_DIR
from tests.support import run_cli_fail, write_jsonl
from trainer.run_dir import read_metrics

REPO = Path(__file__).resolve().parents[2]

# Runs a CLI (argv[1]: "mixkit" or "trainer") with os.replace wrapped: KILL_AT=k kills the
# process before the k-th call (KILL_WHEN=after: after it); KILL_AT=0 only counts the calls
# and writes the count to REPLACE_COUNT.
CHILD = r"""
import os, signal, sys
kill_at, when = int(os.environ["KILL_AT"]), os.environ.get("KILL_WHEN", "before")
calls = [0]
real_replace = os.replace

def replace(src, dst, *args, **kwargs):
    calls[0] += 1
    if calls[0] == kill_at and when == "before":
        os.kill(os.getpid(), signal.SIGKILL)
    result = real_replace(src, dst, *args, **kwargs)
    if calls[0] == kill_at and when == "after":
        os.kill(os.getpid(), signal.SIGKILL)
    return result

os.replace = replace
if kill_at == 0:
    import atexit
    atexit.register(lambda: open(os.environ["REPLACE_COUNT"], "w").write(str(calls[0])))
tool = sys.argv[1]
sys.argv = [tool, *sys.argv[2:]]
if tool == "mixkit":
    from cli.mixkit_cli import main
else:
    from cli.trainer_cli import main
main()
"""

LEFTOVER_SUFFIXES = (".tmp", ".partial", ".old", ".lock", ".tokenize-state.json")


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", MIXKIT_DATA_DIR=str(tmp_path / "unused"),
               REPLACE_COUNT=str(tmp_path / "replace-count"), **extra)
    env.pop("WORLD_SIZE", None)
    return env


def run_child(tmp_path: Path, tool: str, args: list[str], kill_at: int = 0, when: str = "before") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CHILD, tool, *args], cwd=REPO, capture_output=True, text=True,
                          env=_env(tmp_path, KILL_AT=str(kill_at), KILL_WHEN=when), timeout=300)


def count_replaces(tmp_path: Path, tool: str, args: list[str]) -> int:
    done = run_child(tmp_path, tool, args)
    assert done.returncode == 0, done.stderr[-2000:]
    return int((tmp_path / "replace-count").read_text())


def leftovers(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.name.endswith(LEFTOVER_SUFFIXES))


def store_bytes(folder: Path, names: list[str]) -> dict[str, bytes]:
    return {f"{n}{ext}": (folder / f"{n}{ext}").read_bytes() for n in names for ext in (".bin", ".idx")}


def kill_everywhere(tmp_path: Path, tool: str, make_args, check, rerun_args=None) -> int:
    """Kill the command before each of its renames and after the last; rerun it each time and
    ``check(folder)``. ``make_args(folder)`` gives the command for a fresh folder (made by
    ``prepare`` there when needed). Returns the number of windows visited."""
    reference = tmp_path / "reference"
    n = count_replaces(tmp_path, tool, make_args(reference))
    assert n >= 2
    windows = [(k, "before") for k in range(1, n + 1)] + [(n, "after")]
    for k, when in windows:
        folder = tmp_path / f"kill-{when}-{k}"
        killed = run_child(tmp_path, tool, make_args(folder), kill_at=k, when=when)
        assert killed.returncode == -signal.SIGKILL, f"window {when} {k}: {killed.stderr[-2000:]}"
        again = run_child(tmp_path, tool, (rerun_args or make_args)(folder))
        assert "Traceback" not in again.stderr
        # Killed after its last rename, the command had published everything: the rerun finds
        # its outputs built from the same inputs and succeeds, after removing the leftovers.
        assert again.returncode == 0, f"rerun after a kill {when} rename {k}: {again.stderr[-2000:]}"
        check(reference, folder)
        assert leftovers(folder) == [], f"window {when} {k}"
    return len(windows)


def _corpus(path: Path, n_docs: int, seed: int = 0) -> Path:
    return write_jsonl(path, [{"text": f"document {seed}-{i} " + "words in a row " * (5 + (i * 7) % 40)} for i in range(n_docs)])


@pytest.mark.slow
@pytest.mark.parametrize("holdout", [0, 7])
def test_tokenize_every_window(tmp_path, holdout):
    """Several checkpoints, the finish checkpoint, the holdout split (set aside, two stores
    published) and the final renames: each one killed, then the same command again."""
    sources = [_corpus(tmp_path / "a.jsonl", 30, 0), _corpus(tmp_path / "b.jsonl", 20, 1)]

    def args(folder: Path) -> list[str]:
        extra = ["--holdout-docs", str(holdout)] if holdout else []
        return ["tokenize", *map(str, sources), "--name", "w", "--data-dir", str(folder), "--quiet", "--workers", "1", "--encoder", "hf",
                "--batch-bytes", "8000", "--checkpoint-seconds", "0", *extra]

    names = ["w", "w-holdout"] if holdout else ["w"]

    def check(reference: Path, folder: Path) -> None:
        assert store_bytes(folder, names) == store_bytes(reference, names)
        for n in names:
            ref, got = (json.loads((d / f"{n}.json").read_text()) for d in (reference, folder))
            assert got["sources"] == ref["sources"] and got["fingerprint"] == ref["fingerprint"]

    kill_everywhere(tmp_path, "mixkit", args, check)


@pytest.mark.slow
def test_tokenize_overwrite_after_a_kill_in_the_holdout_split(tmp_path):
    """The state a kill leaves inside the split must not block ``--overwrite`` either."""
    src = _corpus(tmp_path / "a.jsonl", 50)
    d = tmp_path / "d"
    args = ["tokenize", str(src), "--name", "w", "--data-dir", str(d), "--quiet", "--workers", "1", "--encoder", "hf", "--holdout-docs", "5"]
    assert run_child(tmp_path, "mixkit", args).returncode == 0
    reference = store_bytes(d, ["w", "w-holdout"])
    n = count_replaces(tmp_path, "mixkit", [*args, "--overwrite"])  # replaces the store by the same one
    for k in range(1, n + 1):
        killed = run_child(tmp_path, "mixkit", [*args, "--overwrite"], kill_at=k)
        assert killed.returncode == -signal.SIGKILL
        again = run_child(tmp_path, "mixkit", [*args, "--overwrite"])
        assert again.returncode == 0, f"--overwrite after a kill before rename {k}: {again.stderr[-2000:]}"
        assert store_bytes(d, ["w", "w-holdout"]) == reference
        assert leftovers(d) == []


@pytest.mark.slow
def test_merge_with_holdout_every_window(tmp_path):
    def args(folder: Path) -> list[str]:
        if not (folder / "p1.json").exists():
            for i, name in enumerate(("p0", "p1")):
                src = _corpus(tmp_path / f"{name}.jsonl", 30, i)
                made = run_child(tmp_path, "mixkit", ["tokenize", str(src), "--name", name, "--data-dir", str(folder), "--quiet",
                                                        "--encoder", "hf"])
                assert made.returncode == 0, made.stderr[-2000:]
            _age(folder)
        return ["merge", "m", "p0", "p1", "--data-dir", str(folder), "--holdout-docs", "6"]

    def check(reference: Path, folder: Path) -> None:
        assert store_bytes(folder, ["m", "m-holdout"]) == store_bytes(reference, ["m", "m-holdout"])

    kill_everywhere(tmp_path, "mixkit", args, check)


def _age(folder: Path) -> None:
    """Date the files of ``folder`` a minute back. Files younger than 2 s get no verified stamp
    (``mixkit.integrity``), so whether a run writes one (one more rename) would depend on timing;
    aged, the first run that opens a store stamps it, and every run renames the same files in
    the same order."""
    aged = time.time() - 60
    for p in folder.iterdir():
        os.utime(p, (aged, aged))


def _mix_files(folder: Path) -> dict[str, bytes]:
    mix = folder / "mixes" / "x"
    return {p.name: p.read_bytes() for p in sorted(mix.iterdir()) if p.suffix == ".npy"}


@pytest.mark.slow
def test_build_mix_every_window(tmp_path):
    def args(folder: Path) -> list[str]:
        if not (folder / "c4.json").exists():
            made = run_child(tmp_path, "mixkit", ["tokenize", str(SAMPLES_DIR / "c4.jsonl.gz"), "--name", "c4",
                                                  "--data-dir", str(folder), "--quiet", "--max-docs", "300",
                                                  "--encoder", "hf"])
            assert made.returncode == 0, made.stderr[-2000:]
            _age(folder)
        return ["build-mix", "--name", "x", "--base", "c4", "--steps", "4", "--seq-len", "32", "--global-batch", "4",
                "--data-dir", str(folder)]

    def check(reference: Path, folder: Path) -> None:
        assert _mix_files(folder) == _mix_files(reference) != {}
        assert json.loads((folder / "mixes" / "x" / "mix.json").read_text())["files"] == \
            json.loads((reference / "mixes" / "x" / "mix.json").read_text())["files"]

    kill_everywhere(tmp_path, "mixkit", args, check)


@pytest.mark.slow
def test_build_mix_overwrite_window_leaves_no_old_copy(tmp_path):
    """``--overwrite`` sets the old mix aside before renaming the new one in: a kill there leaves
    neither under the name; the same command builds it again and removes the old copy."""
    d = tmp_path / "d"
    made = run_child(tmp_path, "mixkit", ["tokenize", str(SAMPLES_DIR / "c4.jsonl.gz"), "--name", "c4",
                                          "--data-dir", str(d), "--quiet", "--max-docs", "300",
                                          "--encoder", "hf"])
    assert made.returncode == 0
    _age(d)
    args = ["build-mix", "--name", "x", "--base", "c4", "--steps", "4", "--seq-len", "32", "--global-batch", "4", "--data-dir", str(d)]
    assert run_child(tmp_path, "mixkit", args).returncode == 0
    reference = _mix_files(d)
    n = count_replaces(tmp_path, "mixkit", [*args, "--overwrite"])
    killed = run_child(tmp_path, "mixkit", [*args, "--overwrite"], kill_at=n)  # the old mix is set aside
    assert killed.returncode == -signal.SIGKILL
    assert [p.name for p in (d / "mixes").iterdir() if p.name.startswith(".x.")], "the kill left a temporary"
    again = run_child(tmp_path, "mixkit", [*args, "--overwrite"])
    assert again.returncode == 0, again.stderr[-2000:]
    assert _mix_files(d) == reference
    assert leftovers(d) == [] and sorted(p.name for p in (d / "mixes").iterdir()) == ["x"]


@pytest.mark.slow
def test_checkpoint_save_every_window(tmp_path):
    """Kills around every checkpoint save (and the metrics and plot files); ``--resume`` then
    finishes with the losses of an uninterrupted run and no temporary checkpoint folder."""

    def args(folder: Path) -> list[str]:
        return ["train", "--set", "mix=python:tests.support:tiny_stream", "--set", f"out_dir={folder}",
                "--set", "steps=4", "--set", "micro_batch=2", "--set", "checkpoint_interval=2", "--set", "keep_last=2",
                "--set", "model.name=tiny"]

    def losses(folder: Path) -> list[float]:
        return [r["loss"] for r in read_metrics(folder / "metrics.jsonl") if "loss" in r]

    def check(reference: Path, folder: Path) -> None:
        assert losses(folder) == losses(reference) and len(losses(folder)) == 4
        assert sorted(p.name for p in (folder / "checkpoints").iterdir()) == ["step_00000004"]

    kill_everywhere(tmp_path, "trainer", args, check, rerun_args=lambda folder: [*args(folder), "--resume"])


def test_holdout_at_least_the_documents_fails_cleanly(tmp_path):
    src = _corpus(tmp_path / "a.jsonl", 5)
    d = tmp_path / "d"
    out = run_cli_fail("tokenize", str(src), "--name", "w", "--data-dir", str(d), "--quiet", "--holdout-docs", "5")
    assert "--holdout-docs 5 leaves no training documents (the sources have 5)" in out
    assert "Traceback" not in out and len(out.strip().splitlines()) == 1
    assert sorted(p.name for p in d.iterdir()) == [], "no copy of the corpus, no checkpoint, no lock"


def test_merge_bad_holdout_leaves_nothing(tmp_path, make_store, data_dir):
    import numpy as np

    make_store("p", [np.arange(5, dtype=np.int64) + i for i in range(4)])
    before = sorted(p.name for p in data_dir.iterdir())
    out = run_cli_fail("merge", "m", "p", "--holdout-docs", "4", "--data-dir", str(data_dir))
    assert "leaves no training documents" in out
    assert sorted(p.name for p in data_dir.iterdir()) == before


@pytest.mark.slow
def test_stale_partial_files_of_a_killed_run_are_removed(tmp_path):
    """A checkpoint that does not match the partial files (here: files cut short) is not an error:
    the job starts over, and nothing of the old run is left."""
    src = _corpus(tmp_path / "a.jsonl", 40)
    d = tmp_path / "d"

    def args_for(folder: Path) -> list[str]:
        return ["tokenize", str(src), "--name", "w", "--data-dir", str(folder), "--quiet", "--workers", "1", "--encoder", "hf",
                "--batch-bytes", "3000", "--checkpoint-seconds", "0"]

    assert count_replaces(tmp_path, "mixkit", args_for(tmp_path / "count")) > 4
    args = args_for(d)
    assert run_child(tmp_path, "mixkit", args, kill_at=4).returncode == -signal.SIGKILL
    state = json.loads((d / "w.tokenize-state.json").read_text())
    with open(d / "w.bin.partial", "r+b") as f:
        f.truncate(state["bin_bytes"] // 2)
    (d / ".w.json.99999999.abcdefgh.tmp").write_text("an atomic write a dead process began")
    again = run_child(tmp_path, "mixkit", args)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "[resumed]" not in again.stdout
    assert sorted(p.name for p in d.iterdir()) == ["w.bin", "w.idx", "w.json"]
