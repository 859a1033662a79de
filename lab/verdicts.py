"""How a verdict is reached from tested comparisons: one rule for every finding of every report.

Each comparison a finding rests on is tested across seeds (``lab.statistics``) and ends as
one outcome relative to the paper's claim:

- ``supports``: the effect goes the way the paper found, significant at α = 0.05;
- ``contradicts``: the effect goes the other way, significant;
- ``inconclusive``: not significant either way;
- ``untested``: one seed, no replicate, so nothing was tested.

A finding's verdict is one of five words, always with its reason in one line:

- ``holds``: every tested comparison supports the claim;
- ``does not hold``: none supports it (some contradict it, or none is significant);
- ``mixed``: some support it and some do not;
- ``not tested``: no comparison could be tested (no replicate, or nothing to compare);
- ``not interpretable``: the scale guard failed (``lab.control``): the models have not
  learned beyond token frequencies, so no comparison means what the claim is about.

A claim with two halves (finding b: the mixture beats 100% on the SFT loss *and* on the
C4 loss) holds only when both halves hold, does not hold when both do not, and is mixed
otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lab.statistics import ALPHA

SUPPORTS, CONTRADICTS, INCONCLUSIVE, UNTESTED = "supports", "contradicts", "inconclusive", "untested"
HOLDS, MIXED, DOES_NOT_HOLD, NOT_TESTED, NOT_INTERPRETABLE = (
    "holds", "mixed", "does not hold", "not tested", "not interpretable")
VERDICTS = (HOLDS, MIXED, DOES_NOT_HOLD, NOT_INTERPRETABLE, NOT_TESTED)


@dataclass(frozen=True)
class Verdict:
    word: str
    reason: str

    def __post_init__(self) -> None:
        if self.word not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.word!r}")


def outcome(mean: float | None, p: float | None, alpha: float = ALPHA) -> str:
    """The outcome of one comparison whose claimed direction is a positive ``mean``."""
    if p is None or mean is None:
        return UNTESTED
    if p < alpha and mean > 0:
        return SUPPORTS
    if p < alpha and mean < 0:
        return CONTRADICTS
    return INCONCLUSIVE


def combine(outcomes: Sequence[str], what: str = "comparisons") -> Verdict:
    """One verdict from the outcomes of a finding's comparisons (see the module docstring)."""
    n = len(outcomes)
    tested = [o for o in outcomes if o != UNTESTED]
    untested = n - len(tested)
    if not n:
        return Verdict(NOT_TESTED, f"no {what} to test")
    if not tested:
        return Verdict(NOT_TESTED, f"no replicate: each of the {n} {what} has one seed, so none was tested")
    sup = tested.count(SUPPORTS)
    con = tested.count(CONTRADICTS)
    inc = tested.count(INCONCLUSIVE)
    tail = f"; {untested} untested (one seed)" if untested else ""
    counts = f"{sup} of {len(tested)} tested {what} support it, {con} contradict it, {inc} are not significant{tail}"
    if sup == len(tested):
        return Verdict(HOLDS, counts)
    if sup == 0:
        return Verdict(DOES_NOT_HOLD, counts)
    return Verdict(MIXED, counts)


def both_halves(first: Verdict, second: Verdict, names: tuple[str, str]) -> Verdict:
    """A claim made of two halves: holds only if both hold."""
    reason = f"{names[0]}: {first.word}; {names[1]}: {second.word}"
    if first.word == NOT_INTERPRETABLE or second.word == NOT_INTERPRETABLE:
        return Verdict(NOT_INTERPRETABLE, reason)
    if first.word == HOLDS and second.word == HOLDS:
        return Verdict(HOLDS, reason)
    if first.word == NOT_TESTED and second.word == NOT_TESTED:
        return Verdict(NOT_TESTED, reason)
    if first.word == DOES_NOT_HOLD and second.word == DOES_NOT_HOLD:
        return Verdict(DOES_NOT_HOLD, reason)
    return Verdict(MIXED, reason)


def correlation_verdict(slope: float | None, slope_p: float | None, task_outcomes: Sequence[str],
                        alpha: float = ALPHA) -> Verdict:
    """Finding (c): holds only when the pooled within-task slope is positive and significant and no
    task's correlation is significantly negative."""
    negative = task_outcomes.count(CONTRADICTS)
    positive = task_outcomes.count(SUPPORTS)
    if slope is None or slope_p is None:
        if not any(o != UNTESTED for o in task_outcomes):
            return Verdict(NOT_TESTED, "too few points for a within-task slope or a per-task correlation")
        return Verdict(MIXED if positive and not negative else DOES_NOT_HOLD,
                       f"no within-task slope (too few points); {positive} task(s) significantly positive, "
                       f"{negative} significantly negative")
    if slope > 0 and slope_p < alpha:
        if negative:
            return Verdict(MIXED, f"the within-task slope is positive (p = {slope_p:.3g}) but {negative} task(s) "
                                  f"correlate significantly negatively")
        return Verdict(HOLDS, f"the within-task slope is positive (p = {slope_p:.3g}) and no task correlates "
                              f"significantly negatively")
    if slope < 0 and slope_p < alpha:
        return Verdict(DOES_NOT_HOLD, f"the within-task slope is negative (p = {slope_p:.3g})")
    if positive and not negative:
        return Verdict(MIXED, f"the within-task slope is not significant (p = {slope_p:.3g}), though {positive} "
                              f"task(s) correlate significantly positively")
    return Verdict(DOES_NOT_HOLD, f"the within-task slope is not significant (p = {slope_p:.3g})")


def guarded(verdict: Verdict, guard_ok: bool | None, guard_reason: str) -> Verdict:
    """Every verdict becomes "not interpretable" when the scale guard failed."""
    if guard_ok is False:
        return Verdict(NOT_INTERPRETABLE, guard_reason)
    return verdict
