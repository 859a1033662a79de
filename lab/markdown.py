"""The markdown of a study's report: the experiment's sections, and a sweep's sections composed before them.

Everything here is text made from ``lab.analysis`` numbers and ``lab.findings`` verdicts;
nothing is computed here that a plot or a test could not read from those dataclasses.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from lab.analysis import (
    Correlation,
    Point,
    SweepGrid,
    TaskTable,
    compare_axes,
    distance_matrix,
    earlier_minus_later,
    sweep_spec,
)
from lab.findings import Finding, comparison_sentence, timing_verdict
from lab.formatting import MISSING, NOT_SIGNIFICANT, loss_text, md_table, pct, pp, spread_text
from lab.results import StudyResults
from lab.statistics import mean_or_none
from trainer.run_dir import pre_sft_heldout_loss, sft_losses


def heading(level: int, text: str, depth: int = 0) -> str:
    return "#" * (level + depth) + " " + text


def _mark(v: float | None, sig: bool | None) -> str:
    return pct(v) + (f" {NOT_SIGNIFICANT}" if sig is False else "")


def _mixture_text(m: dict[str, float]) -> str:
    return ", ".join(f"{k} {100 * w:g}%" for k, w in m.items()) or MISSING


def _scale_text(scale: Any) -> str:
    if not isinstance(scale, dict) or not scale:
        return MISSING
    parts = []
    for k, v in scale.items():
        if isinstance(v, int) and not isinstance(v, bool):
            parts.append(f"{k} {v:,}")
        else:
            parts.append(f"{k} {v}")
    return ", ".join(parts)


def render_experiment(exp: StudyResults, tables: Sequence[TaskTable], points: Sequence[Point],
                      corrs: Sequence[Correlation], found: Sequence[Finding], plots: Sequence[tuple[str, str]],
                      missing: Sequence[str], depth: int = 0) -> list[str]:
    """The experiment report's lines; ``plots`` are (title, path relative to the report) of the PNGs
    written; ``depth`` moves every heading that many levels down (for a section of a larger report)."""
    spec = exp.spec
    name = spec.get("name") or exp.dir.name
    all_runs = [r for rs in exp.runs.values() for r in rs]
    finished = sum(r.results is not None for r in all_runs)
    targets = spec.get("task_targets") or {}
    out = [heading(1, f"Experiment report: {name}", depth), ""]
    out.append(f"- Command: `{spec['command']}`" if spec.get("command") else "- Command: " + MISSING)
    out.append(f"- Scale: {_scale_text(spec.get('scale'))}")
    out.append("- SFT tasks: " + (", ".join(
        f"{t} (distribution: `{targets[t]}`)" if t in targets else t for t in exp.tasks) or MISSING))
    out.append(f"- Baseline variant: `{exp.baseline}`; distance for proximity: {spec.get('metric', MISSING)}")
    out.append(f"- Runs with results: {finished} of {len(all_runs)}"
               + (" (see [Missing results](#missing-results))" if missing else ""))
    out += ["", heading(2, "Variants", depth), ""]
    rows = []
    for v, runs in exp.runs.items():
        done = [r for r in runs if r.results is not None]
        pre = [x for x in (pre_sft_heldout_loss(r.results) for r in done) if x is not None]
        rows.append([v + (" (baseline)" if v == exp.baseline else ""), _mixture_text(exp.mixtures[v]),
                     ", ".join(r.seed for r in runs) or MISSING, f"{len(done)}/{len(runs)}", loss_text(mean_or_none(pre))])
    out += md_table(["variant", "midtraining mixture", "seeds", "finished", "C4 loss before SFT"], rows, "lllrr")

    out += ["", heading(2, "SFT validation loss, C4 loss and benefit", depth), "",
            "Per task and variant, the mean over the variant's seeds of the SFT validation loss L (answer tokens) "
            "and of the held-out C4 loss C measured after SFT. "
            f"benefit = (L_base − L) / L_base (positive: better than `{exp.baseline}`); "
            "C4 change = (C − C_base) / C_base (positive: more forgetting). "
            "Spread = (max − min) / mean of the baseline's seeds; "
            f"{NOT_SIGNIFICANT} marks a benefit or change smaller in absolute value than that spread (not significant)."]
    for t in tables:
        out += ["", heading(3, t.task, depth), ""]
        rows = []
        for c in t.cells:
            is_base = c.variant == exp.baseline
            rows.append([c.variant + (" (baseline)" if is_base else ""), str(len(c.val_losses)), loss_text(c.val_loss),
                         "baseline" if is_base else _mark(c.benefit, c.significant),
                         "" if is_base or c.benefit is None else spread_text(t.spread),
                         loss_text(c.heldout_loss),
                         "baseline" if is_base else _mark(c.heldout_change, c.heldout_significant),
                         "" if is_base or c.heldout_change is None else spread_text(t.heldout_spread)])
        out += md_table(["variant", "seeds", "SFT val loss", "benefit", "spread", "C4 loss after SFT",
                          "C4 change", "C4 spread"], rows, "lrrrrrrr")
        if t.baseline_seeds < 2:
            out += ["", f"Spread n/a: the baseline has {t.baseline_seeds} seed(s) with results on {t.task}, so "
                        "significance cannot be judged."]
    if any(c.significant is False or c.heldout_significant is False for t in tables for c in t.cells):
        out += ["", f"{NOT_SIGNIFICANT} not significant: smaller in absolute value than the baseline's seed spread."]

    out += ["", heading(2, "Proximity advantage and benefit", depth), "",
            f"Proximity advantage = d(pretraining data, task) − d(mixture, task) with d the {spec.get('metric', '')} "
            f"distance of unigram distributions, measured before any training. The baseline (advantage 0 and "
            f"benefit 0 by definition) is left out.", ""]
    if points:
        out += md_table(["variant", "task", "proximity advantage", "benefit"],
                         [[p.variant, p.task, f"{p.proximity:+.4f}", pct(p.benefit)] for p in points], "llrr")
    else:
        out.append("No variant has both a proximity advantage and a benefit yet.")
    out.append("")
    out += md_table(["tasks", "Pearson r", "n"],
                     [[c.scope, "undefined" if c.r is None else f"{c.r:+.3f}", str(c.n)] for c in corrs], "lrr")
    out += ["", "r is undefined with fewer than 3 points or when either variable does not vary."]

    out += ["", heading(2, "Findings", depth), "",
            "Each of the paper's qualitative findings, judged from the numbers above at this scale."]
    for f in found:
        out += ["", f"**({f.key}) {f.claim}** — **{f.verdict}.**", ""]
        out += [f"- {d}" for d in f.details] or ["- No data yet."]

    if plots:
        out += ["", heading(2, "Plots", depth)]
        for title, rel in plots:
            out += ["", heading(3, title, depth), "", f"![{title}]({rel})"]

    out += ["", heading(2, "Missing results", depth), ""]
    out += [f"- {m}" for m in missing] or ["Nothing missing: every run finished every task."]
    return out


def missing_items(exp: StudyResults, tables: Sequence[TaskTable]) -> list[str]:
    """Runs without results, finished runs without an SFT task, variants without a proximity, absent inputs."""
    items = []
    for runs in exp.runs.values():
        for r in runs:
            if r.results is None:
                items.append(f"run `{r.rel_path}` ({r.variant}, seed {r.seed}): {r.status}")
                continue
            lacking = [t for t in exp.tasks if sft_losses(r.results, t)[0] is None]
            if lacking:
                items.append(f"run `{r.rel_path}` ({r.variant}, seed {r.seed}): no SFT validation loss for "
                             + ", ".join(lacking))
    for v, runs in exp.runs.items():
        if not runs:
            items.append(f"variant {v}: no runs listed")
    prox = exp.spec.get("proximity") or {}
    for v in exp.runs:
        if v == exp.baseline:
            continue
        pv = prox.get(v) if isinstance(prox.get(v), dict) else {}
        lacking = [t for t in exp.tasks if not isinstance(pv.get(t), (int, float))]
        if lacking:
            items.append(f"variant {v}: no proximity advantage for " + ", ".join(lacking))
    if not distance_matrix(exp.spec):
        items.append("distance matrix: absent from experiment.json (no heatmap)")
    return items


def render_sweep(exp: StudyResults, grids: Sequence[SweepGrid], plots: Sequence[tuple[str, str]]) -> list[str]:
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
    word, details = timing_verdict(grids)
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
            out.append(f"- Earliest minus latest start, benefit (mean over ratios): {pp(e)}.")
        out += ["", "Benefit (rows: start step, columns: ratio):", ""]
        header = ["start step"] + [f"{100 * r:g}%" for r in g.ratios]
        out += md_table(header, [[str(s)] + [pct(v) for v in g.benefit[i]] for i, s in enumerate(g.start_steps)],
                         "r" * len(header))
        base = MISSING if g.baseline_heldout is None else f"{g.baseline_heldout:.4f}"
        out += ["", f"C4 loss after SFT (baseline {base}; C4 change in parentheses, positive = more forgetting):", ""]
        rows = [[str(s)] + [MISSING if not math.isfinite(v) else f"{v:.4f} ({pct(ch)})"
                            for v, ch in zip(g.heldout[i], g.heldout_change[i])] for i, s in enumerate(g.start_steps)]
        out += md_table(header, rows, "r" * len(header))
    if plots:
        out += ["", "## Sweep plots"]
        for title, rel in plots:
            out += ["", f"### {title}", "", f"![{title}]({rel})"]
    return out



def experiment_markdown(*args: Any, **kwargs: Any) -> str:
    """``render_experiment`` as the text of a whole file."""
    return "\n".join(render_experiment(*args, **kwargs)) + "\n"


def sweep_markdown(exp: StudyResults, grids: Sequence[SweepGrid], sweep_plots: Sequence[tuple[str, str]],
                   experiment_lines: Sequence[str]) -> str:
    """The sweep's sections, then the experiment report (every variant's numbers) one heading level down."""
    lines = render_sweep(exp, grids, sweep_plots) + ["", heading(2, "Per-variant details")] + list(experiment_lines[1:])
    return "\n".join(lines) + "\n"
