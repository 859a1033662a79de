"""``report.md`` of an experiment: tables, proximity-vs-benefit correlation, findings and plots.

Reads ``OUT/experiment.json`` (written by ``mixkit experiment``) and every run directory
it names, and writes ``OUT/report.md`` with PNGs under ``OUT/plots/``. The numbers:

- per task and variant, L = SFT validation loss (``sft[task].val_loss``) and C = held-out
  C4 loss after SFT (``sft[task].heldout_loss``), each the mean over the variant's seeds;
- benefit = ``(L_base - L_v) / L_base`` (positive: the variant is better), C4 change =
  ``(C_v - C_base) / C_base`` (positive: it forgot more), with the baseline's value the mean
  over its seeds;
- baseline seed spread = ``(max - min) / mean`` of the baseline's seeds (two or more seeds);
  a benefit (or C4 change) whose absolute value is smaller than it is marked † (not
  significant). With one baseline seed the spread, and so significance, is unknown;
- proximity advantage (from ``experiment.json``) against benefit per (variant, task), the
  baseline left out (its benefit is zero by definition), and Pearson's r per task and over
  all tasks pooled, undefined with fewer than 3 points or zero variance.

The "Findings" section judges the paper's three qualitative findings from these numbers
only. Runs that are missing or unfinished are left out of every number and listed at the end,
so a report can be written at any point of an experiment.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mixkit import atomic
from mixkit.errors import MixkitError
from mixkit.run_results import (
    pearson,
    pre_sft_heldout_loss,
    read_json_object,
    read_results,
    relative_benefit,
    relative_change,
    relative_spread,
    results_path,
    sft_losses,
)

EXPERIMENT_FILE = "experiment.json"
REPORT_FILE = "report.md"
PLOTS_DIR = "plots"
MISSING = "—"
NOT_SIGNIFICANT = "†"
# Finding (a) is about these SFT tasks and these midtraining datasets (matched by name family).
FINDING_A_TASKS = ("gsm8k", "code", "humaneval")
FINDING_A_DATA = ("code", "math")


# ----------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class Run:
    """One seed of one variant: where it is and what it has written (results None: not there yet)."""

    variant: str
    seed: str
    rel_path: str
    path: Path
    results: dict[str, Any] | None
    status: str  # "finished", or why there are no results


@dataclass
class Experiment:
    spec: dict[str, Any]
    dir: Path
    tasks: list[str]
    baseline: str
    mixtures: dict[str, dict[str, float]]  # variant -> normalised weights
    runs: dict[str, list[Run]]  # variant -> its seeds' runs; the baseline first, then experiment.json's order


def parse_mixture(mixture: Any) -> dict[str, float]:
    """``"c4:0.8,code:0.2"`` (or ``=``, or a dict) -> weights normalised to sum 1, zero weights dropped."""
    if isinstance(mixture, dict):
        items = list(mixture.items())
    elif isinstance(mixture, str):
        items = []
        for part in mixture.split(","):
            part = part.strip()
            if not part:
                continue
            name, sep, w = re.split(r"([:=])", part, maxsplit=1) if re.search(r"[:=]", part) else (part, "", "1")
            items.append((name.strip(), w.strip()))
    else:
        raise MixkitError(f"mixture must be a string like 'c4:0.8,code:0.2', got {mixture!r}")
    weights: dict[str, float] = {}
    for name, w in items:
        try:
            v = float(w)
        except (TypeError, ValueError):
            raise MixkitError(f"mixture weight of '{name}' is not a number: {w!r}") from None
        if not math.isfinite(v) or v < 0:
            raise MixkitError(f"mixture weight of '{name}' must be a non-negative number, got {w!r}")
        if v > 0:
            weights[str(name)] = weights.get(str(name), 0.0) + v
    total = sum(weights.values())
    return {k: v / total for k, v in weights.items()} if total > 0 else {}


def family(name: str) -> str:
    """A dataset or task name's family: its first alphanumeric word, lower case (``code-python`` -> ``code``)."""
    words = re.findall(r"[a-z0-9]+", name.lower())
    return words[0] if words else ""


