"""The PNG figures of a study's ``report.md`` (matplotlib, Agg backend, written atomically).

- ``loss_curves.png``: the pretrain and the midtrain training loss against step of each
  variant's first seed with a run directory (a shared pretraining run that variants were
  branched from, found through ``branched_from``, is drawn once, in black), then one panel per SFT task with each variant's SFT training loss
  (line) and validation loss (dots) against SFT step.
- ``benefit_vs_proximity.png``: one point per (variant, task), colour per task, the variant
  written beside it, the per-task r and p in the legend; the title carries the within-task slope.
- ``forgetting_vs_task_loss.png``: x the SFT validation loss, y the C4 loss after SFT, one
  point per (variant, task); the baseline drawn as a star.

And a sweep's:

- ``plot_heatmaps``: one figure per task; per added dataset a row of two panels, the
  benefit (diverging colours centred on 0, blue = better than the baseline) and the C4
  loss after SFT (darker = more forgetting), each cell annotated; unmeasured cells grey.
- ``plot_benefit_lines``: one panel per (dataset, task), benefit (%) against start step with
  one line per ratio (each point the mean over the variant's seeds).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lab.analysis import ProximityAnalysis, SweepGrid, TaskTable
from lab.results import StudyResults
from mixkit.figures import pyplot, save_png
from trainer.run_dir import branch_source, checkpoint_stage_dir, metrics_path, read_metrics, sft_dir, stage_dirs


def _save(fig, path: str | os.PathLike) -> None:
    save_png(fig, path, dpi=110)


def _colors(names: Sequence[str]) -> dict[str, Any]:
    plt = pyplot()
    cycle = plt.get_cmap("tab10").colors
    return {n: cycle[i % len(cycle)] for i, n in enumerate(names)}


def _branch_sources(run_dir: Path, results: dict[str, Any] | None) -> list[tuple[Path, int | None]]:
    """(stage folder, last step to show) of the stages this run was branched from.

    ``branched_from`` names a checkpoint ``<run>/<stage>/checkpoints/<step>`` relative to the
    run folder (``trainer.run_dir.branch_source``); the source stage's curve is shown up to
    the branching stage's start step.
    """
    out = []
    for s in (results or {}).get("stages") or []:
        src = branch_source(run_dir, s)
        if src is None:
            continue
        stage = checkpoint_stage_dir(src)
        if metrics_path(stage).is_file():
            start = s.get("start_step")
            out.append((stage, start if isinstance(start, int) and not isinstance(start, bool) else None))
    return out


def _legend(ax, max_rows: int = 8) -> None:
    """A legend that stays inside its panel: several small columns when there are many entries."""
    n = len(ax.get_legend_handles_labels()[1])
    ax.legend(fontsize=6 if n > max_rows else 7, ncol=max(1, -(-n // max_rows)), loc="upper right",
              framealpha=0.6, handlelength=1.2, columnspacing=0.8)


def _series(records: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    pts = [(r["step"], r[key]) for r in records
           if isinstance(r.get("step"), (int, float)) and isinstance(r.get(key), (int, float))
           and math.isfinite(r[key])]
    return [p[0] for p in pts], [p[1] for p in pts]


def moving_average(ys: Sequence[float], window: int) -> np.ndarray:
    """Trailing moving average over ``window`` points (shorter at the start): mean(ys[max(0, i-w+1) : i+1])."""
    y = np.asarray(ys, dtype=np.float64)
    if window <= 1 or y.size == 0:
        return y
    c = np.concatenate([[0.0], np.cumsum(y)])
    i = np.arange(1, y.size + 1)
    lo = np.maximum(0, i - window)
    return (c[i] - c[lo]) / (i - lo)


def _window(n: int) -> int:
    return max(1, n // 50)


def _clip_start_spike(ax, series: list[np.ndarray]) -> None:
    """Let the y-axis show the informative part: the first 5% of each curve may rise above the top."""
    tails = [y[len(y) // 20:] for y in series if len(y) >= 20]
    if not tails:
        return
    lo = min(float(np.nanmin(y)) for y in series if len(y))
    hi = max(float(np.nanmax(t)) for t in tails)
    if hi > lo:
        ax.set_ylim(lo - 0.05 * (hi - lo), hi + 0.15 * (hi - lo))


def plot_loss_curves(exp: StudyResults, path: str | os.PathLike) -> bool:
    """Write the loss-curves figure; False (nothing written) when no run has logged a loss yet.

    Panels: pretrain stages, midtrain stages, then one per SFT task. Training losses are drawn
    as a trailing moving average over 1/50 of each curve's points (the raw per-step loss is
    too noisy to tell variants apart); SFT validation losses as dots.
    """
    plt = pyplot()
    colors = _colors(list(exp.runs))
    panels = 2 + len(exp.tasks)
    ncols = min(3, panels)
    nrows = -(-panels // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 3.8 * nrows), squeeze=False)
    flat = list(axes.flat)
    drawn: dict[int, list[np.ndarray]] = {k: [] for k in range(panels)}
    windows: dict[int, set[int]] = {k: set() for k in range(panels)}
    shown: set[Path] = set()
    try:
        for variant, runs in exp.runs.items():
            run = next((r for r in runs if r.path.is_dir()), None)
            if run is None:
                continue
            for stage_dir, last in _branch_sources(run.path, run.results):
                key = stage_dir.resolve()
                if key in shown:
                    continue
                shown.add(key)
                recs = [r for r in read_metrics(metrics_path(stage_dir))
                        if last is None or (isinstance(r.get("step"), (int, float)) and r["step"] < last)]
                xs, ys = _series(recs, "loss")
                if xs:
                    k = 0 if "pretrain" in stage_dir.name or "midtrain" not in stage_dir.name else 1
                    w = _window(len(ys))
                    y = moving_average(ys, w)
                    flat[k].plot(xs, y, "-", color="black", linewidth=1.0,
                                 label=f"{stage_dir.parent.name}: {stage_dir.name} (shared)")
                    drawn[k].append(y)
                    windows[k].add(w)
            for folder, kind in stage_dirs(run.path, run.results):
                if folder.resolve() in shown:
                    continue
                shown.add(folder.resolve())
                xs, ys = _series(read_metrics(metrics_path(folder)), "loss")
                if xs:
                    k = 0 if "pretrain" in kind else 1
                    w = _window(len(ys))
                    y = moving_average(ys, w)
                    flat[k].plot(xs, y, "-", color=colors[variant], linewidth=1.0, label=f"{variant}: {folder.name}")
                    drawn[k].append(y)
                    windows[k].add(w)
            for j, task in enumerate(exp.tasks):
                k = 2 + j
                recs = read_metrics(metrics_path(sft_dir(run.path, task, run.results)))
                xs, ys = _series(recs, "loss")
                if xs:
                    w = _window(len(ys))
                    y = moving_average(ys, w)
                    flat[k].plot(xs, y, "-", color=colors[variant], linewidth=0.9, label=variant)
                    drawn[k].append(y)
                    windows[k].add(w)
                ex, ey = _series(recs, "eval_val_loss")
                if ex:
                    flat[k].plot(ex, ey, "o", color=colors[variant], markersize=4)
                    drawn[k].append(np.asarray(ey, dtype=np.float64))
        titles = ["pretrain: training loss", "midtrain: training loss"]
        titles += [f"SFT on {task}: answer-token loss (lines: train, dots: validation)" for task in exp.tasks]
        for k, ax in enumerate(flat[:panels]):
            w = max(windows[k], default=1)
            ax.set_title(titles[k] + (f" (moving avg, {w} steps)" if w > 1 else ""), fontsize=10)
            ax.set_xlabel("step")
            ax.set_ylabel("cross-entropy (nats/token)")
            ax.grid(alpha=0.3)
            if drawn[k]:
                _legend(ax)
                _clip_start_spike(ax, drawn[k])
            else:
                ax.text(0.5, 0.5, "no data yet", ha="center", va="center", transform=ax.transAxes, color="gray")
        for ax in flat[panels:]:
            ax.set_visible(False)
    except BaseException:
        plt.close(fig)
        raise
    if not any(drawn.values()):
        plt.close(fig)
        return False
    _save(fig, path)
    return True


def plot_benefit_vs_proximity(analysis: ProximityAnalysis, path: str | os.PathLike) -> None:
    """One point per (variant, task), a colour per task with its r and p; the title carries the within-task slope."""
    plt = pyplot()
    points = analysis.points
    tasks = list(dict.fromkeys(p.task for p in points))
    colors = _colors(tasks)
    r_of = dict(analysis.per_task)
    fig, ax = plt.subplots(figsize=(7.5, 5.2))
    try:
        for task in tasks:
            pts = [p for p in points if p.task == task]
            c = r_of.get(task)
            r = "r undefined" if c is None or c.r is None else f"r = {c.r:+.2f}, p = {c.p:.2g}"
            ax.scatter([p.proximity for p in pts], [100 * p.benefit for p in pts], color=colors[task], s=36,
                       label=f"{task} ({r}, n = {len(pts)})", zorder=3)
            for p in pts:
                ax.annotate(p.variant, (p.proximity, 100 * p.benefit), fontsize=7, xytext=(4, 3),
                            textcoords="offset points")
        ax.axhline(0.0, color="gray", linewidth=0.8)
        ax.axvline(0.0, color="gray", linewidth=0.8, linestyle=":")
        ax.set_xlabel("proximity advantage toward the task" + (f" ({analysis.metric} distance)" if analysis.metric else ""))
        ax.set_ylabel("benefit vs baseline (% lower SFT validation loss)")
        s = analysis.slope
        slope = "undefined" if s is None else f"{s.slope:+.3g}, p = {s.p:.2g}"
        ax.set_title(f"Benefit against proximity advantage (within-task slope {slope}, n = {len(points)})", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, title="SFT task")
    except BaseException:
        plt.close(fig)
        raise
    _save(fig, path)


def plot_forgetting(tables: Sequence[TaskTable], baseline: str, path: str | os.PathLike) -> None:
    plt = pyplot()
    colors = _colors([t.task for t in tables])
    fig, ax = plt.subplots(figsize=(7.5, 5.2))
    try:
        for t in tables:
            cells = [c for c in t.cells if c.val_loss is not None and c.heldout_loss is not None]
            if not cells:
                continue
            for c in cells:
                is_base = c.variant == baseline
                ax.scatter([c.val_loss], [c.heldout_loss], color=colors[t.task], marker="*" if is_base else "o",
                           s=110 if is_base else 36, zorder=3)
                ax.annotate(c.variant, (c.val_loss, c.heldout_loss), fontsize=7, xytext=(4, 3),
                            textcoords="offset points")
            ax.scatter([], [], color=colors[t.task], marker="o", label=t.task)
        ax.scatter([], [], color="gray", marker="*", s=110, label=f"baseline ({baseline})")
        ax.set_xlabel("SFT validation loss (task, lower is better)")
        ax.set_ylabel("C4 held-out loss after SFT (lower: less forgetting)")
        ax.set_title("Forgetting against task loss, per variant and task")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    except BaseException:
        plt.close(fig)
        raise
    _save(fig, path)



def _heatmap(ax, values: np.ndarray, g: SweepGrid, cmap: str, centred: bool, fmt, title: str) -> None:
    plt = pyplot()
    finite = values[np.isfinite(values)]
    if centred:
        lim = float(np.max(np.abs(finite))) if finite.size else 1.0
        vmin, vmax = -(lim or 1.0), (lim or 1.0)
    else:
        vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        if vmin == vmax:
            vmin, vmax = vmin - 1e-6, vmax + 1e-6
    cm = plt.get_cmap(cmap).with_extremes(bad="#dddddd")
    im = ax.imshow(np.ma.masked_invalid(values), cmap=cm, vmin=vmin, vmax=vmax, aspect="auto")
    ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(len(g.ratios)), [f"{100 * r:g}%" for r in g.ratios])
    ax.set_yticks(range(len(g.start_steps)), [str(s) for s in g.start_steps])
    ax.set_xlabel(f"ratio of {g.dataset}")
    ax.set_ylabel("start step")
    ax.set_title(title, fontsize=10)
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            v = values[i, j]
            text = "—" if not math.isfinite(v) else fmt(v)
            dark = math.isfinite(v) and (abs(v) > 0.6 * vmax if centred else (v - vmin) > 0.6 * (vmax - vmin))
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color="white" if dark else "black")


def plot_heatmaps(grids: Sequence[SweepGrid], path: str | os.PathLike) -> None:
    """Benefit and C4-loss heatmaps of one task's grids (one row per added dataset)."""
    plt = pyplot()
    fig, axes = plt.subplots(len(grids), 2, figsize=(11, 0.6 * max(4, len(grids[0].start_steps)) * len(grids) + 1.5),
                             squeeze=False)
    try:
        for row, g in zip(axes, grids):
            _heatmap(row[0], g.benefit, g, "RdBu", True, lambda v: f"{100 * v:+.1f}%",
                     f"{g.task}: benefit vs baseline ({g.dataset})")
            base = "" if g.baseline_heldout is None else f"; baseline {g.baseline_heldout:.3f}"
            _heatmap(row[1], g.heldout, g, "magma_r", False, lambda v: f"{v:.3f}",
                     f"{g.task}: C4 loss after SFT ({g.dataset}{base})")
    except BaseException:
        plt.close(fig)
        raise
    _save(fig, path)


def plot_benefit_lines(grids: Sequence[SweepGrid], path: str | os.PathLike) -> None:
    """Benefit against start step, one line per ratio; one panel per (dataset, task)."""
    plt = pyplot()
    n = len(grids)
    ncols = min(3, n)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 3.8 * nrows), squeeze=False)
    try:
        colors = plt.get_cmap("viridis")
        for ax, g in zip(axes.flat, grids):
            for j, r in enumerate(g.ratios):
                y = 100 * g.benefit[:, j]
                ok = np.isfinite(y)
                if ok.any():
                    ax.plot(np.asarray(g.start_steps)[ok], y[ok], "o-", color=colors(j / max(1, len(g.ratios) - 1)),
                            label=f"ratio {100 * r:g}%")
            ax.axhline(0, color="black", linewidth=0.8)
            ax.set_title(f"{g.task}: benefit, mixing in {g.dataset}", fontsize=10)
            ax.set_xlabel("start step")
            ax.set_ylabel("benefit vs baseline (%)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        for ax in list(axes.flat)[n:]:
            ax.set_visible(False)
    except BaseException:
        plt.close(fig)
        raise
    _save(fig, path)

