"""Writing a study's ``report.md`` and its plots: load results → statistics → findings → markdown → plots.

``write_report(dir)`` reads ``dir/experiment.json`` and the run directories it names and
writes ``dir/report.md`` with PNGs under ``dir/plots/``; for a sweep (``experiment.json``
has a ``sweep`` entry) the report is the sweep's sections (timing or ratio, the grids,
their plots) followed by the experiment's sections one heading level down. Runs that are
missing or unfinished are left out of every number and listed at the end, so a report can
be written at any point of a study.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lab import plots
from lab.analysis import distance_matrix, proximity_analyses, scale_check, sweep_grids, sweep_spec, task_tables
from lab.findings import Finding, findings, sweep_findings
from lab.markdown import missing_items, render_experiment, render_sweep, sweep_markdown
from lab.results import PLOTS_DIR, REPORT_FILE, StudyResults, load_results
from mixkit import atomic
from mixkit.distance_plot import plot_distance_matrix


def experiment_sections(exp: StudyResults, depth: int = 0, verdicts: bool = True) -> tuple[list[str], list[Finding]]:
    """The experiment report's lines and its findings (writing its plots on the way)."""
    tables = task_tables(exp)
    analyses = proximity_analyses(exp, tables)
    scale = scale_check(exp)
    found = findings(exp, tables, analyses, scale)
    plots_dir = exp.dir / PLOTS_DIR
    written: list[tuple[str, str]] = []

    dist = distance_matrix(exp.spec)
    if dist is not None:
        m, labels = dist
        metric = str(exp.spec.get("metric", "distance"))
        plot_distance_matrix(m, labels, metric, plots_dir / "distance.png",
                             title=f"{metric} distance between datasets (unigram distributions)")
        written.append(("Distance between datasets", f"{PLOTS_DIR}/distance.png"))
    if plots.plot_loss_curves(exp, plots_dir / "loss_curves.png"):
        written.append(("Loss curves per stage", f"{PLOTS_DIR}/loss_curves.png"))
    if analyses[0].points:
        plots.plot_benefit_vs_proximity(analyses[0], plots_dir / "benefit_vs_proximity.png")
        written.append(("Benefit against proximity advantage", f"{PLOTS_DIR}/benefit_vs_proximity.png"))
    if any(c.val_loss is not None and c.heldout_loss is not None for t in tables for c in t.cells):
        plots.plot_forgetting(tables, exp.baseline, plots_dir / "forgetting_vs_task_loss.png")
        written.append(("Forgetting against task loss", f"{PLOTS_DIR}/forgetting_vs_task_loss.png"))
    lines = render_experiment(exp, tables, analyses, found, scale, written, missing_items(exp, tables), depth=depth,
                              verdicts=verdicts)
    return lines, found


def write_experiment_report(experiment_dir: str | Path) -> Path:
    """Write ``report.md`` and ``plots/*.png`` of an experiment; return the report's path."""
    exp = load_results(experiment_dir)
    path = exp.dir / REPORT_FILE
    atomic.write_text(path, "\n".join(experiment_sections(exp)[0]) + "\n")
    return path


def write_sweep_report(sweep_dir: str | Path) -> Path:
    """Write ``report.md`` (sweep sections, then the experiment's) and the plots; return its path."""
    exp = load_results(sweep_dir)
    sweep_spec(exp)
    grids = sweep_grids(exp, task_tables(exp))
    written: list[tuple[str, str]] = []
    for task in exp.tasks:
        tg = [g for g in grids if g.task == task]
        if any(np.isfinite(g.benefit).any() or np.isfinite(g.heldout).any() for g in tg):
            plots.plot_heatmaps(tg, exp.dir / PLOTS_DIR / f"sweep_heatmap_{task}.png")
            written.append((f"{task}: benefit and C4 loss over start step × ratio", f"{PLOTS_DIR}/sweep_heatmap_{task}.png"))
    if any(np.isfinite(g.benefit).any() for g in grids):
        plots.plot_benefit_lines(grids, exp.dir / PLOTS_DIR / "sweep_benefit_vs_start.png")
        written.append(("Benefit against start step, one line per ratio", f"{PLOTS_DIR}/sweep_benefit_vs_start.png"))
    experiment_lines, experiment_found = experiment_sections(exp, depth=1, verdicts=False)
    scale = scale_check(exp)
    text = sweep_markdown(render_sweep(exp, grids, sweep_findings(grids, scale), scale, experiment_found, written),
                          experiment_lines)
    path = exp.dir / REPORT_FILE
    atomic.write_text(path, text)
    return path


def write_report(study_dir: str | Path) -> Path:
    """The report a study's folder calls for: a sweep's when ``experiment.json`` describes a sweep."""
    exp = load_results(study_dir)
    return write_sweep_report(study_dir) if isinstance(exp.spec.get("sweep"), dict) else write_experiment_report(study_dir)


def report_sections(report: Path) -> str:
    """What a command prints of a written report: from the first section to the per-variant details."""
    text = report.read_text()
    start = text.find("\n## ")
    end = text.find("\n## Per-variant")
    return text[start + 1: end if end > start else None] if start >= 0 else text
