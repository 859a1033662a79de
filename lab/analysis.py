"""The numbers a study's report concludes from, as dataclasses the findings, markdown and plots all read.

Per task and variant (``task_tables``), with L the SFT validation loss and C the held-out
C4 loss after SFT of each run:

- the benefit of a variant, tested across seeds paired with the baseline's run of the same
  seed: per seed ``(L_base,s − L_v,s) / L_base,s`` (positive: the variant is better), its
  mean, 95% t-interval and p-value (``lab.statistics.paired_relative_benefit``);
- the C4 change the same way: per seed ``(C_v,s − C_base,s) / C_base,s`` (positive: more
  forgetting);
- the unigram benefit (``lab.control``): what a model of token frequencies alone would gain
  from the variant's stream, and the measured benefit's excess over it.

Proximity advantage (from ``experiment.json``) against the mean benefit per (variant, task),
the baseline left out: Pearson's r with its p-value per task, and the within-task slope
(an intercept per task) pooled over tasks (``proximity_analysis``), under the study's
metric and, when measured, the other one.

The scale guard (``scale_check``): the baseline's held-out C4 loss before SFT against the
unigram cross-entropy of its stream.

For a sweep (``sweep_grids``), per (task, added dataset) the cells as matrices over start
step × ratio, and every per-seed value with its grid coordinates for the two-way ANOVA.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lab.control import guard
from lab.results import StudyResults
from lab.statistics import (
    CorrelationTest,
    Estimate,
    Slope,
    VarianceShares,
    correlation_test,
    mean_or_none,
    paired_relative_benefit,
    paired_relative_change,
    t_estimate,
    two_way_shares,
    within_group_slope,
)
from mixkit.errors import MixkitError
from trainer.run_dir import pre_sft_heldout_loss, sft_losses

# ----------------------------------------------------------------------------- an experiment's tables


@dataclass(frozen=True)
class Cell:
    """One variant on one task: per-seed losses and, for a non-baseline variant, the tests against the baseline."""

    task: str
    variant: str
    val_by_seed: dict[str, float]
    heldout_by_seed: dict[str, float]
    benefit_test: Estimate | None  # None for the baseline
    heldout_test: Estimate | None
    unigram_benefit: float | None

    @property
    def seeds(self) -> int:
        return len(self.val_by_seed)

    @property
    def val_loss(self) -> float | None:
        return mean_or_none(list(self.val_by_seed.values()))

    @property
    def heldout_loss(self) -> float | None:
        return mean_or_none(list(self.heldout_by_seed.values()))

    @property
    def benefit(self) -> float | None:
        return None if self.benefit_test is None else self.benefit_test.mean

    @property
    def heldout_change(self) -> float | None:
        return None if self.heldout_test is None else self.heldout_test.mean

    @property
    def excess(self) -> float | None:
        """The measured benefit beyond what token frequencies alone would give."""
        if self.benefit is None or self.unigram_benefit is None:
            return None
        return self.benefit - self.unigram_benefit


@dataclass(frozen=True)
class TaskTable:
    task: str
    baseline_seeds: int
    cells: tuple[Cell, ...]

    def cell(self, variant: str) -> Cell | None:
        return next((c for c in self.cells if c.variant == variant), None)


def unigram_benefits(exp: StudyResults) -> dict[str, dict[str, float]]:
    """variant -> task -> ``(U_base − U_v) / U_base`` from ``experiment.json``'s unigram control ({} when absent)."""
    ce = ((exp.spec.get("unigram") or {}).get("task_ce")) or {}
    base = ce.get(exp.baseline) if isinstance(ce, dict) else None
    if not isinstance(base, dict):
        return {}
    out: dict[str, dict[str, float]] = {}
    for variant, per_task in ce.items():
        if isinstance(per_task, dict):
            out[variant] = {t: (base[t] - u) / base[t] for t, u in per_task.items()
                            if _finite(u) and _finite(base.get(t)) and base[t] != 0}
    return out


