"""Kernels of mixkit.mix.indices against Megatron's C++ helpers and pure-NumPy references."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mixkit.mix.indices import (
    blend_into,
    build_blending_indices,
    build_sample_idx,
    epoch_indices,
    num_samples_for,
)
from tests.support import reference_blend

helpers_cpp = pytest.importorskip("megatron.core.datasets.helpers_cpp")


def megatron_blend(weights: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    ds = np.zeros(size, dtype=np.int16)
    sn = np.zeros(size, dtype=np.int64)
    helpers_cpp.build_blending_indices(ds, sn, weights, len(weights), size, False)
    return ds, sn


weight_value = st.one_of(
    st.floats(1e-6, 1.0),
    st.sampled_from([1e-6, 1.0, 0.5, 1e-3]),
)


@st.composite
def weight_vectors(draw, min_k=1, max_k=12):
    k = draw(st.integers(min_k, max_k))
    w = np.array(draw(st.lists(weight_value, min_size=k, max_size=k)), dtype=np.float64)
    return w / w.sum()


@given(weights=weight_vectors(), size=st.integers(1, 3000))
def test_blending_matches_megatron(weights, size):
    ours = build_blending_indices(weights, size)
    theirs = megatron_blend(weights, size)
    assert np.array_equal(ours[0], theirs[0])
    assert np.array_equal(ours[1], theirs[1])


@pytest.mark.parametrize(
    "weights",
    [[0.8, 0.2], [1 / 3] * 3, [0.25] * 4, [0.5, 0.2, 0.1, 0.1, 0.1], [0.3, 0.2, 0.1, 0.1, 0.1, 0.1, 0.05, 0.05], [1 / 9] * 9, [1e-6, 1 - 1e-6]],
)
def test_blending_matches_megatron_long(weights):
    w = np.array(weights) / np.sum(weights)
    ours = build_blending_indices(w, 300_000)
    theirs = megatron_blend(w, 300_000)
    assert np.array_equal(ours[0], theirs[0]) and np.array_equal(ours[1], theirs[1])


@given(weights=weight_vectors(max_k=10), size=st.integers(1, 500))
def test_blending_matches_plain_python_rule(weights, size):
    ds, sn = build_blending_indices(weights, size)
    ref_ds, ref_sn = reference_blend(weights, size)
    assert np.array_equal(ds, ref_ds) and np.array_equal(sn, ref_sn)


def prefix_deviation(weights: np.ndarray, ds: np.ndarray) -> np.ndarray:
    """``c_k(n) - w_k n`` for n = 1..N (rows) and every k (columns)."""
    n = np.arange(1, ds.size + 1)[:, None]
    counts = np.cumsum(ds[:, None] == np.arange(weights.size)[None, :], axis=0)
    return counts - weights[None, :] * n


@given(weights=weight_vectors(min_k=2, max_k=2), size=st.integers(1, 20_000))
def test_prefix_bound_two_datasets(weights, size):
    ds, _ = build_blending_indices(weights, size)
    assert np.abs(prefix_deviation(weights, ds)).max() <= 1.0 + 1e-9


@given(weights=weight_vectors(min_k=3, max_k=8), size=st.integers(1, 20_000))
def test_prefix_bound_up_to_eight_datasets(weights, size):
    ds, _ = build_blending_indices(weights, size)
    dev = prefix_deviation(weights, ds)
    assert dev.max() < 1.0 + 1e-9  # overshoot: the chosen dataset had a non-negative deficit
    assert np.abs(dev).max() <= 2.5  # the stated bound for K <= 8


def test_blend_into_offsets_and_ids():
    """A phase writes global ids and continues each dataset's stream from its offset."""
    w = np.array([0.75, 0.25])
    ds = np.empty(40, dtype=np.int16)
    sn = np.empty(40, dtype=np.int64)
    blend_into(w, np.array([3, 1]), np.array([100, 7]), ds, sn)
    local_ds, local_sn = build_blending_indices(w, 40)
    assert np.array_equal(ds, np.where(local_ds == 0, 3, 1))
    assert np.array_equal(sn, np.where(local_ds == 0, 100, 7) + local_sn)


@st.composite
def sample_idx_inputs(draw):
    n_docs = draw(st.integers(1, 40))
    sizes = np.array(draw(st.lists(st.integers(0, 60), min_size=n_docs, max_size=n_docs)), dtype=np.int32)
    if sizes.sum() < 2:
        sizes[0] += 2
    epochs = draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    doc_idx = np.concatenate([rng.permutation(n_docs) for _ in range(epochs)]).astype(np.int32)
    seq_length = draw(st.integers(2, 50))
    drop_last = draw(st.booleans())
    extra = draw(st.booleans())
    return sizes, doc_idx, seq_length, epochs, int(sizes.sum(dtype=np.int64)), drop_last, extra


@given(args=sample_idx_inputs())
def test_sample_idx_matches_megatron(args):
    sizes, doc_idx, seq_length, epochs, tokens, drop_last, extra = args
    ours = build_sample_idx(sizes, doc_idx, seq_length, epochs, tokens, drop_last, extra)
    theirs = helpers_cpp.build_sample_idx_int32(sizes, doc_idx, seq_length, epochs, tokens, drop_last, int(extra))
    assert ours.shape == theirs.shape
    assert np.array_equal(ours, theirs)


def reference_samples(sizes: np.ndarray, doc_idx: np.ndarray, seq_length: int) -> list[tuple[int, int]]:
    """Where each ``seq_length + 1``-token window starts, by walking the concatenation token by token."""
    owner = np.concatenate([np.full(sizes[d], p) for p, d in enumerate(doc_idx)] + [np.zeros(0, int)])
    offset = np.concatenate([np.arange(sizes[d]) for d in doc_idx] + [np.zeros(0, int)])
    n = (owner.size - 1) // seq_length
    return [(int(owner[j * seq_length]), int(offset[j * seq_length])) for j in range(n + 1)]


@given(args=sample_idx_inputs())
def test_sample_idx_rows_are_window_starts(args):
    sizes, doc_idx, seq_length, _, _, _, _ = args
    sizes = np.maximum(sizes, 1)  # every window start then lies inside a document
    one_epoch = doc_idx[: sizes.size]
    ours = build_sample_idx(sizes, one_epoch, seq_length, 1, int(sizes.sum()))
    ref = reference_samples(sizes, one_epoch, seq_length)
    assert [tuple(map(int, r)) for r in ours] == ref


def test_num_samples_drops_the_tail():
    assert num_samples_for(101, 10) == 10
    assert num_samples_for(100, 10) == 9  # 9 windows of 11 overlapping tokens fit in 100
    assert num_samples_for(100, 10, drop_last_partial_sequence=False) == 10


def test_epoch_indices_are_deterministic_and_distinct():
    lengths = np.random.default_rng(0).integers(1, 50, size=200).astype(np.int32)
    a = epoch_indices(lengths, 16, 1234, "c4", 0)
    b = epoch_indices(lengths, 16, 1234, "c4", 0)
    for x, y in zip(a, b):
        assert np.array_equal(x, y)
    assert sorted(a[0].tolist()) == list(range(200))
    assert sorted(a[2].tolist()) == list(range(a[1].shape[0] - 1))
    assert not np.array_equal(a[0], epoch_indices(lengths, 16, 1234, "c4", 1)[0])  # fresh shuffle per epoch
    assert not np.array_equal(a[0], epoch_indices(lengths, 16, 1234, "code", 0)[0])
    assert not np.array_equal(a[0], epoch_indices(lengths, 16, 99, "c4", 0)[0])
