"""Index construction for mixed sample streams: Numba kernels plus the per-epoch RNG.

Three kinds of index describe a mix, as in Megatron-LM's ``GPTDataset`` and
``BlendedDataset``:

Per dataset and epoch ``e`` (a dataset's token stream is read epoch after epoch):

``doc_idx``     int32 ``[n_docs]``: the epoch's document order, a permutation of
                ``0..n_docs-1`` drawn from ``RandomState(epoch_seed(seed, name, e))``.
``sample_idx``  ``[S + 1, 2]``: row ``j`` is ``(position in doc_idx, token offset in that
                document)`` where sample ``j`` starts. Sample ``j`` is the ``L + 1`` tokens
                ``[j*L, j*L + L + 1)`` of the epoch's documents concatenated (EOS included),
                so consecutive samples overlap by one token (the last target is the next
                sample's first input). ``S = (T - 1) // L`` for ``T`` tokens per epoch: the
                tail that does not fill a sample is dropped, never wrapped.
``shuffle_idx`` ``[S]``: a permutation of ``0..S-1`` from the same RandomState, drawn
                after ``doc_idx``. Stream sample ``m`` of the dataset is epoch
                ``e = m // S``, sample ``sample_idx[shuffle_idx[m % S]]`` of that epoch.

Epochs are independent (their own seed), so a dataset's stream does not depend on how
many of its samples a mix uses: a longer mix reads the same stream further.

Per global sample ``n`` of the mix (``num_steps * global_batch`` of them):

``dataset_index``        int16: which dataset feeds sample ``n``.
``dataset_sample_index`` int64: which stream sample of that dataset.

Within one phase the datasets are interleaved by Megatron's deterministic rule: sample
``n`` (counted from the phase start) goes to the ``k`` maximising
``w_k * max(n, 1) - c_k(n)`` (ties to the lowest ``k``), ``c_k(n)`` being ``k``'s
samples so far in the phase. This keeps every prefix of a phase balanced: the overshoot
``c_k(n) - w_k n`` is always below 1 (the chosen dataset had the largest, hence a
non-negative, deficit), so with two datasets ``|c_k(n) - w_k n| <= 1``; with ``K``
datasets the deficit is below ``K - 1`` in theory, and the bound the tests hold is
``|c_k(n) - w_k n| <= 2.5`` for ``K <= 8`` (random and hill-climbed weights reach about
2.05; three datasets about 1.5).

The interleaving and ``build_sample_idx`` equal Megatron's ``helpers`` whatever the plan.
The per-epoch order above is mixkit's own (``MixPlan.shuffle = "mixkit"``); with
``"megatron"`` a dataset's three arrays are instead ``megatron_indices``: Megatron's
``GPTDataset`` order, one ``RandomState(seed)`` over all the epochs it is built for.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
from numba import njit

# -- blending -------------------------------------------------------------------------------------


@njit(cache=True)
def _blend_two(w0, w1, id0, id1, off0, off1, ds_out, sn_out):
    """Two datasets: counts kept as float64 (exact below 2**53) so the loop does no int→float."""
    c0 = 0.0
    c1 = 0.0
    for n in range(ds_out.size):
        x = max(float(n), 1.0)
        e0 = w0 * x - c0
        e1 = w1 * x - c1
        if e1 > e0:
            ds_out[n] = id1
            sn_out[n] = off1 + np.int64(c1)
            c1 += 1.0
        else:
            ds_out[n] = id0
            sn_out[n] = off0 + np.int64(c0)
            c0 += 1.0


@njit(cache=True)
def _blend_upto8(w, ids, offsets, ds_out, sn_out):
    """Three to eight datasets, unrolled over locals (``w`` padded with ``-inf``, never chosen).

    Each sample's choice feeds the next sample's errors, so the loop runs at the speed
    of that dependency chain; everything here is arranged to shorten it:

    * counts live in registers, not an array (no store-to-load latency), and every
      ``if`` compiles to a conditional move;
    * the argmax is a tree of pairwise comparisons (depth 3) rather than a scan (depth 7);
    * the errors of sample ``n`` are computed before sample ``n - 1``'s choice is known,
      both ways: ``w_k x - c_k`` (``k`` not chosen) and ``w_k x - (c_k + 1)`` (chosen),
      ``c_k`` being the counts before ``n - 1``. The choice then only selects one of the
      two (exactly Megatron's ``w_k x - c_k(n)``: ``c_k + 1`` is an exact float), instead
      of waiting for an add and a subtract. 20-30% faster than computing after the choice.
    """
    w0, w1, w2, w3, w4, w5, w6, w7 = w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]
    c0 = c1 = c2 = c3 = c4 = c5 = c6 = c7 = 0.0
    best = -1  # the previous sample's choice (none before the first)
    for n in range(ds_out.size):
        x = max(float(n), 1.0)
        e0 = w0 * x - (c0 + 1.0) if best == 0 else w0 * x - c0
        e1 = w1 * x - (c1 + 1.0) if best == 1 else w1 * x - c1
        e2 = w2 * x - (c2 + 1.0) if best == 2 else w2 * x - c2
        e3 = w3 * x - (c3 + 1.0) if best == 3 else w3 * x - c3
        e4 = w4 * x - (c4 + 1.0) if best == 4 else w4 * x - c4
        e5 = w5 * x - (c5 + 1.0) if best == 5 else w5 * x - c5
        e6 = w6 * x - (c6 + 1.0) if best == 6 else w6 * x - c6
        e7 = w7 * x - (c7 + 1.0) if best == 7 else w7 * x - c7
        c0 += 1.0 if best == 0 else 0.0
        c1 += 1.0 if best == 1 else 0.0
        c2 += 1.0 if best == 2 else 0.0
        c3 += 1.0 if best == 3 else 0.0
        c4 += 1.0 if best == 4 else 0.0
        c5 += 1.0 if best == 5 else 0.0
        c6 += 1.0 if best == 6 else 0.0
        c7 += 1.0 if best == 7 else 0.0
        # A tree of pairwise maxima: the right side wins only when strictly larger, so a
        # tie goes to the lower index, as in the sequential scan.
        t = e1 > e0
        a_e = e1 if t else e0
        a_i = 1 if t else 0
        t = e3 > e2
        b_e = e3 if t else e2
        b_i = 3 if t else 2
        t = e5 > e4
        d_e = e5 if t else e4
        d_i = 5 if t else 4
        t = e7 > e6
        f_e = e7 if t else e6
        f_i = 7 if t else 6
        t = b_e > a_e
        a_e = b_e if t else a_e
        a_i = b_i if t else a_i
        t = f_e > d_e
        d_e = f_e if t else d_e
        d_i = f_i if t else d_i
        best = d_i if d_e > a_e else a_i
        ds_out[n] = ids[best]
        # c_best(n) (the counts are now those before sample n), off the chain.
        count = c0
        count = c1 if best == 1 else count
        count = c2 if best == 2 else count
        count = c3 if best == 3 else count
        count = c4 if best == 4 else count
        count = c5 if best == 5 else count
        count = c6 if best == 6 else count
        count = c7 if best == 7 else count
        sn_out[n] = offsets[best] + np.int64(count)


@njit(cache=True)
def _blend_many(weights, ids, offsets, ds_out, sn_out):
    k_n = weights.size
    counts = np.zeros(k_n, dtype=np.float64)
    for n in range(ds_out.size):
        x = max(float(n), 1.0)
        best = 0
        best_err = weights[0] * x - counts[0]
        for k in range(1, k_n):
            err = weights[k] * x - counts[k]
            if err > best_err:
                best_err = err
                best = k
        ds_out[n] = ids[best]
        sn_out[n] = offsets[best] + np.int64(counts[best])
        counts[best] += 1.0


def blend_into(weights: np.ndarray, ids: np.ndarray, offsets: np.ndarray, ds_out: np.ndarray, sn_out: np.ndarray) -> None:
    """Fill ``ds_out`` (int16) and ``sn_out`` (int64) for one phase.

    ``weights`` are the phase's normalised positive weights, ``ids`` the datasets' global
    ids and ``offsets`` how many stream samples each dataset used in earlier phases, so
    ``sn_out[n] = offsets[k] + c_k(n)``. No checking here: the caller validates.
    """
    weights = np.ascontiguousarray(weights, dtype=np.float64)
    ids = np.ascontiguousarray(ids, dtype=np.int16)
    offsets = np.ascontiguousarray(offsets, dtype=np.int64)
    if weights.size == 1:
        ds_out[:] = ids[0]
        np.add(np.arange(sn_out.size, dtype=np.int64), offsets[0], out=sn_out)
    elif weights.size == 2:
        _blend_two(weights[0], weights[1], ids[0], ids[1], offsets[0], offsets[1], ds_out, sn_out)
    elif weights.size <= 8:
        padded = np.full(8, -np.inf)
        padded[: weights.size] = weights
        ids8 = np.zeros(8, dtype=np.int16)
        ids8[: ids.size] = ids
        offsets8 = np.zeros(8, dtype=np.int64)
        offsets8[: offsets.size] = offsets
        _blend_upto8(padded, ids8, offsets8, ds_out, sn_out)
    else:
        _blend_many(weights, ids, offsets, ds_out, sn_out)


def build_blending_indices(weights: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Megatron's ``helpers_cpp.build_blending_indices(..., weights, len(weights), size)``.

    Returns ``(dataset_index int16[size], dataset_sample_index int64[size])``; identical
    to Megatron's arrays for the same float64 weights.
    """
    weights = np.asarray(weights, dtype=np.float64)
    ds = np.empty(size, dtype=np.int16)
    sn = np.empty(size, dtype=np.int64)
    blend_into(weights, np.arange(weights.size), np.zeros(weights.size, dtype=np.int64), ds, sn)
    return ds, sn


# -- sample index ---------------------------------------------------------------------------------


@njit(cache=True)
def _sample_idx_kernel(sizes, doc_idx, seq_length, num_samples, add_extra, out):
    # Transcription of helpers.cpp::build_sample_idx (same loop, same edge cases).
    doc_pos = 0
    doc_offset = 0
    out[0, 0] = 0
    out[0, 1] = 0
    row = 1
    last = doc_idx.size - 1
    while row <= num_samples:
        remaining = seq_length + add_extra
        while remaining != 0:
            doc_length = sizes[doc_idx[doc_pos]] - doc_offset
            remaining -= doc_length
            if remaining <= 0:
                doc_offset += remaining + doc_length - add_extra
                remaining = 0
            else:
                if doc_pos == last:
                    doc_offset = sizes[doc_idx[doc_pos]] - add_extra
                    break
                doc_pos += 1
                doc_offset = 0
        out[row, 0] = doc_pos
        out[row, 1] = doc_offset
        row += 1


def num_samples_for(tokens: int, seq_length: int, drop_last_partial_sequence: bool = True, add_extra_token: int = 1) -> int:
    """Samples of ``seq_length + add_extra_token`` tokens in ``tokens`` tokens (helpers.cpp's count)."""
    if drop_last_partial_sequence:
        return (tokens - add_extra_token) // seq_length
    # helpers.cpp computes ceil(float(...)): single precision, reproduced as such.
    return int(math.ceil(np.float32(tokens - add_extra_token) / np.float32(seq_length)))


def build_sample_idx(
    sizes: np.ndarray,
    doc_idx: np.ndarray,
    seq_length: int,
    num_epochs: int,
    tokens_per_epoch: int,
    drop_last_partial_sequence: bool = True,
    add_extra_token_to_sequence: bool = True,
) -> np.ndarray:
    """The ``[num_samples + 1, 2]`` sample index, equal to ``megatron.core.datasets.helpers.build_sample_idx``.

    int32 when every entry fits (as Megatron chooses), else int64.
    """
    sizes = np.asarray(sizes)
    doc_idx = np.asarray(doc_idx)
    extra = 1 if add_extra_token_to_sequence else 0
    n = num_samples_for(num_epochs * tokens_per_epoch, seq_length, drop_last_partial_sequence, extra)
    biggest = max(doc_idx.shape[0], int(sizes.max()) if sizes.size else 0)
    dtype = np.int32 if biggest <= np.iinfo(np.int32).max else np.int64
    out = np.empty((n + 1, 2), dtype=dtype)
    _sample_idx_kernel(sizes, doc_idx, seq_length, n, extra, out)
    return out


# -- per-epoch document and shuffle indices -------------------------------------------------------


def epoch_seed(seed: int, name: str, epoch: int) -> np.ndarray:
    """uint32 words seeding ``RandomState`` for one dataset epoch.

    Mixes the mix seed, the dataset's name and the epoch, so every (dataset, epoch) gets
    its own shuffle that does not depend on the plan. ``RandomState`` is used because
    NumPy keeps its streams fixed across versions (``Generator``'s may change).
    """
    digest = hashlib.sha256(f"mixkit-epoch:{seed}:{epoch}:{name}".encode()).digest()
    return np.frombuffer(digest, dtype="<u4").astype(np.uint32)


def epoch_indices(
    doc_lengths: np.ndarray, seq_length: int, seed: int, name: str, epoch: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(doc_idx, sample_idx, shuffle_idx)`` of one epoch (see the module docstring)."""
    rs = np.random.RandomState(epoch_seed(seed, name, epoch))
    sizes = np.asarray(doc_lengths)
    doc_idx = np.arange(sizes.size, dtype=np.int32)
    rs.shuffle(doc_idx)
    tokens = int(sizes.sum(dtype=np.int64))
    sample_idx = build_sample_idx(sizes, doc_idx, seq_length, 1, tokens)
    n = sample_idx.shape[0] - 1
    shuffle_idx = np.arange(n, dtype=np.uint32 if n < np.iinfo(np.uint32).max - 1 else np.int64)
    rs.shuffle(shuffle_idx)
    return doc_idx, sample_idx, shuffle_idx


# -- Megatron's order -----------------------------------------------------------------------------

MEGATRON_SURPLUS = 0.005  # BlendedMegatronDatasetConfig.mid_level_dataset_surplus, its default
MEGATRON_FINAL_EPOCH_THRESHOLD = 0.80  # GPTDataset: a final epoch used below this share is shuffled apart


def megatron_dataset_sizes(weights: list[float], size: int, surplus: float = MEGATRON_SURPLUS) -> list[int]:
    """Samples Megatron builds each dataset of a blend for (``_get_size_per_split_per_dataset``).

    ``ceil(ceil(size * w_k) * (1 + surplus))`` for the normalised weights ``w_k``: the
    blend draws about ``size * w_k`` from dataset ``k``, and the surplus keeps its
    rounding from running past the end. The result decides each dataset's epochs, hence
    its order, so it is part of Megatron's order.
    """
    return [int(math.ceil(math.ceil(size * w) * (1 + surplus))) for w in weights]


def megatron_num_epochs(tokens_per_epoch: int, num_samples: int, seq_length: int) -> int:
    """``GPTDataset._get_num_epochs``: the fewest epochs whose tokens hold ``num_samples``
    samples of ``seq_length + 1`` tokens (``E * T >= num_samples * L + 1``)."""
    needed = num_samples * seq_length + 1
    return max(1, -(-needed // tokens_per_epoch))


def megatron_indices(
    doc_lengths: np.ndarray, seq_length: int, seed: int, num_samples: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(doc_idx, sample_idx, shuffle_idx)`` of megatron.core's ``GPTDataset`` over every
    document of a store, built for ``num_samples`` samples with ``random_seed=seed``.

    The steps of ``GPTDataset._build_document_sample_shuffle_indices`` (train split,
    ``add_extra_token_to_sequence``), all drawn from one ``RandomState(seed)``:

    * ``E = megatron_num_epochs(T, num_samples, L)`` epochs of the ``T`` tokens;
    * ``doc_idx`` int32 ``[E * n_docs]``: the document ids ``E`` times over, shuffled as one
      array, so epochs mix (a document may come back before another has come once);
      when ``E > 1`` and the last epoch supplies fewer than ``int(0.8 * S_1)`` of the
      samples (``S_1 = (T - 1) // L``) it is shuffled apart: the first ``E - 1`` epochs
      together, then the last one ("separate final epoch");
    * ``sample_idx`` ``[S + 1, 2]`` over that whole order, ``S = (E*T - 1) // L``
      (``build_sample_idx``: samples run across epoch boundaries);
    * ``shuffle_idx`` ``[S]``: ``arange(S)`` shuffled, or, with a separate final epoch, the
      first ``S' = ((E-1)*T - 1) // L`` and the rest shuffled each on their own.

    Stream sample ``m`` is ``sample_idx[shuffle_idx[m]]``, i.e. ``GPTDataset[m]``.
    """
    sizes = np.asarray(doc_lengths)
    n_docs = sizes.size
    tokens = int(sizes.sum(dtype=np.int64))
    epochs = megatron_num_epochs(tokens, num_samples, seq_length)
    separate_final = False
    if epochs > 1:
        before_final = ((epochs - 1) * tokens - 1) // seq_length
        per_epoch = (tokens - 1) // seq_length
        separate_final = num_samples - before_final < int(MEGATRON_FINAL_EPOCH_THRESHOLD * per_epoch)
    rs = np.random.RandomState(seed)
    one_epoch = np.arange(n_docs, dtype=np.int32)
    if separate_final:
        first = np.tile(one_epoch, epochs - 1)
        rs.shuffle(first)
        last = one_epoch.copy()
        rs.shuffle(last)
        doc_idx = np.concatenate((first, last))
    else:
        doc_idx = np.tile(one_epoch, epochs)
        rs.shuffle(doc_idx)
    sample_idx = build_sample_idx(sizes, doc_idx, seq_length, epochs, tokens)
    total = sample_idx.shape[0] - 1
    dtype = np.uint32 if total < np.iinfo(np.uint32).max - 1 else np.int64
    first_part = before_final if separate_final else total
    shuffle_idx = np.arange(total, dtype=dtype)
    rs.shuffle(shuffle_idx[:first_part])
    if separate_final:
        rs.shuffle(shuffle_idx[first_part:])
    return doc_idx, sample_idx, shuffle_idx
