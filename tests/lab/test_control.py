"""The unigram control and the scale guard against direct NumPy computations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lab.control import cross_entropy, guard, smoothed_unigram, stream_distribution, unigram_benefit


def test_cross_entropy_by_hand():
    train = np.array([6.0, 3.0, 1.0, 0.0])  # counts of a stream of 10 tokens, vocabulary 4
    p = smoothed_unigram(train / train.sum(), tokens=10)
    assert p == pytest.approx([7 / 14, 4 / 14, 2 / 14, 1 / 14])  # add-one: (c + 1) / (10 + 4)
    held = np.array([1, 0, 2, 1])
    expected = -(math.log(7 / 14) + 2 * math.log(2 / 14) + math.log(1 / 14)) / 4
    assert cross_entropy(p, held) == pytest.approx(expected)


def test_cross_entropy_matches_a_loop():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(50))
    p = smoothed_unigram(probs, tokens=1e5)
    tokens = rng.integers(0, 50, size=500)
    loop = -sum(math.log(p[t]) for t in tokens) / len(tokens)
    assert cross_entropy(p, np.bincount(tokens, minlength=50)) == pytest.approx(loop)
    assert p.sum() == pytest.approx(1.0)


def test_stream_distribution_and_benefit():
    pre, code = np.array([0.5, 0.5, 0.0]), np.array([0.0, 0.0, 1.0])
    s = stream_distribution(pre, {"c4": 0.8, "code": 0.2}, {"c4": pre, "code": code}, start_step=50, steps=100)
    assert s == pytest.approx([0.5 * 0.5 + 0.5 * 0.4, 0.5 * 0.5 + 0.5 * 0.4, 0.5 * 0.2])
    assert s.sum() == pytest.approx(1.0)
    task = np.array([0, 0, 10])  # the task's answers are all token 2: mixing code in helps a unigram model
    base = cross_entropy(smoothed_unigram(pre, 1e4), task)
    var = cross_entropy(smoothed_unigram(s, 1e4), task)
    assert unigram_benefit(base, var) == pytest.approx((base - var) / base) and var < base


def test_guard():
    ok, why = guard(5.1, 6.98)
    assert ok is True and "1.88 nats below" in why
    bad, why = guard(7.88, 7.73)
    assert bad is False and "not learned beyond token frequencies" in why and "0.15 nats above" in why
    assert guard(7.3, 7.78)[0] is False, "0.48 nats below is inside the 0.5 margin"
    assert guard(None, 7.0)[0] is None
