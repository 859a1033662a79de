"""The paper's results table over several runs: SFT loss, C4 loss and benefit against a baseline run.

For every SFT task that any run finetuned on, one row per run (in the order given):

    task   run      SFT val loss   C4 val loss   benefit   C4 vs base
    gsm8k  base     1.9100         3.5500        baseline  baseline
    gsm8k  code20   1.8800         3.5100        +1.57%    -1.13%

- SFT val loss = ``results.json`` ``sft[task].val_loss`` (answer tokens of the task's
  validation split); C4 val loss = ``sft[task].heldout_loss`` (held-out pretraining
  documents, measured after SFT on that task).
- benefit = ``(L_base - L_run) / L_base`` on the SFT loss (positive: the run is better);
  C4 vs base = ``(C_run - C_base) / C_base`` (positive: the run forgot more).

A run without an entry for a task (unfinished, or not finetuned on it) shows "—" and has
no benefit; nothing here fails on partial results. The baseline is named by the
``run`` field of its ``results.json`` or by its directory name.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.statistics import relative_benefit, relative_change
from mixkit import atomic
from mixkit.errors import MixkitError
from mixkit.figures import pyplot, save_png
from trainer.run_dir import read_results, results_path, sft_losses, sft_tasks

MISSING = "—"
DIR_KEY = "_dir"  # added by load_results: the run directory a results dict came from


@dataclass(frozen=True)
class Row:
    """One (task, run) cell group of the table; None where the run has no value."""

    task: str
    run: str
    val_loss: float | None
    heldout_loss: float | None
    benefit: float | None
    heldout_change: float | None
    is_baseline: bool


def load_results(paths: Sequence[str | os.PathLike]) -> list[dict[str, Any]]:
    """Each run directory's ``results.json`` (a path may also name the file), with ``"_dir"`` added.

    A missing ``"run"`` name is filled in with the directory name. Raises MixkitError for
    a path without results, malformed JSON, or no paths at all.
    """
    if not paths:
        raise MixkitError("no run directories given")
    out = []
    for p in paths:
        obj = read_results(p)
        run_dir = results_path(p).parent
        obj = dict(obj)
        obj[DIR_KEY] = str(run_dir)
        if not isinstance(obj.get("run"), str) or not obj["run"]:
            obj["run"] = run_dir.resolve().name
        out.append(obj)
    return out


def _labels(results: Sequence[dict[str, Any]]) -> list[str]:
    """Run names; where two runs share a name, their directory paths tell them apart."""
    names = [r["run"] for r in results]
    return [r.get(DIR_KEY, n) if names.count(n) > 1 else n for r, n in zip(results, names)]


def find_baseline(results: Sequence[dict[str, Any]], baseline: str) -> int:
    """Index of the baseline run: matched by ``run`` name first, then by directory name or path."""
    for i, r in enumerate(results):
        if r.get("run") == baseline:
            return i
    for i, r in enumerate(results):
        d = r.get(DIR_KEY)
        if d is not None and (Path(d).resolve().name == baseline or Path(d) == Path(baseline)):
            return i
    names = ", ".join(_labels(results))
    raise MixkitError(f"baseline {baseline!r} is not among the runs ({names})")


def report_table(results: Sequence[dict[str, Any]], baseline: str) -> list[Row]:
    """Rows grouped by task (tasks in order of first appearance), runs in the given order. Pure."""
    b = find_baseline(results, baseline)
    labels = _labels(results)
    tasks: list[str] = []
    for r in results:
        for t in sft_tasks(r):
            if t not in tasks:
                tasks.append(t)
    rows = []
    for task in tasks:
        base_val, base_held = sft_losses(results[b], task)
        for i, r in enumerate(results):
            val, held = sft_losses(r, task)
            rows.append(Row(
                task=task, run=labels[i], val_loss=val, heldout_loss=held,
                benefit=relative_benefit(base_val, val),
                heldout_change=relative_change(base_held, held),
                is_baseline=i == b,
            ))
    return rows


def _loss(v: float | None) -> str:
    return MISSING if v is None else f"{v:.4f}"


def _pct(v: float | None, baseline: bool) -> str:
    if baseline:
        return "baseline"
    return MISSING if v is None else f"{100 * v:+.2f}%"


HEADER = ("task", "run", "SFT val loss", "C4 val loss", "benefit", "C4 vs base")


def format_table(rows: Sequence[Row]) -> str:
    """The rows as an aligned plain-text table, a blank line between tasks (no trailing newline)."""
    if not rows:
        return "no SFT results in any of the runs yet"
    cells = [[r.task, r.run, _loss(r.val_loss), _loss(r.heldout_loss),
              _pct(r.benefit, r.is_baseline), _pct(r.heldout_change, r.is_baseline)] for r in rows]
    widths = [max(len(h), *(len(c[k]) for c in cells)) for k, h in enumerate(HEADER)]

    def line(c: Sequence[str]) -> str:
        left = [c[0].ljust(widths[0]), c[1].ljust(widths[1])]
        right = [c[k].rjust(widths[k]) for k in range(2, len(HEADER))]
        return "  ".join(left + right).rstrip()

    out = [line(HEADER), "  ".join("-" * w for w in widths)]
    for k, (row, c) in enumerate(zip(rows, cells)):
        if k and row.task != rows[k - 1].task:
            out.append("")
        out.append(line(c))
    return "\n".join(out)


def table_csv(rows: Sequence[Row]) -> str:
    """The rows as CSV: losses as numbers, benefit and C4 change as fractions, empty where missing."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["task", "run", "sft_val_loss", "c4_val_loss", "benefit", "c4_change", "is_baseline"])
    for r in rows:
        w.writerow([r.task, r.run, *("" if v is None else repr(v) for v in
                                     (r.val_loss, r.heldout_loss, r.benefit, r.heldout_change)),
                    int(r.is_baseline)])
    return buf.getvalue()