def task_tables(exp: StudyResults) -> list[TaskTable]:
    """Per task, the cells of every variant (the baseline first), each tested against the baseline by seed."""
    unigram = unigram_benefits(exp)
    tables = []
    for task in exp.tasks:
        losses: dict[str, tuple[dict[str, float], dict[str, float]]] = {}
        for variant, runs in exp.runs.items():
            val, held = {}, {}
            for r in runs:
                if r.results is None:
                    continue
                lv, lc = sft_losses(r.results, task)
                if lv is not None:
                    val[r.seed] = lv
                if lc is not None:
                    held[r.seed] = lc
            losses[variant] = (val, held)
        base_val, base_held = losses[exp.baseline]
        cells = []
        for variant, (val, held) in losses.items():
            if variant == exp.baseline:
                cells.append(Cell(task, variant, val, held, None, None, None))
                continue
            cells.append(Cell(task, variant, val, held, paired_relative_benefit(base_val, val),
                              paired_relative_change(base_held, held), (unigram.get(variant) or {}).get(task)))
        tables.append(TaskTable(task, len(base_val), tuple(cells)))
    return tables


@dataclass(frozen=True)
class ScaleCheck:
    """The scale guard: did the baseline learn clearly beyond token frequencies?"""

    unigram_heldout_ce: float | None
    baseline_heldout: Estimate  # the baseline's held-out C4 loss before SFT, over its seeds
    ok: bool | None  # None: the unigram control was not measured
    reason: str


def scale_check(exp: StudyResults) -> ScaleCheck:
    ce = (exp.spec.get("unigram") or {}).get("heldout_ce")
    ce = float(ce) if _finite(ce) else None
    losses = [pre_sft_heldout_loss(r.results) for r in exp.runs.get(exp.baseline, []) if r.results is not None]
    est = t_estimate([x for x in losses if x is not None])
    ok, reason = guard(est.mean, ce)
    return ScaleCheck(ce, est, ok, reason)


@dataclass(frozen=True)
class Point:
    variant: str
    task: str
    proximity: float
    benefit: float


@dataclass(frozen=True)
class ProximityAnalysis:
    """Proximity advantage against benefit: r per task, and the within-task slope pooled over tasks."""

    metric: str
    protocol: str
    points: tuple[Point, ...]
    per_task: tuple[tuple[str, CorrelationTest], ...]
    pooled: CorrelationTest  # what pooling points of different tasks shows (mostly which task a point is on)
    slope: Slope | None


def proximity_points(exp: StudyResults, tables: Sequence[TaskTable], proximity: dict[str, Any] | None = None) -> list[Point]:
    """(variant, task, proximity advantage, mean benefit) for every non-baseline variant with both numbers."""
    prox = exp.spec.get("proximity") if proximity is None else proximity
    prox = prox if isinstance(prox, dict) else {}
    points = []
    for table in tables:
        for c in table.cells:
            p = (prox.get(c.variant) or {}).get(c.task) if isinstance(prox.get(c.variant), dict) else None
            if c.variant == exp.baseline or c.benefit is None or not _finite(p):
                continue
            points.append(Point(c.variant, c.task, float(p), c.benefit))
    return points


def proximity_analysis(points: Sequence[Point], tasks: Sequence[str], metric: str, protocol: str) -> ProximityAnalysis:
    per_task = []
    for task in tasks:
        pts = [p for p in points if p.task == task]
        per_task.append((task, correlation_test([p.proximity for p in pts], [p.benefit for p in pts])))
    pooled = correlation_test([p.proximity for p in points], [p.benefit for p in points])
    slope = within_group_slope([p.proximity for p in points], [p.benefit for p in points], [p.task for p in points])
    return ProximityAnalysis(metric, protocol, tuple(points), tuple(per_task), pooled, slope)


