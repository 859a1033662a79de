"""The paper's findings, each judged from a study's tested numbers (``lab.analysis``) by one rule (``lab.verdicts``).

(a) midtraining on code or math lowers the SFT loss of the matching task (code data → code
    tasks, math data → math tasks) versus the baseline; cross-domain pairs are stated
    apart, without a verdict;
(b) a mixture beats continued pretraining on 100% of the same data on *both* the SFT
    validation loss and the C4 loss (each half its own verdict; "holds" only if both do);
(c) the proximity advantage of a mixture toward a task correlates positively with its
    benefit: per task r with its p-value, and the within-task slope pooled over tasks;
and, for a sweep,
(d1) the start step explains more of the benefit's variance than the ratio (two-way ANOVA);
(d2) early starts tolerate higher ratios (the start × ratio interaction), testable only with
     replicated grid cells.

Every verdict becomes "not interpretable" when the scale guard fails.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from lab.analysis import ProximityAnalysis, ScaleCheck, SweepGrid, TaskTable
from lab.formatting import ci_text, p_text, pct
from lab.results import StudyResults, family
from lab.statistics import ALPHA, Estimate, paired_relative_benefit
from lab.verdicts import (
    CONTRADICTS,
    INCONCLUSIVE,
    SUPPORTS,
    UNTESTED,
    Verdict,
    both_halves,
    combine,
    correlation_verdict,
    guarded,
    outcome,
)

# Which SFT tasks a midtraining dataset's domain matches (by name family of the task or of its target corpus).
DOMAINS = {"code": ("code", "humaneval", "mbpp", "python"), "math": ("math", "gsm8k", "aqua", "svamp", "asdiv")}


@dataclass
class Finding:
    key: str
    claim: str
    verdict: Verdict
    details: list[str] = field(default_factory=list)
    header: list[str] = field(default_factory=list)  # the evidence table
    rows: list[list[str]] = field(default_factory=list)
    align: str = ""


OUTCOME_WORDS = {SUPPORTS: "supports", CONTRADICTS: "contradicts", INCONCLUSIVE: "not significant",
                 UNTESTED: "no replicate: not tested"}


def _estimate_cells(e: Estimate | None) -> list[str]:
    if e is None:
        return ["—", "0", "—", "—"]
    return [pct(e.mean), str(e.n), ci_text(e.ci), p_text(e.p)]


def _domain(name: str) -> str | None:
    f = family(name)
    return next((d for d, members in DOMAINS.items() if f in members or f == d), None)


def _task_domain(exp: StudyResults, task: str) -> str | None:
    targets = exp.spec.get("task_targets") or {}
    return _domain(task) or _domain(str(targets.get(task, "")))


def finding_a(exp: StudyResults, tables: Sequence[TaskTable]) -> Finding:
    claim = ("Midtraining on a mixture with code (math) data lowers the SFT validation loss of code (math) tasks "
             "versus the baseline.")
    header = ["variant", "task", "benefit", "n", "95% CI", "p", "outcome"]
    rows, outcomes, cross = [], [], []
    mixed_variants = [v for v, m in exp.mixtures.items() if v != exp.baseline and len(m) > 1]
    for t in tables:
        task_dom = _task_domain(exp, t.task)
        for v in mixed_variants:
            doms = {_domain(d) for d in exp.mixtures[v]} - {None}
            c = t.cell(v)
            if not doms or c is None or c.benefit_test is None or c.benefit_test.n == 0:
                continue
            o = outcome(c.benefit_test.mean, c.benefit_test.p)
            if task_dom in doms:
                outcomes.append(o)
                rows.append([v, t.task] + _estimate_cells(c.benefit_test) + [OUTCOME_WORDS[o]])
            else:
                cross.append(f"{v} on {t.task}: {pct(c.benefit_test.mean)} (p {p_text(c.benefit_test.p)}, "
                             f"{OUTCOME_WORDS[o]})")
    f = Finding("a", claim, combine(outcomes, "matched pairs"), header=header, rows=rows, align="llrrrrl")
    if not rows:
        f.details.append("No matched pair: no mixture with code or math data, or no code/math task with results.")
    if cross:
        f.details.append("Cross-domain pairs (no verdict): " + "; ".join(cross) + ".")
    return f


def finding_b(exp: StudyResults, tables: Sequence[TaskTable]) -> Finding:
    claim = ("A mixture beats continued pretraining on 100% of the same data on both the SFT validation loss and the "
             "C4 loss.")
    pure = {next(iter(m)): v for v, m in exp.mixtures.items() if len(m) == 1 and v != exp.baseline}
    base_data = set(exp.mixtures.get(exp.baseline, {}))
    pairs = [(mv, pure[d]) for d in pure if d not in base_data
             for mv, m in exp.mixtures.items() if mv not in (exp.baseline, pure[d]) and len(m) > 1 and d in m]
    header = ["mixture", "100%", "task", "half", "mixture better by", "n", "95% CI", "p", "outcome"]
    rows: list[list[str]] = []
    sft_out: list[str] = []
    c4_out: list[str] = []
    for t in tables:
        for mv, pv in pairs:
            cm, cp = t.cell(mv), t.cell(pv)
            if cm is None or cp is None:
                continue
            # per seed: (L_100%,s − L_mix,s) / L_100%,s, positive when the mixture's loss is lower
            for half, mine, theirs, acc in (("SFT loss", cm.val_by_seed, cp.val_by_seed, sft_out),
                                            ("C4 loss", cm.heldout_by_seed, cp.heldout_by_seed, c4_out)):
                e = paired_relative_benefit(theirs, mine)
                if e.n == 0:
                    continue
                o = outcome(e.mean, e.p)
                acc.append(o)
                rows.append([mv, pv, t.task, half] + _estimate_cells(e) + [OUTCOME_WORDS[o]])
    sft_v, c4_v = combine(sft_out, "SFT comparisons"), combine(c4_out, "C4 comparisons")
    f = Finding("b", claim, both_halves(sft_v, c4_v, ("SFT half", "C4 half")), header=header, rows=rows,
                align="llllrrrrl")
    f.details.append(f"SFT half — {sft_v.word}: {sft_v.reason}.")
    f.details.append(f"C4 half — {c4_v.word}: {c4_v.reason}.")
    if not pairs:
        f.details.append("No pair of a mixture and the 100% variant of the same dataset (e.g. code20 and code100).")
    return f


def finding_c(analyses: Sequence[ProximityAnalysis]) -> Finding:
    claim = ("The proximity advantage of a mixture toward a task correlates positively with its benefit on that task "
             "(within tasks).")
    main = analyses[0]
    header = ["scope", "n", "r or slope", "95% CI", "p", "outcome"]
    rows = []
    task_outcomes = []
    for task, c in main.per_task:
        o = outcome(c.r, c.p)
        task_outcomes.append(o)
        rows.append([task, str(c.n), "—" if c.r is None else f"r = {c.r:+.3f}", "—", p_text(c.p), OUTCOME_WORDS[o]])
    s = main.slope
    if s is not None:
        rows.append([f"within tasks (intercept per task, {s.groups} tasks)", str(s.n), f"slope = {s.slope:+.3g}",
                     ci_text(s.ci, fmt="{:+.3g}"), p_text(s.p), OUTCOME_WORDS[outcome(s.slope, s.p)]])
    verdict = correlation_verdict(None if s is None else s.slope, None if s is None else s.p, task_outcomes)
    f = Finding("c", claim, verdict, header=header, rows=rows, align="lrrrrl")
    f.details.append(f"Measured with the {main.metric} distance, protocol `{main.protocol}`.")
    if main.pooled.r is not None:
        f.details.append(f"Pooled over tasks, r = {main.pooled.r:+.3f} (n = {main.pooled.n}, p {p_text(main.pooled.p)}): "
                         f"pooling points of different tasks mostly measures which task a point belongs to, so it "
                         f"is not the test.")
    for alt in analyses[1:]:
        outcomes = [outcome(c.r, c.p) for _, c in alt.per_task]
        a = alt.slope
        alt_v = correlation_verdict(None if a is None else a.slope, None if a is None else a.p, outcomes)
        slope_txt = "no within-task slope" if a is None else f"within-task slope {a.slope:+.3g} (p {p_text(a.p)})"
        f.details.append(f"Robustness, with the {alt.metric} distance and protocol `{alt.protocol}`: {slope_txt}; "
                         f"per task " + ", ".join(f"{t} r {'—' if c.r is None else format(c.r, '+.3f')}"
                                                  for t, c in alt.per_task) + f" → {alt_v.word}.")
    return f


def findings(exp: StudyResults, tables: Sequence[TaskTable], analyses: Sequence[ProximityAnalysis],
             scale: ScaleCheck) -> list[Finding]:
    found = [finding_a(exp, tables), finding_b(exp, tables), finding_c(analyses)]
    for f in found:
        f.verdict = guarded(f.verdict, scale.ok, scale.reason)
    return found


# ----------------------------------------------------------------------------- a sweep


def shares_sentence(g: SweepGrid, outcome_name: str) -> str:
    """A plain sentence: how much of an outcome's variance start step, ratio and their interaction explain."""
    v = g.shares(outcome_name)
    if v is None:
        return f"{outcome_name}: too few measured grid points for a two-way ANOVA."
    inter = ("interaction" if v.replicated else "interaction + noise (no replicate per cell, so the two cannot be "
             "told apart)")
    return (f"{outcome_name}: the start step explains {100 * v.start_share:.0f}% of its variance (p {p_text(v.start_p)}), "
            f"the ratio {100 * v.ratio_share:.0f}% (p {p_text(v.ratio_p)}), {inter} {100 * v.interaction_share:.0f}%"
            + (f" (p {p_text(v.interaction_p)})" if v.replicated else "") + f"; n = {v.n}.")