def load_experiment(experiment_dir: str | Path) -> Experiment:
    """Read ``experiment.json`` and the results of every run it names (missing runs are kept, without results)."""
    d = Path(experiment_dir)
    f = d / EXPERIMENT_FILE
    if not f.is_file():
        raise MixkitError(f"{d}: no {EXPERIMENT_FILE} (not an experiment directory)")
    spec = read_json_object(f)
    tasks = spec.get("tasks")
    if not isinstance(tasks, list) or not all(isinstance(t, str) for t in tasks):
        raise MixkitError(f"{f}: 'tasks' must be a list of task names")
    variants = spec.get("variants")
    if not isinstance(variants, dict) or not variants:
        raise MixkitError(f"{f}: 'variants' must be a non-empty object of variant -> {{mixture, runs}}")
    baseline = spec.get("baseline")
    if baseline not in variants:
        raise MixkitError(f"{f}: baseline {baseline!r} is not among the variants ({', '.join(variants)})")
    mixtures: dict[str, dict[str, float]] = {}
    runs: dict[str, list[Run]] = {}
    for name in [baseline, *(v for v in variants if v != baseline)]:  # the baseline first, then the file's order
        v = variants[name]
        if not isinstance(v, dict):
            raise MixkitError(f"{f}: variant '{name}' must be an object with 'mixture' and 'runs'")
        mixtures[name] = parse_mixture(v.get("mixture", ""))
        seeds = v.get("runs") or {}
        if not isinstance(seeds, dict):
            raise MixkitError(f"{f}: variant '{name}': 'runs' must map seed -> run directory")
        runs[name] = [_load_run(d, name, str(seed), str(rel)) for seed, rel in seeds.items()]
    return Experiment(spec=spec, dir=d, tasks=list(tasks), baseline=baseline, mixtures=mixtures, runs=runs)


def _load_run(exp_dir: Path, variant: str, seed: str, rel: str) -> Run:
    path = exp_dir / rel
    if not path.is_dir():
        return Run(variant, seed, rel, path, None, "not started (no run directory)")
    if not results_path(path).is_file():
        return Run(variant, seed, rel, path, None, "unfinished (no results.json yet)")
    try:
        results = read_results(path)
    except MixkitError as e:
        return Run(variant, seed, rel, path, None, f"unreadable results.json ({e.message})")
    return Run(variant, seed, rel, path, results, "finished")


# ----------------------------------------------------------------------------- tables


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


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _significant(value: float | None, spread: float | None) -> bool | None:
    if value is None or spread is None:
        return None
    return abs(value) >= spread


def task_tables(exp: Experiment) -> list[TaskTable]:
    """Per task, the cells of every variant (the baseline first), compared with the baseline's seed mean."""
    tables = []
    for task in exp.tasks:
        losses = {}
        for variant, runs in exp.runs.items():
            pairs = [sft_losses(r.results, task) for r in runs if r.results is not None]
            losses[variant] = (tuple(v for v, _ in pairs if v is not None), tuple(h for _, h in pairs if h is not None))
        base_val, base_held = losses[exp.baseline]
        spread, held_spread = relative_spread(base_val), relative_spread(base_held)
        lb, cb = _mean(base_val), _mean(base_held)
        cells = []
        for variant, (vals, helds) in losses.items():
            lv, cv = _mean(vals), _mean(helds)
            benefit = relative_benefit(lb, lv)
            change = relative_change(cb, cv)
            is_base = variant == exp.baseline
            cells.append(Cell(task, variant, vals, helds, lv, cv, benefit, change,
                              None if is_base else _significant(benefit, spread),
                              None if is_base else _significant(change, held_spread)))
        tables.append(TaskTable(task, spread, held_spread, len(base_val), tuple(cells)))
    return tables


@dataclass(frozen=True)
class Point:
    variant: str
    task: str
    proximity: float
    benefit: float


def proximity_points(exp: Experiment, tables: Sequence[TaskTable]) -> list[Point]:
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


# ----------------------------------------------------------------------------- findings


@dataclass
class Finding:
    key: str
    claim: str
    verdict: str  # "holds", "holds in part", "not significant", "does not hold", "cannot be checked"
    details: list[str] = field(default_factory=list)


def _pct(v: float | None) -> str:
    return MISSING if v is None else f"{100 * v:+.2f}%"


def _spread(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.2f}%"


def _verdict(outcomes: Sequence[tuple[bool, bool | None]]) -> str:
    """From (direction as claimed, beyond the seed spread) pairs: how far the claim holds."""
    if not outcomes:
        return "cannot be checked"
    good = [sig for ok, sig in outcomes if ok]
    all_ok = len(good) == len(outcomes)
    if not good:
        return "does not hold"
    if all_ok and all(s is True for s in good):
        return "holds"
    if any(s is True for s in good):
        return "holds in part"
    if all(s is False for s in good):
        return ("holds, but within the seed spread (not significant)" if all_ok
                else "does not hold (the improvements seen are within the seed spread)")
    return ("holds" if all_ok else "holds in part") + ", significance unknown (seed spread not measured)"