def proximity_analyses(exp: StudyResults, tables: Sequence[TaskTable]) -> list[ProximityAnalysis]:
    """Under the study's metric and protocol, then (robustness) under the other one when it was measured."""
    out = [proximity_analysis(proximity_points(exp, tables), exp.tasks, str(exp.spec.get("metric", "")),
                              str(exp.spec.get("protocol", "all")))]
    alt = exp.spec.get("proximity_alt")
    if isinstance(alt, dict) and isinstance(alt.get("values"), dict):
        out.append(proximity_analysis(proximity_points(exp, tables, alt["values"]), exp.tasks,
                                      str(alt.get("metric", "")), str(alt.get("protocol", ""))))
    return out


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


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
    """One task and one added dataset over start steps (rows) × ratios (columns); NaN = not measured.

    ``samples`` are the per-seed values behind the cells, as (start step, ratio, benefit, C4
    change), for the two-way ANOVA.
    """

    task: str
    dataset: str
    start_steps: tuple[int, ...]
    ratios: tuple[float, ...]
    benefit: np.ndarray
    heldout: np.ndarray  # C4 loss after SFT
    heldout_change: np.ndarray
    baseline_heldout: float | None
    samples: tuple[tuple[int, float, float | None, float | None], ...] = ()

    def shares(self, outcome: str) -> VarianceShares | None:
        """Two-way ANOVA of ``"benefit"`` or ``"C4 change"`` over the grid."""
        k = 2 if outcome == "benefit" else 3
        rows = [(s[0], s[1], s[k]) for s in self.samples if s[k] is not None]
        return two_way_shares([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])

    def ratio_slope_contrast(self) -> float | None:
        """How much more the benefit rises with the ratio at the earliest start than at the latest:
        (slope of benefit on ratio at the first start) − (at the last start), from the cell means."""
        def slope(row: np.ndarray) -> float | None:
            ok = np.isfinite(row)
            if ok.sum() < 2:
                return None
            return float(np.polyfit(np.asarray(self.ratios)[ok], row[ok], 1)[0])

        first, last = slope(self.benefit[0]), slope(self.benefit[-1])
        return None if first is None or last is None or len(self.start_steps) < 2 else first - last


def sweep_spec(exp: StudyResults) -> dict[str, Any]:
    spec = exp.spec.get("sweep")
    if not isinstance(spec, dict) or not isinstance(spec.get("grid"), dict):
        raise MixkitError(f"{exp.dir}: experiment.json has no 'sweep' entry (not a sweep; use the experiment report)")
    return spec


def sweep_grids(exp: StudyResults, tables: Sequence[TaskTable]) -> list[SweepGrid]:
    """The grids of every (task, dataset), from the experiment's cells."""
    spec = sweep_spec(exp)
    grid = spec["grid"]
    starts = tuple(int(s) for s in spec.get("start_steps") or sorted({g["start_step"] for g in grid.values()}))
    ratios = tuple(float(r) for r in spec.get("ratios") or sorted({g["ratio"] for g in grid.values()}))
    datasets = list(spec.get("datasets") or dict.fromkeys(g["dataset"] for g in grid.values()))
    out = []
    for t in tables:
        base = t.cell(exp.baseline)
        for d in datasets:
            b, h, hc = (np.full((len(starts), len(ratios)), np.nan) for _ in range(3))
            samples = []
            for variant, g in grid.items():
                c = t.cell(variant)
                if g["dataset"] != d or c is None or g["start_step"] not in starts or float(g["ratio"]) not in ratios:
                    continue
                i, j = starts.index(int(g["start_step"])), ratios.index(float(g["ratio"]))
                for m, v in ((b, c.benefit), (h, c.heldout_loss), (hc, c.heldout_change)):
                    if v is not None:
                        m[i, j] = v
                bens = c.benefit_test.values if c.benefit_test else ()
                chs = c.heldout_test.values if c.heldout_test else ()
                for k in range(max(len(bens), len(chs))):
                    samples.append((starts[i], ratios[j], bens[k] if k < len(bens) else None,
                                    chs[k] if k < len(chs) else None))
            out.append(SweepGrid(t.task, d, starts, ratios, b, h, hc, base.heldout_loss if base else None,
                                 tuple(samples)))
    return out


def earlier_minus_later(values: np.ndarray) -> float | None:
    """Mean over ratios of (value at the earliest measured start − value at the latest), ratios with ≥ 2 starts."""
    diffs = []
    for col in np.asarray(values, dtype=np.float64).T:
        idx = np.flatnonzero(np.isfinite(col))
        if len(idx) >= 2:
            diffs.append(float(col[idx[0]] - col[idx[-1]]))
    return float(np.mean(diffs)) if diffs else None
