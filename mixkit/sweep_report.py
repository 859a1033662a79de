"""``report.md`` of a sweep: per task, benefit and forgetting over start step × ratio, and which moved more.

Reads the sweep's ``experiment.json`` (its ``sweep`` entry maps each grid variant to its
dataset, start step and ratio) and the run directories, through ``mixkit.experiment_report``
(the same cells: L = SFT validation loss, C = held-out C4 loss after SFT, means over seeds;
benefit = ``(L_base − L) / L_base``, C4 change = ``(C − C_base) / C_base``, baseline seed
spread = ``(max − min) / mean`` of the baseline's seeds). Per (task, dataset) it arranges
them as matrices B[i, j] (start step i, ratio j) and measures how much each axis moved the
benefit:

- timing spread = mean over ratios j of ``max_i B[i, j] − min_i B[i, j]``,
- ratio spread  = mean over start steps i of ``max_j B[i, j] − min_j B[i, j]``,

each over the lines with at least two measured values (None when there is none). The axis
with the larger spread moved the result more; when both are below the baseline's seed
spread, neither is distinguishable from seed noise. The same is reported for the C4 change.

The report is the sweep's sections followed by the experiment report (tables of every
variant, proximity, findings, loss curves), one heading level down. Missing runs are left
out of every number, so the report can be written at any point of a sweep.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mixkit import atomic
from mixkit.errors import MixkitError
from mixkit.experiment_report import (
    MISSING,
    PLOTS_DIR,
    REPORT_FILE,
    Experiment,
    TaskTable,
    _md_table,
    load_experiment,
    task_tables,
    write_report,
)


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


def sweep_spec(exp: Experiment) -> dict[str, Any]:
    spec = exp.spec.get("sweep")
    if not isinstance(spec, dict) or not isinstance(spec.get("grid"), dict):
        raise MixkitError(f"{exp.dir}: experiment.json has no 'sweep' entry (not a sweep; use the experiment report)")
    return spec


def sweep_grids(exp: Experiment, tables: Sequence[TaskTable]) -> list[SweepGrid]:
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


# ----------------------------------------------------------------------------- text


def _pp(v: float | None) -> str:
    return MISSING if v is None or not math.isfinite(v) else f"{100 * v:.2f} pp"


def _pct(v: float) -> str:
    return MISSING if not math.isfinite(v) else f"{100 * v:+.2f}%"


def comparison_sentence(c: AxisComparison) -> str:
    if c.larger is None:
        return (f"{c.what}: cannot compare the axes yet (timing spread {_pp(c.timing)}, ratio spread "
                f"{_pp(c.ratio)}; each needs two measured points along it).")
    noise = ("seed spread unknown (one baseline seed)" if c.seed_spread is None
             else f"baseline seed spread {_pp(c.seed_spread)}")
    if c.larger == "neither":
        head = "timing and ratio moved it equally"
    else:
        head = f"{c.larger} moved it more"
    tail = ""
    if c.beyond_noise is False:
        tail = "; both are within the seed spread, so neither is distinguishable from noise"
    elif c.beyond_noise is True:
        tail = f"; the {c.larger if c.larger != 'neither' else 'larger'} spread exceeds the seed spread"
    return (f"{c.what}: {head} (spread over start steps {_pp(c.timing)}, over ratios {_pp(c.ratio)}; "
            f"{noise}){tail}.")


def verdict(grids: Sequence[SweepGrid]) -> tuple[str, list[str]]:
    """The paper's finding (timing moves the benefit more than the ratio, earlier is better), judged here."""
    comps = [(g, compare_axes(g)[0]) for g in grids]
    known = [(g, c) for g, c in comps if c.larger is not None]
    if not known:
        return "cannot be checked", ["No (task, dataset) has two measured points along both axes yet."]
    timing = [(g, c) for g, c in known if c.larger == "timing"]
    beyond = [(g, c) for g, c in timing if c.beyond_noise is True]
    early = [earlier_minus_later(g.benefit) for g, _ in known]
    early_known = [e for e in early if e is not None]
    details = [f"Timing moved the benefit more than the ratio in {len(timing)} of {len(known)} (task, dataset) "
               f"grids ({len(beyond)} of them beyond the baseline seed spread).",
               f"Starting earlier gave a larger benefit (mean over ratios, earliest vs latest start) in "
               f"{sum(e > 0 for e in early_known)} of {len(early_known)}."]
    if len(timing) == len(known) and len(beyond) == len(known):
        word = "holds"
    elif not timing:
        word = "does not hold"
    elif beyond:
        word = "holds in part"
    elif all(c.beyond_noise is None for _, c in timing):
        word = "holds in direction, significance unknown (one baseline seed)"
    else:
        word = "not significant (the spreads are within the seed spread)"
    return word, details


