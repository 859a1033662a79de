"""The run directory: every file and folder of a training run is named, written and read here.

Layout of a run directory ``RUN/`` (``trainer train`` with ``[[stages]]``)::

    RUN/run.json                    the run config as given (the TOML table, overrides applied)
    RUN/results.json                what the stages measured (below); rewritten after every stage and task
    RUN/<stage>/metrics.jsonl       one JSON object per line: training steps and evaluations of the stage
    RUN/<stage>/loss.png            its loss curve
    RUN/<stage>/tensorboard/        its TensorBoard event files (``trainer.train_log``)
    RUN/<stage>/checkpoints/step_00000120/   a checkpoint (layout in ``trainer.checkpoint``)
    RUN/sft-<task>/metrics.jsonl    the SFT steps and evaluations of one task
    RUN/sft-<task>/tensorboard/     their TensorBoard event files
    RUN/sft-<task>/model.safetensors   the finetuned weights (our parameter names, float32;
                                    no optimizer state): what ``trainer export --sft`` exports
    RUN/.lock, RUN/<stage>/.lock    held by the one process writing the folder (``hold_run_dir``)

A single-mix ``trainer train`` writes ``metrics.jsonl``, ``loss.png``, ``tensorboard/`` and ``checkpoints/``
straight into its ``out_dir``: that folder is laid out like one stage folder.

``results.json``::

    {"run": NAME,
     "heldout": {"store": NAME, "documents": N} | null,
     "stages": [{"name", "kind", "dir", "mix", "start_step", "end_step", "final_loss",
                 "branched_from"?: a checkpoint path relative to RUN}],
     "evals": {STAGE: {"key", "step", "heldout_loss"?, "task_loss": {TASK: loss}}},
     "sft": {TASK: {"key", "dir", "weights", "val_loss", "heldout_loss"?, "steps",
                    "train_examples", "val_examples", "truncated": {...}}}}

``key`` is the ``content_key`` of everything an entry was computed from: a rerun that
finds the same key skips the work. Paths inside results are relative to ``RUN`` so a run
directory can move.

``metrics.jsonl`` is appended and flushed line by line (a killed run may leave a partial
last line); ``read_metrics`` skips partial or malformed lines. Every other file is written
atomically (``mixkit.atomic``): a reader sees the old file or the whole new one.

This module imports neither torch nor matplotlib: the study layer reads results through
it, and reading results must stay cheap.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mixkit import atomic, locks
from mixkit.errors import MixkitError

LOCK_FILE = ".lock"
RESULTS_FILE = "results.json"
METRICS_FILE = "metrics.jsonl"
RUN_CONFIG_FILE = "run.json"
LOSS_PLOT_FILE = "loss.png"
CHECKPOINTS_DIR = "checkpoints"
TENSORBOARD_DIR = "tensorboard"
SFT_DIR_PREFIX = "sft-"
SFT_WEIGHTS_FILE = "model.safetensors"

PathLike = str | os.PathLike


# -- names ------------------------------------------------------------------------------------------


def results_path(path: PathLike) -> Path:
    """``path/results.json`` for a run directory, or ``path`` itself when it names the file."""
    p = Path(path)
    return p if p.name == RESULTS_FILE and not p.is_dir() else p / RESULTS_FILE


def run_config_path(run_dir: PathLike) -> Path:
    return Path(run_dir) / RUN_CONFIG_FILE


def metrics_path(folder: PathLike) -> Path:
    """The ``metrics.jsonl`` of a stage folder, an SFT folder or a single-mix run's ``out_dir``."""
    return Path(folder) / METRICS_FILE


def loss_plot_path(folder: PathLike) -> Path:
    return Path(folder) / LOSS_PLOT_FILE


def tensorboard_dir(folder: PathLike) -> Path:
    """The TensorBoard event files of a stage folder, an SFT folder or a single-mix run's ``out_dir``."""
    return Path(folder) / TENSORBOARD_DIR


def stage_dir(run_dir: PathLike, stage: str) -> Path:
    """``RUN/<stage>/``: the output folder of a pretrain or midtrain stage."""
    return Path(run_dir) / stage


def sft_dir(run_dir: PathLike, task: str, results: dict[str, Any] | None = None) -> Path:
    """``RUN/sft-<task>/``, or the folder ``results`` recorded for the task when it recorded one."""
    entry = ((results or {}).get("sft") or {}).get(task)
    recorded = entry.get("dir") if isinstance(entry, dict) else None
    return Path(run_dir) / (str(recorded) if recorded else f"{SFT_DIR_PREFIX}{task}")


