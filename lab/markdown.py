"""The markdown of a study's report: verdicts first, then the evidence; a sweep's sections composed before it.

Everything here is text made from ``lab.analysis`` numbers and ``lab.findings`` verdicts;
nothing is computed here that a plot or a test could not read from those dataclasses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lab.analysis import (
    ProximityAnalysis,
    ScaleCheck,
    SweepGrid,
    TaskTable,
    distance_matrix,
    earlier_minus_later,
    sweep_spec,
)
from lab.control import GUARD_MARGIN_NATS
from lab.findings import Finding
from lab.formatting import MISSING, NOT_SIGNIFICANT, ci_text, loss_text, md_table, p_text, pct, pp
from lab.results import StudyResults
from lab.statistics import ALPHA, Estimate, mean_or_none
from lab.verdicts import NOT_INTERPRETABLE
from trainer.run_dir import pre_sft_heldout_loss, sft_losses

NO_REPLICATE = "n/r"


def heading(level: int, text: str, depth: int = 0) -> str:
    return "#" * (level + depth) + " " + text


def _marked(e: Estimate | None) -> str:
    """A mean effect with its significance mark: † not significant at α, n/r no replicate (not tested)."""
    if e is None or e.n == 0:
        return MISSING
    if not e.tested:
        return f"{pct(e.mean)} {NO_REPLICATE}"
    return pct(e.mean) + (f" {NOT_SIGNIFICANT}" if e.p >= ALPHA else "")


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


def _tokenizer_text(tok: Any) -> str:
    if not isinstance(tok, dict):
        return MISSING
    text = f"`{tok.get('file', MISSING)}` (sha256 {str(tok.get('sha256', ''))[:12]}, vocabulary {tok.get('vocab_size', MISSING)}"
    if tok.get("trained_on"):
        text += f", trained on {', '.join(tok['trained_on'])}"
    if tok.get("model_vocab_size"):
        text += f"; model vocabulary {tok['model_vocab_size']}"
    return text + ")"


def _seeds_text(exp: StudyResults) -> str:
    base = len(exp.runs.get(exp.baseline, []))
    others = sorted({len(rs) for v, rs in exp.runs.items() if v != exp.baseline})
    return f"baseline × {base}, other variants × " + ("/".join(map(str, others)) if others else MISSING)


def verdict_lines(found: Sequence[Finding], scale: ScaleCheck, depth: int = 0) -> list[str]:
    """The headline: the scale guard first when it fails, then every verdict with its reason."""
    out = [heading(2, "Verdicts", depth), ""]
    if scale.ok is False:
        out += [f"**Not interpretable: {scale.reason}.** Every verdict below is therefore \"not interpretable\"; "
                f"the tables show what was measured.", ""]
    elif scale.ok is None:
        out += [f"Scale guard not applied: {scale.reason}.", ""]
    out += md_table(["finding", "verdict", "why"],
                    [[f"({f.key}) {f.claim}", f"**{f.verdict.word}**", f.verdict.reason] for f in found], "lll")
    return out


def scale_lines(scale: ScaleCheck, exp: StudyResults, depth: int = 0) -> list[str]:
    uni = exp.spec.get("unigram") if isinstance(exp.spec.get("unigram"), dict) else {}
    out = [heading(2, "Scale guard and unigram control", depth), "",
           "A model that learned only token frequencies would score the unigram cross-entropy "
           "H = −Σ c(t) ln p̂(t) / Σ c(t), with p̂ the add-one-smoothed unigram model of the run's training stream. "
           f"The verdicts are interpretable only when the baseline's held-out C4 loss is at least "
           f"{GUARD_MARGIN_NATS:g} nats below H.", ""]
    b = scale.baseline_heldout
    out.append(f"- Unigram cross-entropy of the held-out C4 tokens ({uni.get('heldout_docs', MISSING)} documents) "
               f"under the baseline's stream ({uni.get('stream_tokens', MISSING)} tokens): "
               f"{loss_text(scale.unigram_heldout_ce)} nats")
    out.append(f"- Baseline held-out C4 loss before SFT: {loss_text(b.mean)} nats (n = {b.n}"
               + (f", 95% CI [{b.ci[0]:.4f}, {b.ci[1]:.4f}]" if b.ci else "") + ")")
    word = {True: "passed", False: "failed", None: "not applied"}[scale.ok]
    out.append(f"- Guard {word}: {scale.reason}.")
    out.append("- Per task, the unigram benefit (what token frequencies alone would gain from each variant's "
               "stream) and the measured benefit's excess over it are in the tables below.")
    return out


def _task_rows(t: TaskTable, baseline: str) -> list[list[str]]:
    rows = []
    for c in t.cells:
        if c.variant == baseline:
            rows.append([f"{c.variant} (baseline)", str(c.seeds), loss_text(c.val_loss), "baseline", "", "", "", "",
                         loss_text(c.heldout_loss), "baseline", "", ""])
            continue
        b, h = c.benefit_test, c.heldout_test
        rows.append([c.variant, str(c.seeds), loss_text(c.val_loss), _marked(b), ci_text(b.ci if b else None),
                     p_text(b.p if b else None), pct(c.unigram_benefit), pct(c.excess), loss_text(c.heldout_loss),
                     _marked(h), ci_text(h.ci if h else None), p_text(h.p if h else None)])
    return rows


def _finding_lines(f: Finding, depth: int) -> list[str]:
    out = ["", f"**({f.key}) {f.claim}** — **{f.verdict.word}**: {f.verdict.reason}.", ""]
    if f.rows:
        out += md_table(f.header, f.rows, f.align) + [""]
    out += [f"- {d}" for d in f.details]
    return out


def render_experiment(exp: StudyResults, tables: Sequence[TaskTable], analyses: Sequence[ProximityAnalysis],
                      found: Sequence[Finding], scale: ScaleCheck, plots: Sequence[tuple[str, str]],
                      missing: Sequence[str], depth: int = 0, verdicts: bool = True) -> list[str]:
    """The experiment report's lines; ``plots`` are (title, path relative to the report) of the PNGs
    written; ``depth`` moves every heading that many levels down (for a section of a larger report);
    ``verdicts`` False leaves out the headline (a sweep's report puts its own first)."""
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
    out.append(f"- Tokenizer: {_tokenizer_text(spec.get('tokenizer'))}")
    out.append(f"- Baseline variant: `{exp.baseline}`; proximity: {spec.get('metric', MISSING)} distance, protocol "
               f"`{spec.get('protocol', 'all')}`")
    out.append(f"- Seeds: {_seeds_text(exp)}; every comparison is paired by seed and tested across seeds "
               f"(two-sided, α = {ALPHA:g})")
    out.append(f"- Runs with results: {finished} of {len(all_runs)}"
               + (" (see [Missing results](#missing-results))" if missing else ""))
    if verdicts:
        out += [""] + verdict_lines(found, scale, depth)
    out += [""] + scale_lines(scale, exp, depth)

    out += ["", heading(2, "Variants", depth), ""]
    rows = []
    for v, runs in exp.runs.items():
        done = [r for r in runs if r.results is not None]
        pre = [x for x in (pre_sft_heldout_loss(r.results) for r in done) if x is not None]
        rows.append([v + (" (baseline)" if v == exp.baseline else ""), _mixture_text(exp.mixtures[v]),
                     ", ".join(r.seed for r in runs) or MISSING, f"{len(done)}/{len(runs)}", loss_text(mean_or_none(pre))])
    out += md_table(["variant", "midtraining mixture", "seeds", "finished", "C4 loss before SFT"], rows, "lllrr")

    out += ["", heading(2, "SFT validation loss, C4 loss and benefit", depth), "",
            "Per task and variant, the mean over seeds of the SFT validation loss L (answer tokens) and of the "
            "held-out C4 loss C measured after SFT. "
            f"benefit = mean over seeds s of (L_base,s − L_s) / L_base,s, paired with `{exp.baseline}`'s run of the "
            "same seed (positive: better); C4 change = mean of (C_s − C_base,s) / C_base,s (positive: more "
            f"forgetting); each with its 95% t-interval and p-value across seeds. {NOT_SIGNIFICANT}: not significant "
            f"at α = {ALPHA:g}; {NO_REPLICATE}: one seed, no replicate, not tested. unigram: the benefit a model of "
            "token frequencies alone would get from the variant's stream; excess = benefit − unigram."]
    for t in tables:
        out += ["", heading(3, t.task, depth), ""]
        out += md_table(["variant", "seeds", "SFT val loss", "benefit", "95% CI", "p", "unigram", "excess",
                         "C4 loss after SFT", "C4 change", "95% CI", "p"], _task_rows(t, exp.baseline),
                        "lrrrrrrrrrrr")

    out += ["", heading(2, "Proximity advantage and benefit", depth), "",
            "Proximity advantage = d(pretraining data, task) − d(mixture, task) with d a distance of unigram "
            "distributions, measured before any training. The baseline (advantage 0 and benefit 0 by definition) "
            "is left out. Per task, Pearson's r with its p-value; over tasks, the slope of benefit on proximity "
            "with an intercept per task (OLS), which compares variants within a task only."]
    for a in analyses:
        label = "" if a is analyses[0] else " (robustness)"
        out += ["", f"With the {a.metric} distance, protocol `{a.protocol}`{label}:", ""]
        if a.points:
            out += md_table(["variant", "task", "proximity advantage", "benefit"],
                            [[p.variant, p.task, f"{p.proximity:+.4f}", pct(p.benefit)] for p in a.points], "llrr")
        else:
            out.append("No variant has both a proximity advantage and a benefit yet.")
        out.append("")
        rows = [[task, str(c.n), "undefined" if c.r is None else f"{c.r:+.3f}", p_text(c.p)] for task, c in a.per_task]
        s = a.slope
        rows.append(["within tasks (slope)", str(s.n) if s else str(len(a.points)),
                     "undefined" if s is None else f"{s.slope:+.3g} {ci_text(s.ci, fmt='{:+.3g}')}",
                     p_text(s.p if s else None)])
        out += md_table(["scope", "n", "r (slope [95% CI])", "p"], rows, "lrrr")
    out += ["", "r is undefined with fewer than 3 points or when either variable does not vary; the slope needs "
                "more points than tasks + 1."]

    out += ["", heading(2, "Findings", depth), "",
            "Each of the paper's findings, tested as a whole claim at this scale: holds / mixed / does not hold / "
            "not tested / not interpretable, with the reason."]
    for f in found:
        out += _finding_lines(f, depth)

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
    if not isinstance(exp.spec.get("unigram"), dict):
        items.append("unigram control: absent from experiment.json (the scale guard cannot be applied)")
    return items


def render_sweep(exp: StudyResults, grids: Sequence[SweepGrid], found: Sequence[Finding], scale: ScaleCheck,
                 experiment_found: Sequence[Finding], plots: Sequence[tuple[str, str]]) -> list[str]:
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
    out.append(f"- Seeds: {_seeds_text(exp)}")
    out.append(f"- Runs with results: {sum(r.results is not None for r in runs)} of {len(runs)}")
    out += [""] + verdict_lines(list(found) + list(experiment_found), scale)
    out += ["", "## Timing or ratio?", "",
            "Per task and added dataset, a two-way ANOVA (type II) of each run's benefit (and C4 change) over start "
            "step × ratio: the share of the variance each explains, with its F-test p-value. Without a replicate per "
            "grid cell the interaction cannot be told apart from noise."]
    for f in found:
        out += _finding_lines(f, 0)
    for g in grids:
        out += ["", f"### {g.task} (mixing in {g.dataset})", ""]
        e = earlier_minus_later(g.benefit)
        if e is not None:
            out.append(f"- Earliest minus latest start, benefit (mean over ratios): {pp(e)}.")
            out.append("")
        out += ["Benefit (rows: start step, columns: ratio):", ""]
        header = ["start step"] + [f"{100 * r:g}%" for r in g.ratios]
        out += md_table(header, [[str(s)] + [pct(v) for v in g.benefit[i]] for i, s in enumerate(g.start_steps)],
                        "r" * len(header))
        base = MISSING if g.baseline_heldout is None else f"{g.baseline_heldout:.4f}"
        out += ["", f"C4 loss after SFT (baseline {base}; C4 change in parentheses, positive = more forgetting):", ""]
        rows = [[str(s)] + [MISSING if v != v else f"{v:.4f} ({pct(ch)})"
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


def sweep_markdown(sweep_lines: Sequence[str], experiment_lines: Sequence[str]) -> str:
    """The sweep's sections, then the experiment report (every variant's numbers) one heading level down."""
    lines = list(sweep_lines) + ["", heading(2, "Per-variant details")] + list(experiment_lines[1:])
    return "\n".join(lines) + "\n"


def is_not_interpretable(found: Sequence[Finding]) -> bool:
    return bool(found) and all(f.verdict.word == NOT_INTERPRETABLE for f in found)
