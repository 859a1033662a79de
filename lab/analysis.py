"""The numbers a study's report concludes from, as dataclasses the findings, markdown and plots all read.

Per task and variant (``task_tables``), L = SFT validation loss (``sft[task].val_loss``)
and C = held-out C4 loss after SFT (``sft[task].heldout_loss``), each the mean over the
variant's seeds; benefit = ``(L_base - L_v) / L_base`` (positive: the variant is better),
C4 change = ``(C_v - C_base) / C_base`` (positive: it forgot more), with the baseline's
value the mean over its seeds; the baseline seed spread = ``(max - min) / mean`` of the
baseline's seeds (two or more seeds); a benefit (or C4 change) whose absolute value is
smaller than it is not significant. With one baseline seed the spread, and so
significance, is unknown.

Proximity advantage (from ``experiment.json``) against benefit per (variant, task), the
baseline left out (its benefit is zero by definition), and Pearson's r per task and over
all tasks pooled (``correlations``).

For a sweep (``sweep_grids``), per (task, added dataset) the cells as matrices B[i, j]
(start step i, ratio j) and how much each axis moved them:

- timing spread = mean over ratios j of ``max_i B[i, j] − min_i B[i, j]``,
- ratio spread  = mean over start steps i of ``max_j B[i, j] − min_j B[i, j]``,

each over the lines with at least two measured values (None when there is none).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lab.results import StudyResults
from lab.statistics import mean_or_none, pearson, relative_benefit, relative_change, relative_spread
from mixkit.errors import MixkitError
from trainer.run_dir import sft_losses

# ----------------------------------------------------------------------------- an experiment's tables


@dataclass(frozen=True)
class Cell:
    """One variant on one task: per-seed losses, their means, and the comparison with the baseline."""

    task: str
    variant: str
    val_losses: tuple[float, ...]
    heldout_losses: tuple[float, ...]
    val_loss: float | None
    heldout_loss: float | None
    benefit: float | None
    heldout_change: float | None
    significant: bool | None  # None: no benefit, or the baseline's spread is unknown
    heldout_significant: bool | None


@dataclass(frozen=True)
class TaskTable:
    task: str
    spread: float | None  # baseline seed spread of the SFT val loss, relative
    heldout_spread: float | None
    baseline_seeds: int
    cells: tuple[Cell, ...]


def significant(value: float | None, spread: float | None) -> bool | None:
    if value is None or spread is None:
        return None
    return abs(value) >= spread


def task_tables(exp: StudyResults) -> list[TaskTable]:
    """Per task, the cells of every variant (the baseline first), compared with the baseline's seed mean."""
    tables = []
    for task in exp.tasks:
        losses = {}
        for variant, runs in exp.runs.items():
            pairs = [sft_losses(r.results, task) for r in runs if r.results is not None]
            losses[variant] = (tuple(v for v, _ in pairs if v is not None), tuple(h for _, h in pairs if h is not None))
        base_val, base_held = losses[exp.baseline]
        spread, held_spread = relative_spread(base_val), relative_spread(base_held)
        lb, cb = mean_or_none(base_val), mean_or_none(base_held)
        cells = []
        for variant, (vals, helds) in losses.items():
            lv, cv = mean_or_none(vals), mean_or_none(helds)
            benefit = relative_benefit(lb, lv)
            change = relative_change(cb, cv)
            is_base = variant == exp.baseline
            cells.append(Cell(task, variant, vals, helds, lv, cv, benefit, change,
                              None if is_base else significant(benefit, spread),
                              None if is_base else significant(change, held_spread)))
        tables.append(TaskTable(task, spread, held_spread, len(base_val), tuple(cells)))
    return tables


@dataclass(frozen=True)
class Point:
    variant: str
    task: str
    proximity: float
    benefit: float


def proximity_points(exp: StudyResults, tables: Sequence[TaskTable]) -> list[Point]:
    """(variant, task, proximity advantage, benefit) for every non-baseline variant with both numbers."""
    prox = exp.spec.get("proximity") or {}
    points = []
    for table in tables:
        for c in table.cells:
            p = (prox.get(c.variant) or {}).get(c.task) if isinstance(prox.get(c.variant), dict) else None
            if c.variant == exp.baseline or c.benefit is None or not isinstance(p, (int, float)) or isinstance(p, bool):
                continue
            if math.isfinite(p):
                points.append(Point(c.variant, c.task, float(p), c.benefit))
    return points


@dataclass(frozen=True)
class Correlation:
    scope: str  # a task, or "all tasks"
    r: float | None
    n: int


ALL_TASKS = "all tasks"


def correlations(points: Sequence[Point], tasks: Sequence[str]) -> list[Correlation]:
    """Pearson r of proximity advantage against benefit per task, then over all points pooled."""
    out = []
    for task in tasks:
        pts = [p for p in points if p.task == task]
        out.append(Correlation(task, pearson([p.proximity for p in pts], [p.benefit for p in pts]), len(pts)))
    out.append(Correlation(ALL_TASKS, pearson([p.proximity for p in points], [p.benefit for p in points]), len(points)))
    return out