def sft_weights_path(folder: PathLike) -> Path:
    """The finetuned weights in an SFT folder (``RUN/sft-<task>/model.safetensors``)."""
    return Path(folder) / SFT_WEIGHTS_FILE


def checkpoints_dir(out_dir: PathLike) -> Path:
    """``<stage folder>/checkpoints/``."""
    return Path(out_dir) / CHECKPOINTS_DIR


def step_dir(out_dir: PathLike, step: int) -> Path:
    """The checkpoint of ``step`` in a stage folder: ``checkpoints/step_{step:08d}``."""
    return checkpoints_dir(out_dir) / f"step_{step:08d}"


def checkpoint_stage_dir(checkpoint: PathLike) -> Path:
    """The stage folder a checkpoint belongs to (``X`` of ``X/checkpoints/step_N``)."""
    p = Path(checkpoint)
    return p.parent.parent if p.parent.name == CHECKPOINTS_DIR else p.parent


# -- writing ----------------------------------------------------------------------------------------


def refuse_file_out_dir(folder: PathLike) -> None:
    """An ``out_dir`` that names a file is refused before anything else is tried in it."""
    if Path(folder).exists() and not Path(folder).is_dir():
        raise MixkitError(f"out_dir {folder} is a file, not a folder")


@contextlib.contextmanager
def hold_run_dir(folder: PathLike, writer: bool = True) -> Iterator[None]:
    """For a ``with`` block, hold a run folder for writing: its write lock (``RUN/.lock``,
    ``mixkit.locks``; a second ``trainer train`` into the same folder is refused at once, naming
    the process writing it), then the temporaries of killed writers removed. ``writer`` False
    (the ranks that do not write the folder): nothing."""
    if not writer:
        yield
        return
    with locks.write_lock(Path(folder) / LOCK_FILE, f"run folder '{folder}'", "wait or pick another out_dir"):
        remove_interrupted_writes(folder)
        yield


def remove_interrupted_writes(out_dir: PathLike) -> list[Path]:
    """Remove the temporaries that killed writers left in a run or stage folder: atomic files
    (``.metrics.jsonl.PID.*.tmp``, ...) and checkpoint folders (``checkpoints/.step_*.PID.*.tmp``,
    ``.step_*.old``) whose process is dead; call it holding the folder's lock."""
    return locks.remove_orphans(out_dir, "*", pattern=True) + locks.remove_orphans(checkpoints_dir(out_dir), "step_*", pattern=True)


def content_key(obj: Any) -> str:
    """The key of a results entry: the first 16 hex digits of sha256 over ``obj`` as canonical JSON
    (sorted keys, ``str()`` of what JSON cannot hold). Equal inputs give equal keys, so a rerun
    recognises a stage evaluation or an SFT task it has already done."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def new_results(run: str) -> dict[str, Any]:
    """The ``results.json`` of a run that has measured nothing yet."""
    return {"run": run, "stages": [], "heldout": None, "evals": {}, "sft": {}}


def resume_results(run_dir: PathLike, run: str) -> dict[str, Any]:
    """The results so far of run ``run`` in ``run_dir``; fresh ones when there are none or they
    belong to another run."""
    path = results_path(run_dir)
    if path.exists():
        results = json.loads(path.read_text())
        if results.get("run") == run:
            return results
    return new_results(run)


def write_results(run_dir: PathLike, results: dict[str, Any]) -> None:
    atomic.write_json(results_path(run_dir), results)


def write_run_config(run_dir: PathLike, table: dict[str, Any]) -> None:
    """``run.json``: the run's config table (sorted keys; ``str()`` of non-JSON values), atomically."""
    atomic.write_text(run_config_path(run_dir), json.dumps(table, indent=2, sort_keys=True, default=str) + "\n")


