"""The paper's qualitative findings, each judged from a study's numbers only (``lab.analysis``).

(a) midtraining on code or math lowers the code/GSM8K SFT loss versus the baseline;
(b) a mixture forgets less than continued pretraining on 100% of the same data;
(c) the proximity advantage of a mixture toward a task correlates with its benefit;
and, for a sweep, whether the start step moved the benefit more than the ratio.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from lab.analysis import (
    AxisComparison,
    Correlation,
    SweepGrid,
    TaskTable,
    compare_axes,
    earlier_minus_later,
    significant,
)
from lab.formatting import pct, pp, spread_text
from lab.results import StudyResults, family

# Finding (a) is about these SFT tasks and these midtraining datasets (matched by name family).
FINDING_A_TASKS = ("gsm8k", "code", "humaneval")
FINDING_A_DATA = ("code", "math")


@dataclass
class Finding:
    key: str
    claim: str
    verdict: str  # "holds", "holds in part", "not significant", "does not hold", "cannot be checked"
    details: list[str] = field(default_factory=list)


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
    return f"{'beyond' if sig else 'within'} the baseline seed spread of {spread_text(spread)}"


def finding_a(exp: StudyResults, tables: Sequence[TaskTable]) -> Finding:
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
                f"{c.variant} ({pct(c.benefit)}, {_significance_words(c.significant, t.spread)})" for c in better))
        if worse:
            parts.append("do not: " + ", ".join(f"{c.variant} ({pct(c.benefit)})" for c in worse))
        f.details.append(f"{t.task}: " + "; ".join(parts) + ".")
        outcomes += [(c.benefit > 0, c.significant) for c in measured]
    f.verdict = _verdict(outcomes)
    if outcomes:
        f.details.insert(0, _tally(outcomes))
    return f


def finding_b(exp: StudyResults, tables: Sequence[TaskTable]) -> Finding:
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
            sig = significant(diff, t.heldout_spread)
            rel = "" if diff is None else f", difference {pct(diff)} of the baseline's C4 loss"
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


def findings(exp: StudyResults, tables: Sequence[TaskTable], corrs: Sequence[Correlation]) -> list[Finding]:
    return [finding_a(exp, tables), finding_b(exp, tables), finding_c(corrs)]


def comparison_sentence(c: AxisComparison) -> str:
    if c.larger is None:
        return (f"{c.what}: cannot compare the axes yet (timing spread {pp(c.timing)}, ratio spread "
                f"{pp(c.ratio)}; each needs two measured points along it).")
    noise = ("seed spread unknown (one baseline seed)" if c.seed_spread is None
             else f"baseline seed spread {pp(c.seed_spread)}")
    if c.larger == "neither":
        head = "timing and ratio moved it equally"
    else:
        head = f"{c.larger} moved it more"
    tail = ""
    if c.beyond_noise is False:
        tail = "; both are within the seed spread, so neither is distinguishable from noise"
    elif c.beyond_noise is True:
        tail = f"; the {c.larger if c.larger != 'neither' else 'larger'} spread exceeds the seed spread"
    return (f"{c.what}: {head} (spread over start steps {pp(c.timing)}, over ratios {pp(c.ratio)}; "
            f"{noise}){tail}.")


def timing_verdict(grids: Sequence[SweepGrid]) -> tuple[str, list[str]]:
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

