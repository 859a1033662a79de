"""Each verdict rule on constructed outcomes."""

from __future__ import annotations

import pytest

from lab import verdicts as rules


@pytest.mark.parametrize("mean, p, expected", [
    (0.1, 0.01, rules.SUPPORTS), (-0.1, 0.01, rules.CONTRADICTS), (0.1, 0.2, rules.INCONCLUSIVE), (0.1, None, rules.UNTESTED),
    (None, None, rules.UNTESTED), (0.0, 0.01, rules.INCONCLUSIVE),
])
def test_outcome(mean, p, expected):
    assert rules.outcome(mean, p) == expected


@pytest.mark.parametrize("outcomes, word", [
    ([rules.SUPPORTS, rules.SUPPORTS], rules.HOLDS),
    ([rules.SUPPORTS, rules.SUPPORTS, rules.UNTESTED], rules.HOLDS),
    ([rules.SUPPORTS, rules.INCONCLUSIVE], rules.MIXED),
    ([rules.SUPPORTS, rules.CONTRADICTS], rules.MIXED),
    ([rules.CONTRADICTS, rules.INCONCLUSIVE], rules.DOES_NOT_HOLD),
    ([rules.INCONCLUSIVE, rules.INCONCLUSIVE], rules.DOES_NOT_HOLD),
    ([rules.UNTESTED, rules.UNTESTED], rules.NOT_TESTED),
    ([], rules.NOT_TESTED),
])
def test_combine(outcomes, word):
    v = rules.combine(outcomes)
    assert v.word == word and v.reason and "\n" not in v.reason


def test_combine_says_why():
    assert "no replicate" in rules.combine([rules.UNTESTED]).reason
    assert rules.combine([rules.SUPPORTS, rules.CONTRADICTS, rules.UNTESTED]).reason.startswith("1 of 2 tested comparisons support it, 1 contradict")


def test_finding_b_needs_both_halves():
    c4_better = rules.Verdict(rules.HOLDS, "C4")
    sft_worse = rules.Verdict(rules.DOES_NOT_HOLD, "SFT")
    assert rules.both_halves(sft_worse, c4_better, ("SFT loss", "C4 loss")).word == rules.MIXED
    assert rules.both_halves(c4_better, c4_better, ("a", "b")).word == rules.HOLDS
    assert rules.both_halves(sft_worse, sft_worse, ("a", "b")).word == rules.DOES_NOT_HOLD
    assert rules.both_halves(rules.Verdict(rules.NOT_TESTED, ""), rules.Verdict(rules.NOT_TESTED, ""), ("a", "b")).word == rules.NOT_TESTED


def test_pooled_positive_but_one_task_significantly_negative_is_not_holds():
    v = rules.correlation_verdict(slope=0.8, slope_p=0.001, task_outcomes=[rules.SUPPORTS, rules.CONTRADICTS])
    assert v.word == rules.MIXED and "negatively" in v.reason
    assert rules.correlation_verdict(0.8, 0.001, [rules.SUPPORTS, rules.INCONCLUSIVE]).word == rules.HOLDS
    assert rules.correlation_verdict(-0.5, 0.01, [rules.INCONCLUSIVE]).word == rules.DOES_NOT_HOLD
    assert rules.correlation_verdict(0.5, 0.3, [rules.INCONCLUSIVE, rules.INCONCLUSIVE]).word == rules.DOES_NOT_HOLD
    assert rules.correlation_verdict(0.5, 0.3, [rules.SUPPORTS, rules.INCONCLUSIVE]).word == rules.MIXED
    assert rules.correlation_verdict(None, None, [rules.UNTESTED]).word == rules.NOT_TESTED


def test_guard_turns_every_verdict_not_interpretable():
    for word in (rules.HOLDS, rules.MIXED, rules.DOES_NOT_HOLD, rules.NOT_TESTED):
        v = rules.guarded(rules.Verdict(word, "x"), False, "the models have not learned beyond token frequencies")
        assert v.word == rules.NOT_INTERPRETABLE and "token frequencies" in v.reason
    assert rules.guarded(rules.Verdict(rules.HOLDS, "x"), True, "").word == rules.HOLDS
    assert rules.guarded(rules.Verdict(rules.HOLDS, "x"), None, "").word == rules.HOLDS
    with pytest.raises(ValueError):
        rules.Verdict("holds in part", "")
