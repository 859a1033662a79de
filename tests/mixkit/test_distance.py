"""Each metric against an independent NumPy/SciPy reference, its known values, and the paper's formula."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.spatial import distance as sd
from scipy.stats import entropy

from mixkit import distance as D
from mixkit.errors import MixkitError

SYMMETRIC = ("js", "js_distance", "tv", "hellinger", "cosine", "jaccard", "paper")


@st.composite
def count_pairs(draw):
    """Two count vectors over one vocabulary, with some ids absent from each."""
    vocab = draw(st.integers(2, 400))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(2):
        c = rng.integers(0, 50, size=vocab).astype(np.int64)
        c[rng.random(vocab) < draw(st.floats(0, 0.9))] = 0
        if c.sum() == 0:
            c[rng.integers(vocab)] = 1
        out.append(c)
    return out[0], out[1]


def probs(c):
    return np.asarray(c, np.float64) / np.sum(c)


@given(count_pairs())
def test_metrics_equal_scipy_references(pair):
    a, b = pair
    p, q = probs(a), probs(b)
    assert D.js_divergence(a, b) == pytest.approx(sd.jensenshannon(p, q, base=2) ** 2, abs=1e-12)
    assert D.js_distance(a, b) == pytest.approx(sd.jensenshannon(p, q, base=2), abs=1e-7)
    alpha = 1e-4
    ps, qs = (p + alpha) / (1 + alpha * p.size), (q + alpha) / (1 + alpha * q.size)
    assert D.kl_divergence(a, b, alpha) == pytest.approx(entropy(ps, qs, base=2), rel=1e-10, abs=1e-12)
    assert D.kl_divergence(b, a, alpha) == pytest.approx(entropy(qs, ps, base=2), rel=1e-10, abs=1e-12)
    assert D.total_variation(a, b) == pytest.approx(0.5 * sd.cityblock(p, q), abs=1e-12)
    assert D.hellinger(a, b) == pytest.approx(math.sqrt(max(1 - np.sum(np.sqrt(p * q)), 0)), abs=1e-7)
    assert D.cosine_distance(a, b) == pytest.approx(sd.cosine(a, b), abs=1e-12)
    assert D.jaccard_distance(a, b) == pytest.approx(sd.jaccard(a > 0, b > 0), abs=1e-12)


def top_k_reference(c, k):
    ranked = sorted((i for i in range(len(c)) if c[i] > 0), key=lambda i: (-c[i], i))
    return set(ranked[:k])


@given(count_pairs(), st.integers(1, 50))
def test_top_k_jaccard(pair, k):
    a, b = pair
    sa, sb = top_k_reference(a, k), top_k_reference(b, k)
    assert D.jaccard_distance(a, b, top_k=k) == pytest.approx(1 - len(sa & sb) / len(sa | sb), abs=1e-12)


def paper_script_reference(tokens1, tokens2, vocab_size_limit=50000):
    """Transcription of the released script's formula, 1e-10 guards included, turned into a distance."""
    freq1, freq2 = Counter(tokens1), Counter(tokens2)
    freq1_top = dict(freq1.most_common(vocab_size_limit))
    freq2_top = dict(freq2.most_common(vocab_size_limit))
    vocab1, vocab2 = set(freq1_top), set(freq2_top)
    vocab_jaccard = len(vocab1 & vocab2) / len(vocab1 | vocab2)
    all_tokens = list(vocab1 | vocab2)
    vec1 = np.array([freq1_top.get(t, 0) for t in all_tokens], dtype=np.float64)
    vec2 = np.array([freq2_top.get(t, 0) for t in all_tokens], dtype=np.float64)
    v1 = vec1 / (vec1.sum() + 1e-10)
    v2 = vec2 / (vec2.sum() + 1e-10)
    cosine_sim = np.dot(v1, v2) / (np.linalg.norm(v1) * np.linalg.norm(v2) + 1e-10)
    m = 0.5 * (v1 + v2)
    kl1 = np.sum(v1 * np.log(v1 / (m + 1e-10) + 1e-10))
    kl2 = np.sum(v2 * np.log(v2 / (m + 1e-10) + 1e-10))
    js = 0.5 * (kl1 + kl2)
    combined = 0.4 * cosine_sim + 0.3 * vocab_jaccard + 0.3 * (1.0 / (1.0 + js))
    return 1.0 - combined


@given(st.integers(0, 2**32 - 1), st.integers(5, 300), st.one_of(st.none(), st.integers(3, 100)))
def test_paper_metric_matches_script_formula(seed, vocab, top_k):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(2):
        # Distinct counts, so "top k" has no ties and Counter.most_common agrees with any tie rule.
        c = rng.permutation(vocab).astype(np.int64) + 1
        c[rng.random(vocab) < 0.3] = 0
        if not c.any():
            c[0] = 1
        out.append(c)
    a, b = out
    tokens = [np.repeat(np.arange(vocab), c).tolist() for c in (a, b)]
    ref = paper_script_reference(tokens[0], tokens[1], top_k or 50000)
    got = D.paper_distance(a, b, top_k=top_k or 50000)
    assert got == pytest.approx(ref, abs=1e-8)


