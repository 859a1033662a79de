"""The sweep's figures: heatmaps over start step × ratio, and benefit against start step per ratio.

- ``plot_heatmaps``: one figure per task; per added dataset a row of two panels, the
  benefit (diverging colours centred on 0, blue = better than the baseline) and the C4
  loss after SFT (darker = more forgetting), each cell annotated; unmeasured cells grey.
- ``plot_benefit_lines``: one panel per (dataset, task), benefit (%) against start step with
  one line per ratio, and the baseline seed spread as a grey band around 0 (differences
  inside it are seed noise).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from mixkit.experiment_plots import _pyplot, _save

if TYPE_CHECKING:
    from mixkit.sweep_report import SweepGrid


def _heatmap(ax, values: np.ndarray, g: SweepGrid, cmap: str, centred: bool, fmt, title: str) -> None:
    plt = _pyplot()
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
    plt = _pyplot()
    fig, axes = plt.subplots(len(grids), 2, figsize=(11, 0.6 * max(4, len(grids[0].start_steps)) * len(grids) + 1.5),
                             squeeze=False)
    try:
        for row, g in zip(axes, grids):
            spread = "" if g.spread is None else f"; seed spread {100 * g.spread:.2f}%"
            _heatmap(row[0], g.benefit, g, "RdBu", True, lambda v: f"{100 * v:+.1f}%",
                     f"{g.task}: benefit vs baseline ({g.dataset}{spread})")
            base = "" if g.baseline_heldout is None else f"; baseline {g.baseline_heldout:.3f}"
            _heatmap(row[1], g.heldout, g, "magma_r", False, lambda v: f"{v:.3f}",
                     f"{g.task}: C4 loss after SFT ({g.dataset}{base})")
    except BaseException:
        plt.close(fig)
        raise
    _save(fig, path)


def plot_benefit_lines(grids: Sequence[SweepGrid], path: str | os.PathLike) -> None:
    """Benefit against start step, one line per ratio; one panel per (dataset, task)."""
    plt = _pyplot()
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
            if g.spread is not None:
                ax.axhspan(-100 * g.spread, 100 * g.spread, color="gray", alpha=0.2, label="seed spread")
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