def render_sweep(exp: Experiment, grids: Sequence[SweepGrid], plots: Sequence[tuple[str, str]]) -> list[str]:
    spec = sweep_spec(exp)
    name = exp.spec.get("name") or exp.dir.name
    steps = (exp.spec.get("scale") or {}).get("total_steps")
    out = [f"# Sweep report: {name}", ""]
    out.append(f"- Command: `{exp.spec['command']}`" if exp.spec.get("command") else "- Command: " + MISSING)
    out.append(f"- Grid: datasets {', '.join(spec.get('datasets', []))} × start steps "
               f"{', '.join(map(str, spec.get('start_steps', [])))}"
               + (f" (of {steps})" if steps else "") + " × ratios "
               + ", ".join(f"{100 * float(r):g}%" for r in spec.get("ratios", [])) + f"; baseline `{exp.baseline}`")
    if "steps_shared" in spec:
        out.append(f"- Training steps: {spec['steps_shared']:,} with the shared base run, {spec['steps_unshared']:,} "
                   f"if every run trained from step 0; base checkpoints kept at steps "
                   f"{', '.join(map(str, spec.get('kept_checkpoints', [])))}")
    runs = [r for rs in exp.runs.values() for r in rs]
    out.append(f"- Runs with results: {sum(r.results is not None for r in runs)} of {len(runs)}")
    word, details = verdict(grids)
    out += ["", "## Timing or ratio?", "",
            "Spread of the benefit along an axis = the mean, over the other axis, of (max − min) along it; "
            "the seed spread is (max − min) / mean of the baseline's SFT validation loss over its seeds, "
            "in the same units (percentage points of relative loss).", "",
            f"**The paper's finding (when the data enters moves the result more than how much of it, and earlier "
            f"is better) — {word}.**", ""]
    out += [f"- {d}" for d in details]
    for g in grids:
        ben, c4 = compare_axes(g)
        out += ["", f"### {g.task} (mixing in {g.dataset})", "",
                f"- {comparison_sentence(ben)}", f"- {comparison_sentence(c4)}"]
        e = earlier_minus_later(g.benefit)
        if e is not None:
            out.append(f"- Earliest minus latest start, benefit (mean over ratios): {_pp(e)}.")
        out += ["", "Benefit (rows: start step, columns: ratio):", ""]
        header = ["start step"] + [f"{100 * r:g}%" for r in g.ratios]
        out += _md_table(header, [[str(s)] + [_pct(v) for v in g.benefit[i]] for i, s in enumerate(g.start_steps)],
                         "r" * len(header))
        base = MISSING if g.baseline_heldout is None else f"{g.baseline_heldout:.4f}"
        out += ["", f"C4 loss after SFT (baseline {base}; C4 change in parentheses, positive = more forgetting):", ""]
        rows = [[str(s)] + [MISSING if not math.isfinite(v) else f"{v:.4f} ({_pct(ch)})"
                            for v, ch in zip(g.heldout[i], g.heldout_change[i])] for i, s in enumerate(g.start_steps)]
        out += _md_table(header, rows, "r" * len(header))
    if plots:
        out += ["", "## Sweep plots"]
        for title, rel in plots:
            out += ["", f"### {title}", "", f"![{title}]({rel})"]
    return out


def write_sweep_report(sweep_dir: str | Path) -> Path:
    """Write ``report.md`` (sweep sections, then the experiment report) and the plots; return its path."""
    from mixkit import sweep_plots

    d = Path(sweep_dir)
    exp = load_experiment(d)
    sweep_spec(exp)
    grids = sweep_grids(exp, task_tables(exp))
    plots: list[tuple[str, str]] = []
    for task in exp.tasks:
        tg = [g for g in grids if g.task == task]
        if any(np.isfinite(g.benefit).any() or np.isfinite(g.heldout).any() for g in tg):
            sweep_plots.plot_heatmaps(tg, d / PLOTS_DIR / f"sweep_heatmap_{task}.png")
            plots.append((f"{task}: benefit and C4 loss over start step × ratio", f"{PLOTS_DIR}/sweep_heatmap_{task}.png"))
    if any(np.isfinite(g.benefit).any() for g in grids):
        sweep_plots.plot_benefit_lines(grids, d / PLOTS_DIR / "sweep_benefit_vs_start.png")
        plots.append(("Benefit against start step, one line per ratio", f"{PLOTS_DIR}/sweep_benefit_vs_start.png"))
    body = write_report(d).read_text()  # the experiment report: every variant's numbers and plots
    lines = body.splitlines()
    rest = [("#" + line if line.startswith("#") else line) for line in lines[1:]]
    text = "\n".join(render_sweep(exp, grids, plots) + ["", "## Per-variant details"] + rest) + "\n"
    path = d / REPORT_FILE
    atomic.write_text(path, text)
    return path