def _tally(outcomes: Sequence[tuple[bool, bool | None]]) -> str:
    """One line counting the comparisons for and against the claim, and how many exceed the seed spread."""
    def count(ok: bool) -> str:
        sel = [sig for o, sig in outcomes if o == ok]
        beyond = sum(s is True for s in sel)
        known = sum(s is not None for s in sel)
        return f"{len(sel)}" + (f" ({beyond} beyond the seed spread)" if known else "")

    return (f"Of {len(outcomes)} comparisons, {count(True)} go the way the paper found and "
            f"{count(False)} the other way.")


def _significance_words(sig: bool | None, spread: float | None) -> str:
    if sig is None:
        return "seed spread unknown"
    return f"{'beyond' if sig else 'within'} the baseline seed spread of {_spread(spread)}"


def finding_a(exp: Experiment, tables: Sequence[TaskTable]) -> Finding:
    claim = ("Midtraining on code or math (a mixture that includes code or math, not 100%) lowers the code/GSM8K "
             "SFT validation loss versus the baseline.")
    variants = [v for v, m in exp.mixtures.items()
                if v != exp.baseline and len(m) > 1 and any(family(d) in FINDING_A_DATA for d in m)]
    targets = exp.spec.get("task_targets") or {}
    relevant = [t for t in tables
                if family(t.task) in FINDING_A_TASKS or family(str(targets.get(t.task, ""))) in FINDING_A_TASKS]
    f = Finding("a", claim, "cannot be checked")
    if not variants:
        f.details.append("No variant mixes code or math into the pretraining data.")
    if not relevant:
        f.details.append("No code or GSM8K SFT task in this experiment.")
    outcomes = []
    for t in relevant:
        by = {c.variant: c for c in t.cells}
        measured = [by[v] for v in variants if by[v].benefit is not None]
        if not measured:
            if variants:
                f.details.append(f"{t.task}: no code/math mixture variant has results yet.")
            continue
        better = [c for c in measured if c.benefit > 0]
        worse = [c for c in measured if c.benefit <= 0]
        parts = []
        if better:
            parts.append("beat the baseline: " + ", ".join(
                f"{c.variant} ({_pct(c.benefit)}, {_significance_words(c.significant, t.spread)})" for c in better))
        if worse:
            parts.append("do not: " + ", ".join(f"{c.variant} ({_pct(c.benefit)})" for c in worse))
        f.details.append(f"{t.task}: " + "; ".join(parts) + ".")
        outcomes += [(c.benefit > 0, c.significant) for c in measured]
    f.verdict = _verdict(outcomes)
    if outcomes:
        f.details.insert(0, _tally(outcomes))
    return f


def finding_b(exp: Experiment, tables: Sequence[TaskTable]) -> Finding:
    claim = ("A mixture forgets less (lower C4 loss after SFT) than continued pretraining on 100% of the same "
             "midtraining data.")
    f = Finding("b", claim, "cannot be checked")
    pure = {next(iter(m)): v for v, m in exp.mixtures.items() if len(m) == 1 and v != exp.baseline}
    base_data = set(exp.mixtures[exp.baseline])
    pairs = [(mv, pure[d]) for d in pure if d not in base_data
             for mv, m in exp.mixtures.items() if mv not in (exp.baseline, pure[d]) and len(m) > 1 and d in m]
    if not pairs:
        f.details.append("No pair of a mixture and the 100% variant of the same dataset (e.g. code20 and code100).")
        return f
    outcomes = []
    for t in tables:
        by = {c.variant: c for c in t.cells}
        base_c4 = by[exp.baseline].heldout_loss
        for mv, pv in pairs:
            cm, cp = by[mv].heldout_loss, by[pv].heldout_loss
            if cm is None or cp is None:
                f.details.append(f"{t.task}: {mv} vs {pv}: not both measured yet.")
                continue
            diff = None if base_c4 is None else (cp - cm) / base_c4
            sig = _significant(diff, t.heldout_spread)
            rel = "" if diff is None else f", difference {_pct(diff)} of the baseline's C4 loss"
            word = "lower" if cm < cp else "not lower"
            f.details.append(f"{t.task}: {mv} C4 loss {cm:.4f} vs {pv} {cp:.4f}: {word}{rel} "
                             f"({_significance_words(sig, t.heldout_spread)}).")
            outcomes.append((cm < cp, sig))
    f.verdict = _verdict(outcomes)
    if outcomes:
        f.details.insert(0, _tally(outcomes))
    return f


def _size(r: float) -> str:
    a = abs(r)
    return "negligible" if a < 0.1 else "weak" if a < 0.3 else "moderate" if a < 0.5 else "strong"


