"""Reading a training run's ``results.json`` and ``metrics.jsonl``, and the statistics reports take of them.

Both reports (``trainer report`` over run directories, ``report.md`` of an experiment)
read the same files and compare runs with the same two numbers, so they live here once:

- benefit of run R over baseline B on a task: ``(L_B - L_R) / L_B`` with L the SFT
  validation loss (positive: R is better). The same relative form, with the sign turned,
  measures forgetting: ``(C_R - C_B) / C_B`` with C the held-out C4 loss after SFT
  (positive: R forgot more).
- Pearson's r = sum((x - x̄)(y - ȳ)) / sqrt(sum((x - x̄)²) · sum((y - ȳ)²)), undefined
  (None) with fewer than 3 points or when either variable has no variance.

This module imports neither torch nor matplotlib: reading results must stay cheap.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mixkit.errors import MixkitError

RESULTS_FILE = "results.json"
METRICS_FILE = "metrics.jsonl"


def results_path(path: str | os.PathLike) -> Path:
    """``path/results.json`` for a run directory, or ``path`` itself when it names the file."""
    p = Path(path)
    return p if p.name == RESULTS_FILE and not p.is_dir() else p / RESULTS_FILE


def read_json_object(f: Path) -> dict[str, Any]:
    """A JSON file holding one object; MixkitError (one line) when it is not valid JSON or not an object."""
    try:
        obj = json.loads(f.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise MixkitError(f"{f}: not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise MixkitError(f"{f}: expected a JSON object, got {type(obj).__name__}")
    return obj


def read_results(path: str | os.PathLike) -> dict[str, Any]:
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


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The complete JSON objects of a ``metrics.jsonl`` ([] when absent; a partial or bad line is skipped)."""
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
    """(SFT validation loss, held-out C4 loss after SFT) of ``task``; None for what the run has not got."""
    entry = (results.get("sft") or {}).get(task)
    if not isinstance(entry, dict):
        return None, None
    return _number(entry.get("val_loss")), _number(entry.get("heldout_loss"))


def sft_tasks(results: dict[str, Any]) -> list[str]:
    """The tasks a run has SFT results for, in the file's order."""
    return [t for t, v in (results.get("sft") or {}).items() if isinstance(v, dict)]


def pre_sft_heldout_loss(results: dict[str, Any]) -> float | None:
    """Held-out C4 loss after the last pretrain/midtrain stage, before any SFT (None when not measured)."""
    evals = results.get("evals") or {}
    stages = [s for s in results.get("stages") or [] if isinstance(s, dict) and s.get("kind") != "sft"]
    names = [s.get("name") for s in stages] or list(evals)
    for name in reversed(names):
        entry = evals.get(name)
        if isinstance(entry, dict) and _number(entry.get("heldout_loss")) is not None:
            return _number(entry["heldout_loss"])
    return None


def relative_benefit(base: float | None, value: float | None) -> float | None:
    """``(base - value) / base``: the fraction by which ``value`` is lower than ``base`` (None when undefined)."""
    if base is None or value is None or base == 0 or not (math.isfinite(base) and math.isfinite(value)):
        return None
    return (base - value) / base


def relative_change(base: float | None, value: float | None) -> float | None:
    """``(value - base) / base``: the fraction by which ``value`` is higher than ``base`` (None when undefined)."""
    if base is None or value is None or base == 0 or not (math.isfinite(base) and math.isfinite(value)):
        return None
    return (value - base) / base


def relative_spread(values: Sequence[float]) -> float | None:
    """Seed spread ``(max - min) / mean`` of a baseline's losses; None with fewer than two seeds."""
    if len(values) < 2:
        return None
    mean = float(np.mean(values))
    if mean == 0:
        return None
    return (max(values) - min(values)) / mean


def pearson(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Pearson's r of paired samples; None with fewer than 3 points or zero variance in x or y."""
    if len(x) != len(y):
        raise ValueError(f"pearson: x has {len(x)} values, y has {len(y)}")
    if len(x) < 3:
        return None
    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(y, dtype=np.float64)
    da = a - a.mean()
    db = b - b.mean()
    sa = float(np.dot(da, da))
    sb = float(np.dot(db, db))
    scale = max(1.0, float(np.abs(a).max()), float(np.abs(b).max()))
    if sa <= (1e-12 * scale) ** 2 * len(a) or sb <= (1e-12 * scale) ** 2 * len(b):
        return None
    r = float(np.dot(da, db)) / math.sqrt(sa * sb)
    return max(-1.0, min(1.0, r))