def distance_matrix(spec: dict[str, Any]) -> tuple[np.ndarray, list[str]] | None:
    d = spec.get("distance")
    if not isinstance(d, dict):
        return None
    labels, matrix = d.get("labels"), d.get("matrix")
    try:
        m = np.asarray(matrix, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if not isinstance(labels, list) or m.ndim != 2 or m.shape != (len(labels), len(labels)) or not labels:
        return None
    return m, [str(x) for x in labels]



# ----------------------------------------------------------------------------- a sweep's grids


@dataclass(frozen=True)
class SweepGrid:
    """One task and one added dataset: values over start steps (rows) × ratios (columns); NaN = not measured."""

    task: str
    dataset: str
    start_steps: tuple[int, ...]
    ratios: tuple[float, ...]
    benefit: np.ndarray
    heldout: np.ndarray  # C4 loss after SFT
    heldout_change: np.ndarray
    baseline_heldout: float | None
    spread: float | None  # baseline seed spread of the SFT validation loss
    heldout_spread: float | None


def sweep_spec(exp: StudyResults) -> dict[str, Any]:
    spec = exp.spec.get("sweep")
    if not isinstance(spec, dict) or not isinstance(spec.get("grid"), dict):
        raise MixkitError(f"{exp.dir}: experiment.json has no 'sweep' entry (not a sweep; use the experiment report)")
    return spec


def sweep_grids(exp: StudyResults, tables: Sequence[TaskTable]) -> list[SweepGrid]:
    """The grids of every (task, dataset), from the experiment report's cells."""
    spec = sweep_spec(exp)
    grid = spec["grid"]
    starts = tuple(int(s) for s in spec.get("start_steps") or sorted({g["start_step"] for g in grid.values()}))
    ratios = tuple(float(r) for r in spec.get("ratios") or sorted({g["ratio"] for g in grid.values()}))
    datasets = list(spec.get("datasets") or dict.fromkeys(g["dataset"] for g in grid.values()))
    out = []
    for t in tables:
        by = {c.variant: c for c in t.cells}
        base = by.get(exp.baseline)
        for d in datasets:
            b, h, hc = (np.full((len(starts), len(ratios)), np.nan) for _ in range(3))
            for variant, g in grid.items():
                c = by.get(variant)
                if g["dataset"] != d or c is None or g["start_step"] not in starts or float(g["ratio"]) not in ratios:
                    continue
                i, j = starts.index(int(g["start_step"])), ratios.index(float(g["ratio"]))
                for m, v in ((b, c.benefit), (h, c.heldout_loss), (hc, c.heldout_change)):
                    if v is not None:
                        m[i, j] = v
            out.append(SweepGrid(t.task, d, starts, ratios, b, h, hc, base.heldout_loss if base else None,
                                 t.spread, t.heldout_spread))
    return out


def axis_spread(values: np.ndarray, axis: int) -> float | None:
    """Mean over the other axis of the range (max − min) along ``axis``, over lines with ≥ 2 finite values."""
    lines = np.moveaxis(np.asarray(values, dtype=np.float64), axis, -1).reshape(-1, values.shape[axis])
    ranges = [float(np.max(x[np.isfinite(x)]) - np.min(x[np.isfinite(x)])) for x in lines if np.isfinite(x).sum() >= 2]
    return float(np.mean(ranges)) if ranges else None


@dataclass(frozen=True)
class AxisComparison:
    what: str  # "benefit" or "C4 change"
    timing: float | None  # spread along start steps (axis 0)
    ratio: float | None  # spread along ratios (axis 1)
    seed_spread: float | None

    @property
    def larger(self) -> str | None:
        """"timing", "ratio", "neither" (equal), or None when either spread is unknown."""
        if self.timing is None or self.ratio is None:
            return None
        return "timing" if self.timing > self.ratio else "ratio" if self.ratio > self.timing else "neither"

    @property
    def beyond_noise(self) -> bool | None:
        """Whether the larger spread exceeds the seed spread (None: unknown)."""
        if self.larger is None or self.seed_spread is None:
            return None
        return max(self.timing, self.ratio) > self.seed_spread


def compare_axes(g: SweepGrid) -> tuple[AxisComparison, AxisComparison]:
    return (AxisComparison("benefit", axis_spread(g.benefit, 0), axis_spread(g.benefit, 1), g.spread),
            AxisComparison("C4 change", axis_spread(g.heldout_change, 0), axis_spread(g.heldout_change, 1),
                           g.heldout_spread))


def earlier_minus_later(values: np.ndarray) -> float | None:
    """Mean over ratios of (value at the earliest measured start − value at the latest), ratios with ≥ 2 starts."""
    diffs = []
    for col in np.asarray(values, dtype=np.float64).T:
        idx = np.flatnonzero(np.isfinite(col))
        if len(idx) >= 2:
            diffs.append(float(col[idx[0]] - col[idx[-1]]))
    return float(np.mean(diffs)) if diffs else None