def timing_outcome(g: SweepGrid, outcome_name: str = "benefit") -> str:
    v = g.shares(outcome_name)
    if v is None or v.start_p is None or v.ratio_p is None:
        return UNTESTED
    if v.start_share > v.ratio_share and v.start_p < ALPHA:
        return SUPPORTS
    if v.ratio_share > v.start_share and v.ratio_p < ALPHA:
        return CONTRADICTS
    return INCONCLUSIVE


def interaction_outcome(g: SweepGrid) -> str:
    v = g.shares("benefit")
    contrast = g.ratio_slope_contrast()
    if v is None or not v.replicated or v.interaction_p is None or contrast is None:
        return UNTESTED
    if v.interaction_p < ALPHA:
        return SUPPORTS if contrast > 0 else CONTRADICTS
    return INCONCLUSIVE


def sweep_findings(grids: Sequence[SweepGrid], scale: ScaleCheck) -> list[Finding]:
    """(d1) timing explains more of the benefit than the ratio; (d2) early starts tolerate higher ratios."""
    d1 = Finding("d1", "When the data enters (the start step) moves the SFT benefit more than how much of it "
                       "(the ratio).", combine([timing_outcome(g) for g in grids], "grids"))
    d2 = Finding("d2", "Early starts tolerate higher ratios (a start step × ratio interaction in the benefit: it "
                       "rises more with the ratio at the earliest start than at the latest).",
                 combine([interaction_outcome(g) for g in grids], "grids"))
    for g in grids:
        d1.details.append(f"{g.task} (mixing in {g.dataset}) — " + shares_sentence(g, "benefit") + " "
                          + shares_sentence(g, "C4 change"))
        contrast = g.ratio_slope_contrast()
        d2.details.append(f"{g.task} (mixing in {g.dataset}): " + (
            "slope contrast not measurable" if contrast is None else
            f"the benefit's slope over the ratio is {contrast:+.3g} higher at start {g.start_steps[0]} than at "
            f"{g.start_steps[-1]}") + f" → {OUTCOME_WORDS[interaction_outcome(g)]}.")
    for f in (d1, d2):
        f.verdict = guarded(f.verdict, scale.ok, scale.reason)
    return [d1, d2]
