"""Each verdict rule on constructed outcomes."""

from __future__ import annotations

import pytest

from lab.verdicts import (
    CONTRADICTS,
    DOES_NOT_HOLD,
    HOLDS,
    INCONCLUSIVE,
    MIXED,
    NOT_INTERPRETABLE,
    NOT_TESTED,
    SUPPORTS,
    UNTESTED,
    Verdict,
    both_halves,
    combine,
    correlation_verdict,
    guarded,
    outcome,
)


@pytest.mark.parametrize("mean, p, expected", [
    (0.1, 0.01, SUPPORTS), (-0.1, 0.01, CONTRADICTS), (0.1, 0.2, INCONCLUSIVE), (0.1, None, UNTESTED),
    (None, None, UNTESTED), (0.0, 0.01, INCONCLUSIVE),
])
def test_outcome(mean, p, expected):
    assert outcome(mean, p) == expected


@pytest.mark.parametrize("outcomes, word", [
    ([SUPPORTS, SUPPORTS], HOLDS),
    ([SUPPORTS, SUPPORTS, UNTESTED], HOLDS),
    ([SUPPORTS, INCONCLUSIVE], MIXED),
    ([SUPPORTS, CONTRADICTS], MIXED),
    ([CONTRADICTS, INCONCLUSIVE], DOES_NOT_HOLD),
    ([INCONCLUSIVE, INCONCLUSIVE], DOES_NOT_HOLD),
    ([UNTESTED, UNTESTED], NOT_TESTED),
    ([], NOT_TESTED),
])
def test_combine(outcomes, word):
    v = combine(outcomes)
    assert v.word == word and v.reason and "\n" not in v.reason


def test_combine_says_why():
    assert "no replicate" in combine([UNTESTED]).reason
    assert combine([SUPPORTS, CONTRADICTS, UNTESTED]).reason.startswith("1 of 2 tested comparisons support it, 1 contradict")


def test_finding_b_needs_both_halves():
    c4_better = Verdict(HOLDS, "C4")
    sft_worse = Verdict(DOES_NOT_HOLD, "SFT")
    assert both_halves(sft_worse, c4_better, ("SFT loss", "C4 loss")).word == MIXED
    assert both_halves(c4_better, c4_better, ("a", "b")).word == HOLDS
    assert both_halves(sft_worse, sft_worse, ("a", "b")).word == DOES_NOT_HOLD
    assert both_halves(Verdict(NOT_TESTED, ""), Verdict(NOT_TESTED, ""), ("a", "b")).word == NOT_TESTED


def test_pooled_positive_but_one_task_significantly_negative_is_not_holds():
    v = correlation_verdict(slope=0.8, slope_p=0.001, task_outcomes=[SUPPORTS, CONTRADICTS])
    assert v.word == MIXED and "negatively" in v.reason
    assert correlation_verdict(0.8, 0.001, [SUPPORTS, INCONCLUSIVE]).word == HOLDS
    assert correlation_verdict(-0.5, 0.01, [INCONCLUSIVE]).word == DOES_NOT_HOLD
    assert correlation_verdict(0.5, 0.3, [INCONCLUSIVE, INCONCLUSIVE]).word == DOES_NOT_HOLD
    assert correlation_verdict(0.5, 0.3, [SUPPORTS, INCONCLUSIVE]).word == MIXED
    assert correlation_verdict(None, None, [UNTESTED]).word == NOT_TESTED


def test_guard_turns_every_verdict_not_interpretable():
    for word in (HOLDS, MIXED, DOES_NOT_HOLD, NOT_TESTED):
        v = guarded(Verdict(word, "x"), False, "the models have not learned beyond token frequencies")
        assert v.word == NOT_INTERPRETABLE and "token frequencies" in v.reason
    assert guarded(Verdict(HOLDS, "x"), True, "").word == HOLDS
    assert guarded(Verdict(HOLDS, "x"), None, "").word == HOLDS
    with pytest.raises(ValueError):
        Verdict("holds in part", "")