def finding_c(corrs: Sequence[Correlation]) -> Finding:
    claim = "The proximity advantage of a mixture toward a task correlates positively with its benefit on that task."
    f = Finding("c", claim, "cannot be checked")
    for c in corrs:
        if c.r is None:
            f.details.append(f"{c.scope}: r undefined (n = {c.n}; needs 3 or more points with some variance).")
        else:
            sign = "positive" if c.r > 0 else "negative" if c.r < 0 else "zero"
            f.details.append(f"{c.scope}: r = {c.r:+.3f} (n = {c.n}), {sign} and {_size(c.r)}.")
    overall = corrs[-1]
    if overall.r is not None and overall.n < 10:
        f.details.append(f"With only {overall.n} points, r is a rough indication, not a measurement.")
    if overall.r is not None:
        f.verdict = ("holds" if overall.r >= 0.3 else "holds only weakly" if overall.r > 0 else "does not hold")
    return f


def findings(exp: Experiment, tables: Sequence[TaskTable], corrs: Sequence[Correlation]) -> list[Finding]:
    return [finding_a(exp, tables), finding_b(exp, tables), finding_c(corrs)]


# ----------------------------------------------------------------------------- markdown


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str) -> list[str]:
    """A GitHub pipe table; ``align`` has one 'l' or 'r' per column."""
    def esc(s: str) -> str:
        return s.replace("|", "\\|")

    lines = ["| " + " | ".join(esc(h) for h in header) + " |",
             "|" + "|".join(":---" if a == "l" else "---:" for a in align) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return lines


def _loss(v: float | None) -> str:
    return MISSING if v is None else f"{v:.4f}"


def _mark(v: float | None, sig: bool | None) -> str:
    return _pct(v) + (f" {NOT_SIGNIFICANT}" if sig is False else "")


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


def render_markdown(exp: Experiment, tables: Sequence[TaskTable], points: Sequence[Point],
                    corrs: Sequence[Correlation], found: Sequence[Finding], plots: Sequence[tuple[str, str]],
                    missing: Sequence[str]) -> str:
    """The whole report.md; ``plots`` are (title, path relative to the report) of the PNGs written."""
    spec = exp.spec
    name = spec.get("name") or exp.dir.name
    all_runs = [r for rs in exp.runs.values() for r in rs]
    finished = sum(r.results is not None for r in all_runs)
    targets = spec.get("task_targets") or {}
    out = [f"# Experiment report: {name}", ""]
    out.append(f"- Command: `{spec['command']}`" if spec.get("command") else "- Command: " + MISSING)
    out.append(f"- Scale: {_scale_text(spec.get('scale'))}")
    out.append("- SFT tasks: " + (", ".join(
        f"{t} (distribution: `{targets[t]}`)" if t in targets else t for t in exp.tasks) or MISSING))
    out.append(f"- Baseline variant: `{exp.baseline}`; distance for proximity: {spec.get('metric', MISSING)}")
    out.append(f"- Runs with results: {finished} of {len(all_runs)}"
               + (" (see [Missing results](#missing-results))" if missing else ""))
    out += ["", "## Variants", ""]
    rows = []
    for v, runs in exp.runs.items():
        done = [r for r in runs if r.results is not None]
        pre = [x for x in (pre_sft_heldout_loss(r.results) for r in done) if x is not None]
        rows.append([v + (" (baseline)" if v == exp.baseline else ""), _mixture_text(exp.mixtures[v]),
                     ", ".join(r.seed for r in runs) or MISSING, f"{len(done)}/{len(runs)}", _loss(_mean(pre))])
    out += _md_table(["variant", "midtraining mixture", "seeds", "finished", "C4 loss before SFT"], rows, "lllrr")

    out += ["", "## SFT validation loss, C4 loss and benefit", "",
            "Per task and variant, the mean over the variant's seeds of the SFT validation loss L (answer tokens) "
            "and of the held-out C4 loss C measured after SFT. "
            f"benefit = (L_base − L) / L_base (positive: better than `{exp.baseline}`); "
            "C4 change = (C − C_base) / C_base (positive: more forgetting). "
            "Spread = (max − min) / mean of the baseline's seeds; "
            f"{NOT_SIGNIFICANT} marks a benefit or change smaller in absolute value than that spread (not significant)."]
    for t in tables:
        out += ["", f"### {t.task}", ""]
        rows = []
        for c in t.cells:
            is_base = c.variant == exp.baseline
            rows.append([c.variant + (" (baseline)" if is_base else ""), str(len(c.val_losses)), _loss(c.val_loss),
                         "baseline" if is_base else _mark(c.benefit, c.significant),
                         "" if is_base or c.benefit is None else _spread(t.spread),
                         _loss(c.heldout_loss),
                         "baseline" if is_base else _mark(c.heldout_change, c.heldout_significant),
                         "" if is_base or c.heldout_change is None else _spread(t.heldout_spread)])
        out += _md_table(["variant", "seeds", "SFT val loss", "benefit", "spread", "C4 loss after SFT",
                          "C4 change", "C4 spread"], rows, "lrrrrrrr")
        if t.baseline_seeds < 2:
            out += ["", f"Spread n/a: the baseline has {t.baseline_seeds} seed(s) with results on {t.task}, so "
                        "significance cannot be judged."]
    if any(c.significant is False or c.heldout_significant is False for t in tables for c in t.cells):
        out += ["", f"{NOT_SIGNIFICANT} not significant: smaller in absolute value than the baseline's seed spread."]

    out += ["", "## Proximity advantage and benefit", "",
            f"Proximity advantage = d(pretraining data, task) − d(mixture, task) with d the {spec.get('metric', '')} "
            f"distance of unigram distributions, measured before any training. The baseline (advantage 0 and "
            f"benefit 0 by definition) is left out.", ""]
    if points:
        out += _md_table(["variant", "task", "proximity advantage", "benefit"],
                         [[p.variant, p.task, f"{p.proximity:+.4f}", _pct(p.benefit)] for p in points], "llrr")
    else:
        out.append("No variant has both a proximity advantage and a benefit yet.")
    out.append("")
    out += _md_table(["tasks", "Pearson r", "n"],
                     [[c.scope, "undefined" if c.r is None else f"{c.r:+.3f}", str(c.n)] for c in corrs], "lrr")
    out += ["", "r is undefined with fewer than 3 points or when either variable does not vary."]

    out += ["", "## Findings", "",
            "Each of the paper's qualitative findings, judged from the numbers above at this scale."]
    for f in found:
        out += ["", f"**({f.key}) {f.claim}** — **{f.verdict}.**", ""]
        out += [f"- {d}" for d in f.details] or ["- No data yet."]

    if plots:
        out += ["", "## Plots"]
        for title, rel in plots:
            out += ["", f"### {title}", "", f"![{title}]({rel})"]

    out += ["", "## Missing results", ""]
    out += [f"- {m}" for m in missing] or ["Nothing missing: every run finished every task."]
    return "\n".join(out) + "\n"


def missing_items(exp: Experiment, tables: Sequence[TaskTable]) -> list[str]:
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
    if not _distance(exp.spec):
        items.append("distance matrix: absent from experiment.json (no heatmap)")
    return items


def _distance(spec: dict[str, Any]) -> tuple[np.ndarray, list[str]] | None:
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


def write_report(experiment_dir: Path) -> Path:
    """Write ``report.md`` and ``plots/*.png`` into the experiment directory; return the report's path."""
    from mixkit import experiment_plots as ep

    exp = load_experiment(experiment_dir)
    tables = task_tables(exp)
    points = proximity_points(exp, tables)
    corrs = correlations(points, exp.tasks)
    found = findings(exp, tables, corrs)
    plots_dir = exp.dir / PLOTS_DIR
    plots: list[tuple[str, str]] = []

    dist = _distance(exp.spec)
    if dist is not None:
        from mixkit.distance_plot import plot_distance_matrix

        m, labels = dist
        metric = str(exp.spec.get("metric", "distance"))
        plot_distance_matrix(m, labels, metric, plots_dir / "distance.png",
                             title=f"{metric} distance between datasets (unigram distributions)")
        plots.append(("Distance between datasets", f"{PLOTS_DIR}/distance.png"))
    if ep.plot_loss_curves(exp, plots_dir / "loss_curves.png"):
        plots.append(("Loss curves per stage", f"{PLOTS_DIR}/loss_curves.png"))
    if points:
        ep.plot_benefit_vs_proximity(points, corrs, str(exp.spec.get("metric", "")), plots_dir / "benefit_vs_proximity.png")
        plots.append(("Benefit against proximity advantage", f"{PLOTS_DIR}/benefit_vs_proximity.png"))
    if any(c.val_loss is not None and c.heldout_loss is not None for t in tables for c in t.cells):
        ep.plot_forgetting(tables, exp.baseline, plots_dir / "forgetting_vs_task_loss.png")
        plots.append(("Forgetting against task loss", f"{PLOTS_DIR}/forgetting_vs_task_loss.png"))

    text = render_markdown(exp, tables, points, corrs, found, plots, missing_items(exp, tables))
    path = exp.dir / REPORT_FILE
    atomic.write_text(path, text)
    return path
