"""The numbers reports compare runs with, in one place.

- benefit of run R over baseline B on a task: ``(L_B - L_R) / L_B`` with L the SFT
  validation loss (positive: R is better). The same relative form, with the sign turned,
  measures forgetting: ``(C_R - C_B) / C_B`` with C the held-out C4 loss after SFT
  (positive: R forgot more).
- seed spread of a baseline: ``(max - min) / mean`` of its per-seed losses.
- Pearson's r = sum((x - x̄)(y - ȳ)) / sqrt(sum((x - x̄)²) · sum((y - ȳ)²)), undefined
  (None) with fewer than 3 points or when either variable has no variance.

This module imports neither torch nor matplotlib: reading results must stay cheap.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def mean_or_none(values: Sequence[float]) -> float | None:
    """The mean, or None for no values."""
    return float(np.mean(values)) if values else None


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