def write_csv(rows: Sequence[Row], path: str | os.PathLike) -> None:
    atomic.write_text(path, table_csv(rows))


def plot_report(rows: Sequence[Row], path: str | os.PathLike) -> None:
    """Grouped bars PNG: left, SFT val loss per task (a bar per run, benefit written above);
    right, C4 val loss after SFT per task. A missing value is a gap marked "—"."""
    plt = pyplot()
    import numpy as np

    tasks = list(dict.fromkeys(r.task for r in rows))
    runs = list(dict.fromkeys(r.run for r in rows))
    by = {(r.task, r.run): r for r in rows}
    width = 0.8 / max(1, len(runs))
    x = np.arange(len(tasks))
    fig, axes = plt.subplots(1, 2, figsize=(max(8.0, 2.2 * len(tasks) * 2 + 2), 4.8), dpi=110)
    try:
        for ax, attr, title in ((axes[0], "val_loss", "SFT validation loss (lower is better)"),
                                (axes[1], "heldout_loss", "C4 held-out loss after SFT (forgetting)")):
            colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
            for j, run in enumerate(runs):
                heights = [getattr(by[(t, run)], attr) if (t, run) in by else None for t in tasks]
                xs = x - 0.4 + width * (j + 0.5)
                vals = [np.nan if h is None else h for h in heights]
                is_base = any(r.is_baseline for r in rows if r.run == run)
                bars = ax.bar(xs, vals, width, label=run, color=colors[j % len(colors)],
                              hatch="//" if is_base else None, edgecolor="white")
                for xi, h in zip(xs, heights):
                    if h is None:
                        ax.annotate(MISSING, (xi, 0), xycoords=("data", "axes fraction"), ha="center", va="bottom",
                                    fontsize=8, color="gray", xytext=(0, 2), textcoords="offset points")
                if attr == "val_loss":
                    for bar, t in zip(bars, tasks):
                        row = by.get((t, run))
                        if row is not None and row.benefit is not None and not row.is_baseline:
                            ax.annotate(f"{100 * row.benefit:+.1f}%", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                                        ha="center", va="bottom", fontsize=7, rotation=90,
                                        xytext=(0, 2), textcoords="offset points")
            finite = [getattr(r, attr) for r in rows if getattr(r, attr) is not None]
            if finite:
                lo, hi = min(finite), max(finite)
                pad = max(0.05 * (hi - lo), 0.02 * hi, 1e-3)
                ax.set_ylim(max(0.0, lo - 4 * pad), hi + 4 * pad)
            ax.set_xticks(x, labels=tasks)
            ax.set_xlim(-0.5, len(tasks) - 0.5)
            ax.set_xlabel("SFT task")
            ax.set_ylabel("cross-entropy (nats/token)")
            ax.set_title(title)
            ax.grid(axis="y", alpha=0.3)
        handles, labels = axes[0].get_legend_handles_labels()
        ncol = min(len(runs), 6)
        nrows = -(-len(runs) // ncol)
        fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=8, frameon=False,
                   title="run (hatched: baseline)", title_fontsize=8)
        fig.tight_layout(rect=(0, min(0.4, 0.06 + 0.05 * nrows), 1, 1))
        save_png(fig, path, tight=False)
    finally:
        plt.close(fig)  # also when drawing failed


def write_report(paths: Sequence[str | os.PathLike], baseline: str, out_dir: str | os.PathLike = ".") -> list[Row]:
    """Load the runs, build the table, write ``report.csv`` and ``report.png`` into ``out_dir``."""
    rows = report_table(load_results(paths), baseline)
    out = Path(out_dir)
    write_csv(rows, out / "report.csv")
    if rows:
        plot_report(rows, out / "report.png")
    return rows
