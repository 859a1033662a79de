"""Distances between unigram token distributions, and the proximity advantage.

Every metric is a pure function of two non-negative vectors over the vocabulary
(raw counts or probabilities: each is normalized to ``p = c / c.sum()`` first), so the
same numbers come from the Python API and from ``mixkit distance``. Information
quantities are in bits (log base 2) unless a docstring says otherwise; ``0·log 0 = 0``.

Why a proximity advantage: the midtraining paper (Liu, Neubig, Xiong, 2025) found that

    advantage = dist(pretrain, target) - dist(mixture, target)

predicts how much midtraining on ``mixture`` helps fine-tuning on ``target``: a
positive advantage means the mixture moved the training distribution towards the task.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from mixkit import atomic
from mixkit.errors import MixkitError

DEFAULT_SMOOTHING = 1e-7
PAPER_TOP_K = 50_000

METRIC_NAMES = ("js", "js_distance", "kl_ab", "kl_ba", "tv", "hellinger", "cosine", "jaccard", "paper")
METRIC_DESCRIPTIONS = {
    "js": "Jensen-Shannon divergence, bits [0, 1]",
    "js_distance": "sqrt of JS divergence [0, 1]",
    "kl_ab": "KL(a || b), bits, smoothed [0, inf)",
    "kl_ba": "KL(b || a), bits, smoothed [0, inf)",
    "tv": "total variation [0, 1]",
    "hellinger": "Hellinger distance [0, 1]",
    "cosine": "cosine distance [0, 1]",
    "jaccard": "Jaccard distance of token sets [0, 1]",
    "paper": "paper's combined distance [0, 0.823]",
}


def normalize(c: np.ndarray) -> np.ndarray:
    """``c / c.sum()`` as float64; refuses negative entries and an all-zero vector."""
    c = np.asarray(c, dtype=np.float64)
    if c.ndim != 1:
        raise MixkitError(f"a distribution must be a 1-D vector, got shape {c.shape}")
    if (c < 0).any() or not np.isfinite(c).all():
        raise MixkitError("a distribution has negative or non-finite entries")
    total = c.sum()
    if total <= 0:
        raise MixkitError("a distribution is empty (all counts are zero)")
    return c / total


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p, q = normalize(a), normalize(b)
    if p.shape != q.shape:
        raise MixkitError(f"distributions over different vocabularies ({p.size} vs {q.size} ids)")
    return p, q


def _kl_terms(p: np.ndarray, m: np.ndarray, log: Callable[[np.ndarray], np.ndarray]) -> float:
    nz = p > 0
    return float(np.sum(p[nz] * log(p[nz] / m[nz])))


def js_divergence(a: np.ndarray, b: np.ndarray) -> float:
    """Jensen-Shannon divergence in bits, in ``[0, 1]``.

    ``JS(p, q) = ½ KL(p‖m) + ½ KL(q‖m)`` with ``m = (p + q) / 2`` and log base 2.
    0 iff ``p = q``; 1 iff the supports are disjoint; symmetric.
    """
    p, q = _pair(a, b)
    m = 0.5 * (p + q)
    js = 0.5 * _kl_terms(p, m, np.log2) + 0.5 * _kl_terms(q, m, np.log2)
    return float(min(max(js, 0.0), 1.0))


def js_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Jensen-Shannon distance ``sqrt(JS(p, q))``, a metric, in ``[0, 1]``."""
    return float(np.sqrt(js_divergence(a, b)))


def smooth(p: np.ndarray, smoothing: float) -> np.ndarray:
    """Additive (Lidstone) smoothing of a probability vector: ``(p + α) / (1 + α·V)``."""
    return (p + smoothing) / (1.0 + smoothing * p.size)


def kl_divergence(a: np.ndarray, b: np.ndarray, smoothing: float = DEFAULT_SMOOTHING) -> float:
    """KL(p‖q) in bits, in ``[0, ∞)``, after additive smoothing of both sides.

    ``KL(p‖q) = Σ_t p̃_t log2(p̃_t / q̃_t)`` with ``p̃ = (p + α) / (1 + αV)`` (same for q),
    ``α = smoothing``: without it one token that ``a`` has and ``b`` lacks makes KL
    infinite. Not symmetric. ``smoothing=0`` gives the unsmoothed value (possibly ``inf``).
    """
    if not smoothing >= 0:
        raise MixkitError(f"smoothing must be non-negative, got {smoothing}")
    p, q = _pair(a, b)
    p, q = smooth(p, smoothing), smooth(q, smoothing)
    nz = p > 0
    if (q[nz] == 0).any():
        return float("inf")
    return float(max(np.sum(p[nz] * np.log2(p[nz] / q[nz])), 0.0))