@given(count_pairs())
def test_known_values_and_symmetry(pair):
    a, b = pair
    for name in D.METRIC_NAMES:
        assert D.metric(name, a, a) == pytest.approx(0.0, abs=1e-12), name
        assert D.metric(name, a, 3 * a) == pytest.approx(0.0, abs=1e-12), name  # counts vs scaled counts
    for name in SYMMETRIC:
        assert D.metric(name, a, b) == pytest.approx(D.metric(name, b, a), abs=1e-12), name
    assert D.metric("kl_ab", a, b) == D.metric("kl_ba", b, a)
    values = D.all_metrics(a, b)
    assert list(values) == list(D.METRIC_NAMES)
    for name in ("js", "js_distance", "tv", "hellinger", "cosine", "jaccard"):
        assert 0.0 <= values[name] <= 1.0
    assert 0.0 <= values["paper"] <= 1 - 0.3 / (1 + math.log(2)) + 1e-12
    assert values["kl_ab"] >= 0 and values["kl_ba"] >= 0


def test_disjoint_supports():
    a = np.array([5, 3, 0, 0, 0])
    b = np.array([0, 0, 1, 7, 2])
    assert D.js_divergence(a, b) == pytest.approx(1.0, abs=1e-12)
    assert D.js_distance(a, b) == pytest.approx(1.0, abs=1e-12)
    assert D.total_variation(a, b) == pytest.approx(1.0)
    assert D.hellinger(a, b) == pytest.approx(1.0)
    assert D.cosine_distance(a, b) == pytest.approx(1.0)
    assert D.jaccard_distance(a, b) == 1.0
    assert D.paper_distance(a, b) == pytest.approx(1 - 0.3 / (1 + math.log(2)))
    assert D.kl_divergence(a, b, smoothing=0) == math.inf
    assert math.isfinite(D.kl_divergence(a, b))


def test_kl_known_value():
    # KL([1/2, 1/2] || [1/4, 3/4]) = 1/2 log2(2) + 1/2 log2(2/3)
    assert D.kl_divergence(np.array([1, 1]), np.array([1, 3]), smoothing=0) == pytest.approx(
        0.5 + 0.5 * math.log2(2 / 3)
    )


def test_bad_inputs():
    with pytest.raises(MixkitError, match="empty"):
        D.js_divergence(np.zeros(3), np.ones(3))
    with pytest.raises(MixkitError, match="negative"):
        D.total_variation(np.array([1, -1, 2]), np.ones(3))
    with pytest.raises(MixkitError, match="different vocabularies"):
        D.cosine_distance(np.ones(3), np.ones(4))
    with pytest.raises(MixkitError, match="unknown metric"):
        D.metric("euclid", np.ones(3), np.ones(3))
    with pytest.raises(MixkitError, match="smoothing"):
        D.MetricOptions(smoothing=-1)
    with pytest.raises(MixkitError, match="jaccard_top_k"):
        D.MetricOptions(jaccard_top_k=0)


def test_matrix_and_proximity():
    rng = np.random.default_rng(0)
    vecs = [rng.integers(0, 20, size=50) + (i == 0) for i in range(4)]
    m = D.distance_matrix(vecs, "js")
    assert m.shape == (4, 4) and np.all(np.diag(m) == 0)
    np.testing.assert_allclose(m, m.T)
    assert m[1, 2] == D.js_divergence(vecs[1], vecs[2])
    kl = D.distance_matrix(vecs, "kl_ab")
    assert kl[0, 1] == D.kl_divergence(vecs[0], vecs[1])
    assert kl[1, 0] == D.kl_divergence(vecs[1], vecs[0])

    pretrain = np.array([10, 10, 0, 0])
    target = np.array([0, 0, 5, 5])
    near = np.array([5, 5, 5, 5])
    nearer = np.array([1, 1, 5, 5])
    before, after, adv = D.proximity_advantage(pretrain, near, target, "tv")
    assert (before, after, adv) == pytest.approx((1.0, 0.5, 0.5))
    rows = D.proximity_table(pretrain, [("near", near), ("nearer", nearer), ("same", pretrain)], [("t", target)], ["tv", "js"])
    assert [(r.metric, r.rank, r.mixture) for r in rows] == [
        ("tv", 1, "nearer"), ("tv", 2, "near"), ("tv", 3, "same"),
        ("js", 1, "nearer"), ("js", 2, "near"), ("js", 3, "same"),
    ]
    assert rows[2].advantage == 0.0
    assert all(r.pretrain_to_target == r.mixture_to_target + r.advantage for r in rows)