class MetricsLog:
    """Appends records to a ``metrics.jsonl``, one flushed line each.

    Opening it with ``start_step`` (a resumed run) first rewrites the file atomically with
    only the records of steps before ``start_step``, so the log of a resumed run equals that
    of an uninterrupted one; ``start_step = 0`` starts an empty log.
    """

    def __init__(self, path: PathLike, start_step: int = 0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept = [r for r in read_metrics(self.path) if _before(r, start_step)] if start_step else []
        atomic.write_text(self.path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in kept))
        self._f = open(self.path, "a")

    def write(self, record: dict[str, Any]) -> None:
        self._f.write(json.dumps(record, sort_keys=True) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def _before(record: dict[str, Any], step: int) -> bool:
    s = record.get("step")
    return isinstance(s, int) and not isinstance(s, bool) and s < step


# -- reading ----------------------------------------------------------------------------------------


def read_json_object(f: Path) -> dict[str, Any]:
    """A JSON file holding one object; MixkitError (one line) when it is not valid JSON or not an object."""
    try:
        obj = json.loads(f.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise MixkitError(f"{f}: not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise MixkitError(f"{f}: expected a JSON object, got {type(obj).__name__}")
    return obj


def read_results(path: PathLike) -> dict[str, Any]:
    """The ``results.json`` of a run directory (or the file itself); MixkitError when absent or malformed."""
    f = results_path(path)
    if not f.parent.exists():
        raise MixkitError(f"{f.parent}: no such run directory")
    if not f.is_file():
        raise MixkitError(f"{f.parent}: no {RESULTS_FILE} (not a run directory, or the run has not finished a stage)")
    obj = read_json_object(f)
    for key in ("sft", "evals"):
        if obj.get(key) is not None and not isinstance(obj[key], dict):
            raise MixkitError(f"{f}: '{key}' must be an object of per-task entries")
    if obj.get("stages") is not None and not isinstance(obj["stages"], list):
        raise MixkitError(f"{f}: 'stages' must be a list")
    return obj


def read_metrics(path: PathLike) -> list[dict[str, Any]]:
    """The JSON objects of a ``metrics.jsonl``, in order; [] when the file is absent.

    Tolerant by design (the file is appended while a run is alive): a partial last line, a
    line that is not JSON, a JSON value that is not an object and undecodable bytes are
    skipped, never an error.
    """
    p = Path(path)
    if not p.is_file():
        return []
    records = []
    for line in p.read_text(errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict):
            records.append(rec)
    return records


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def sft_losses(results: dict[str, Any], task: str) -> tuple[float | None, float | None]:
    """(SFT validation loss, held-out loss after SFT) of ``task``; None for what the run has not got."""
    entry = (results.get("sft") or {}).get(task)
    if not isinstance(entry, dict):
        return None, None
    return _number(entry.get("val_loss")), _number(entry.get("heldout_loss"))


def sft_tasks(results: dict[str, Any]) -> list[str]:
    """The tasks a run has SFT results for, in the file's order."""
    return [t for t, v in (results.get("sft") or {}).items() if isinstance(v, dict)]


def pre_sft_heldout_loss(results: dict[str, Any]) -> float | None:
    """Held-out loss after the last pretrain/midtrain stage, before any SFT (None when not measured)."""
    evals = results.get("evals") or {}
    stages = [s for s in results.get("stages") or [] if isinstance(s, dict) and s.get("kind") != "sft"]
    names = [s.get("name") for s in stages] or list(evals)
    for name in reversed(names):
        entry = evals.get(name)
        if isinstance(entry, dict) and _number(entry.get("heldout_loss")) is not None:
            return _number(entry["heldout_loss"])
    return None


def stage_dirs(run_dir: PathLike, results: dict[str, Any] | None) -> list[tuple[Path, str]]:
    """(folder, kind) of a run's pretrain/midtrain stages: first those ``results`` lists, in order,
    then any other folder of ``run_dir`` with a ``metrics.jsonl`` (a stage still running, kind
    = its name); SFT folders are not stages."""
    run_dir = Path(run_dir)
    out: list[tuple[Path, str]] = []
    for s in (results or {}).get("stages") or []:
        if isinstance(s, dict) and s.get("kind") != "sft":
            name = str(s.get("dir") or s.get("name") or "")
            if name and stage_dir(run_dir, name) not in (d for d, _ in out):
                out.append((stage_dir(run_dir, name), str(s.get("kind") or name)))
    if run_dir.is_dir():
        for sub in sorted(p for p in run_dir.iterdir() if p.is_dir()):
            if (not sub.name.startswith(SFT_DIR_PREFIX) and metrics_path(sub).is_file()
                    and sub not in (d for d, _ in out)):
                out.append((sub, sub.name))
    return out


def branch_source(run_dir: PathLike, stage: dict[str, Any]) -> Path | None:
    """The checkpoint a stage entry of ``results.json`` continued (its ``branched_from``),
    resolved against the run directory; None when the stage started fresh. Its stage folder
    is ``checkpoint_stage_dir`` of it."""
    src = stage.get("branched_from") if isinstance(stage, dict) else None
    if not isinstance(src, str) or not src:
        return None
    return Path(os.path.normpath(Path(run_dir) / src))