def total_variation(a: np.ndarray, b: np.ndarray) -> float:
    """Total variation ``½ Σ_t |p_t - q_t|``, in ``[0, 1]`` (1 iff disjoint supports)."""
    p, q = _pair(a, b)
    return float(min(0.5 * np.abs(p - q).sum(), 1.0))


def hellinger(a: np.ndarray, b: np.ndarray) -> float:
    """Hellinger distance ``sqrt(1 - Σ_t sqrt(p_t q_t))`` = ``‖√p - √q‖₂ / √2``, in ``[0, 1]``."""
    p, q = _pair(a, b)
    # The norm form, not sqrt(1 - BC): it keeps full precision near 0.
    return float(min(np.linalg.norm(np.sqrt(p) - np.sqrt(q)) / np.sqrt(2.0), 1.0))


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """``p·q / (‖p‖ ‖q‖)``, in ``[0, 1]`` for non-negative vectors (scale-free)."""
    p, q = _pair(a, b)
    return float(min(max(np.dot(p, q) / (np.linalg.norm(p) * np.linalg.norm(q)), 0.0), 1.0))


def cosine_distance(a: np.ndarray, b: np.ndarray) -> float:
    """``1 - cosine_similarity(p, q)``, in ``[0, 1]``."""
    return 1.0 - cosine_similarity(a, b)


def top_k_ids(c: np.ndarray, k: int | None) -> np.ndarray:
    """Ids that occur (``c > 0``), the ``k`` most frequent when ``k`` is given.

    Ties are broken towards the lower id so the set is deterministic.
    """
    c = np.asarray(c)
    present = np.flatnonzero(c > 0)
    if k is None or k >= present.size:
        return present
    if k <= 0:
        raise MixkitError(f"top_k must be positive, got {k}")
    order = np.argsort(-c[present], kind="stable")
    return np.sort(present[order[:k]])


def jaccard_similarity(a: np.ndarray, b: np.ndarray, top_k: int | None = None) -> float:
    """``|A ∩ B| / |A ∪ B|`` of the token sets (``top_k_ids``), in ``[0, 1]``."""
    p, q = _pair(a, b)
    sa, sb = top_k_ids(p, top_k), top_k_ids(q, top_k)
    union = np.union1d(sa, sb).size
    return float(np.intersect1d(sa, sb, assume_unique=True).size / union) if union else 1.0


def jaccard_distance(a: np.ndarray, b: np.ndarray, top_k: int | None = None) -> float:
    """``1 - jaccard_similarity``: 0 when the same ids occur, 1 when none is shared."""
    return 1.0 - jaccard_similarity(a, b, top_k)


def paper_distance(a: np.ndarray, b: np.ndarray, top_k: int = PAPER_TOP_K) -> float:
    """The combined token-distribution distance of the paper's released analysis script.

    ``1 - (0.4·cos + 0.3·jaccard + 0.3 / (1 + JS))`` as combined in
    ``util_scripts/dataset_similarity_syntactic.py`` of the authors' repository
    (github.com/nightingal3/midtraining, ``compute_token_similarity_from_tokens``):

    * each side keeps only the counts of its own ``top_k`` (50,000) most frequent ids,
      zero elsewhere, and is renormalized: ``p'``, ``q'``;
    * ``cos`` = cosine similarity of ``p'`` and ``q'``;
    * ``jaccard`` = ``|A ∩ B| / |A ∪ B|`` of the two top-k id sets;
    * ``JS`` = Jensen-Shannon divergence of ``p'`` and ``q'`` in **nats** (natural log,
      as the script used), so ``JS ∈ [0, ln 2]``.

    The script added 1e-10 guards inside its logs and denominators; this is the exact
    value they approximate. Range ``[0, 1 - 0.3/(1 + ln 2)] ≈ [0, 0.823]``; 0 iff equal.
    """
    p, q = _pair(a, b)
    sa, sb = top_k_ids(p, top_k), top_k_ids(q, top_k)
    pk = np.zeros_like(p)
    qk = np.zeros_like(q)
    pk[sa], qk[sb] = p[sa], q[sb]
    pk, qk = pk / pk.sum(), qk / qk.sum()
    cos = float(np.dot(pk, qk) / (np.linalg.norm(pk) * np.linalg.norm(qk)))
    union = np.union1d(sa, sb).size
    jac = np.intersect1d(sa, sb, assume_unique=True).size / union
    m = 0.5 * (pk + qk)
    js_nats = 0.5 * _kl_terms(pk, m, np.log) + 0.5 * _kl_terms(qk, m, np.log)
    return float(max(1.0 - (0.4 * cos + 0.3 * jac + 0.3 / (1.0 + js_nats)), 0.0))


@dataclass(frozen=True)
class MetricOptions:
    """Knobs of the metrics that have them (KL smoothing, Jaccard and paper top-k)."""

    smoothing: float = DEFAULT_SMOOTHING
    jaccard_top_k: int | None = None
    paper_top_k: int = PAPER_TOP_K

    def __post_init__(self) -> None:
        if not (self.smoothing >= 0 and np.isfinite(self.smoothing)):
            raise MixkitError(f"smoothing must be a finite non-negative number, got {self.smoothing}")
        if self.jaccard_top_k is not None and self.jaccard_top_k <= 0:
            raise MixkitError(f"jaccard_top_k must be positive, got {self.jaccard_top_k}")
        if self.paper_top_k <= 0:
            raise MixkitError(f"paper_top_k must be positive, got {self.paper_top_k}")


_METRICS: dict[str, Callable[[np.ndarray, np.ndarray, MetricOptions], float]] = {
    "js": lambda a, b, o: js_divergence(a, b),
    "js_distance": lambda a, b, o: js_distance(a, b),
    "kl_ab": lambda a, b, o: kl_divergence(a, b, o.smoothing),
    "kl_ba": lambda a, b, o: kl_divergence(b, a, o.smoothing),
    "tv": lambda a, b, o: total_variation(a, b),
    "hellinger": lambda a, b, o: hellinger(a, b),
    "cosine": lambda a, b, o: cosine_distance(a, b),
    "jaccard": lambda a, b, o: jaccard_distance(a, b, o.jaccard_top_k),
    "paper": lambda a, b, o: paper_distance(a, b, o.paper_top_k),
}


def metric(name: str, a: np.ndarray, b: np.ndarray, options: MetricOptions | None = None) -> float:
    """The metric called ``name`` (one of ``METRIC_NAMES``) between ``a`` and ``b``."""
    if name not in _METRICS:
        raise MixkitError(f"unknown metric '{name}' (choose from {', '.join(METRIC_NAMES)})")
    return _METRICS[name](a, b, options or MetricOptions())


def all_metrics(a: np.ndarray, b: np.ndarray, options: MetricOptions | None = None) -> dict[str, float]:
    """Every metric of ``METRIC_NAMES`` for the pair, in that order."""
    return {name: metric(name, a, b, options) for name in METRIC_NAMES}


def distance_matrix(
    vectors: Sequence[np.ndarray], name: str = "js", options: MetricOptions | None = None
) -> np.ndarray:
    """``D[i, j] = metric(vectors[i], vectors[j])`` (diagonal 0; symmetric unless the metric is KL)."""
    n = len(vectors)
    d = np.zeros((n, n), dtype=np.float64)
    for i in range(n):
        for j in range(n):
            if i != j:
                d[i, j] = metric(name, vectors[i], vectors[j], options)
    return d


def write_matrix_csv(path: str | os.PathLike, labels: Sequence[str], matrix: np.ndarray) -> None:
    """``matrix`` as CSV (atomically): a header row and a label column, values in full precision (``repr``)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["", *labels])
    for lab, row in zip(labels, matrix):
        w.writerow([lab, *(repr(float(v)) for v in row)])
    atomic.write_text(path, buf.getvalue())


def proximity_advantage(
    pretrain: np.ndarray, mixture: np.ndarray, target: np.ndarray, name: str = "js", options: MetricOptions | None = None
) -> tuple[float, float, float]:
    """``(dist(pretrain, target), dist(mixture, target), their difference)``.

    The difference is the proximity advantage: positive when the mixture is nearer
    the target than pretraining data alone.
    """
    before = metric(name, pretrain, target, options)
    after = metric(name, mixture, target, options)
    return before, after, before - after


@dataclass(frozen=True)
class ProximityRow:
    target: str
    metric: str
    mixture: str
    pretrain_to_target: float
    mixture_to_target: float
    advantage: float
    rank: int  # 1 = largest advantage among the mixtures for this target and metric


def proximity_table(
    pretrain: np.ndarray,
    mixtures: Sequence[tuple[str, np.ndarray]],
    targets: Sequence[tuple[str, np.ndarray]],
    names: Sequence[str] = ("js",),
    options: MetricOptions | None = None,
) -> list[ProximityRow]:
    """Advantage of each mixture for each target and metric, ranked within (target, metric).

    Ties keep the order the mixtures were given in.
    """
    rows: list[ProximityRow] = []
    for tname, t in targets:
        for name in names:
            before = metric(name, pretrain, t, options)
            scored = []
            for mname, m in mixtures:
                after = metric(name, m, t, options)
                scored.append((mname, after, before - after))
            order = sorted(range(len(scored)), key=lambda i: -scored[i][2])
            for rank, i in enumerate(order, start=1):
                mname, after, adv = scored[i]
                rows.append(ProximityRow(tname, name, mname, before, after, adv, rank))
    return rows
