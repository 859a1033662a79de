"""Unigram token counts of token stores and of mixtures of them.

Why: the proximity advantage that predicts midtraining gains is a distance between
*unigram* token distributions, so every measurement starts from one int64 vector per
dataset: ``counts[t]`` = how many times token id ``t`` occurs. Stores reach billions
of tokens, so the count is a Numba kernel over the memory-mapped ``.bin``: the token
range is cut into one contiguous piece per thread, each thread fills its own partial
histogram (no atomics, no false sharing), and the rows are summed at the end::

    partials[g, t] = #{i in piece g : tokens[i] = t}        counts = partials.sum(0)

Options follow the paper's protocol when asked: count a reproducible sample of ``docs``
documents (``numpy.random.default_rng(seed).choice(num_docs, docs, replace=False)``)
and only the first ``max_tokens_per_doc`` tokens of each. The EOS id that
``mixkit tokenize`` appends after every document is not counted unless
``count_eos=True``: it is a separator, not text, and stores made with and without it
should measure the same.

Counts are cached next to the store as ``NAME.counts.npy`` plus ``NAME.counts.json``
(names from ``mixkit.store.StoreFiles``; the JSON holds the store fingerprint, options,
vocabulary size, sha256 of the ``.npy``); a cache whose fingerprint, options or bytes
disagree is recomputed and replaced atomically. ``count_store`` is that policy, the one
``mixkit count`` follows.

Mixtures (``mixkit.mixture``): ``"c4:0.8,code:0.2"`` means the distribution

    q = sum_i w_i * p_i / sum_i w_i                    (mix_by="tokens", the default)

with ``p_i = counts_i / counts_i.sum()``: the token proportions a model trained on the
mix sees. ``mix_by="docs"`` weights documents instead, as the paper's released script
did (it drew documents from each source in proportion to the weights), so source ``i``
contributes tokens in proportion to ``w_i * L_i`` with ``L_i`` its mean counted tokens
per document:

    q = sum_i w_i * L_i * p_i / sum_i w_i * L_i
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numba
import numpy as np
from numba import njit, prange
from tqdm.auto import tqdm

from mixkit import atomic
from mixkit.errors import MixkitError
from mixkit.mixture import Mixture, is_mixture_expr
from mixkit.store import TokenStore, check_same_tokenizer

CACHE_FORMAT = "mixkit-counts"
CACHE_VERSION = 1
BLOCK_TOKENS = 1 << 26  # tokens per kernel call (the progress bar's step); must stay far below 2^32
MIX_BY = ("tokens", "docs")  # what a mixture weight is a share of; the first is the default


# -- kernels ------------------------------------------------------------------------------------


@njit(parallel=True, cache=True)
def _count_ranges(tokens, starts, ends, group_bounds, partials):  # pragma: no cover - compiled
    """``partials[2g + (i & 1), tokens[i]] += 1`` for ``i`` in ranges ``group_bounds[g]:group_bounds[g+1]``.

    Two interleaved rows per thread halve the chains of dependent increments when the
    same id repeats (the common case in text). ``partials`` is uint32, emptied by the
    caller after each batch of at most 2^32 tokens. Unchecked: every token must be
    ``< partials.shape[1]`` (guaranteed for uint8/uint16 tokens with 256/65,536 bins).
    """
    for g in prange(group_bounds.size - 1):
        r0 = partials[2 * g]
        r1 = partials[2 * g + 1]
        for r in range(group_bounds[g], group_bounds[g + 1]):
            s = starts[r]
            e = ends[r]
            m = s + (e - s) // 2 * 2
            for i in range(s, m, 2):
                r0[tokens[i]] += 1
                r1[tokens[i + 1]] += 1
            if m < e:
                r0[tokens[m]] += 1


@njit(parallel=True, cache=True)
def _count_ranges_paired(tokens, words, starts, ends, group_bounds, partials):  # pragma: no cover - compiled
    """``_count_ranges`` for little-endian ``uint16`` tokens read two at a time.

    ``words`` is the same memory as ``tokens`` seen as ``uint32`` (``words[j]`` holds
    tokens ``2j`` and ``2j + 1``, low half first): one load feeds two increments, one into
    each of the thread's two rows, so the loop issues half the loads and the two chains of
    increments stay independent. An odd first or last token of a range is counted alone.
    """
    for g in prange(group_bounds.size - 1):
        r0 = partials[2 * g]
        r1 = partials[2 * g + 1]
        for r in range(group_bounds[g], group_bounds[g + 1]):
            s = starts[r]
            e = ends[r]
            if s >= e:
                continue
            if s & 1:
                r1[tokens[s]] += 1
                s += 1
            if e & 1 and e > s:
                r0[tokens[e - 1]] += 1
                e -= 1
            for j in range(s >> 1, e >> 1):
                w = words[j]
                r0[w & 0xFFFF] += 1
                r1[w >> 16] += 1


@njit(parallel=True, cache=True)
def _count_ranges_checked(tokens, starts, ends, group_bounds, partials, bad):  # pragma: no cover - compiled
    """As ``_count_ranges`` for wide dtypes (one row per thread): ids outside ``[0, nbins)`` go to ``bad[g]``."""
    nbins = partials.shape[1]
    for g in prange(group_bounds.size - 1):
        row = partials[2 * g]
        nbad = 0
        for r in range(group_bounds[g], group_bounds[g + 1]):
            for i in range(starts[r], ends[r]):
                t = tokens[i]
                if t < 0 or t >= nbins:
                    nbad += 1
                else:
                    row[t] += 1
        bad[g] += nbad


def _bins_for(dtype: np.dtype, vocab_size: int) -> tuple[int, bool]:
    """Histogram width and whether the kernel must bounds-check ids."""
    dtype = np.dtype(dtype)
    if dtype.kind == "u" and dtype.itemsize <= 2:
        return max(vocab_size, 1 << (8 * dtype.itemsize)), False
    return vocab_size, True


def _pieces(starts: np.ndarray, ends: np.ndarray, threads: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut ranges into pieces of at most ``min(BLOCK_TOKENS / threads, total / threads)`` tokens.

    So that even one long range (the whole store) is shared by every thread, and a
    batch of ``BLOCK_TOKENS`` tokens holds at least ``threads`` pieces.
    """
    lengths = np.maximum(ends - starts, 0)
    total = int(lengths.sum())
    piece = max(1, min(BLOCK_TOKENS // threads, -(-total // threads)))
    k = np.maximum(1, -(-lengths // piece))
    first = np.repeat(np.cumsum(k) - k, k)
    rep_starts = np.repeat(starts, k) + (np.arange(int(k.sum()), dtype=np.int64) - first) * piece
    rep_ends = np.minimum(rep_starts + piece, np.repeat(starts + lengths, k))
    return rep_starts, rep_ends


def _group_by_tokens(starts: np.ndarray, ends: np.ndarray, groups: int) -> np.ndarray:
    """Cut the list of ranges into ``groups`` contiguous runs of about equal token totals."""
    cum = np.concatenate([[0], np.cumsum(ends - starts)])
    targets = np.linspace(0, cum[-1], groups + 1)
    bounds = np.searchsorted(cum, targets, side="left").astype(np.int64)
    bounds[0], bounds[-1] = 0, starts.size
    return np.maximum.accumulate(bounds)


def _progress(total: int, desc: str, progress: bool | None):
    disable = (not sys.stderr.isatty()) if progress is None else not progress
    return tqdm(total=total, desc=desc, unit="tok", unit_scale=True, disable=disable, leave=False)


def histogram(
    tokens: np.ndarray,
    nbins: int,
    starts: np.ndarray | None = None,
    ends: np.ndarray | None = None,
    *,
    progress: bool | None = False,
    desc: str = "count",
) -> np.ndarray:
    """int64 counts of the ids in ``tokens`` (or in the half-open ranges ``starts[r]:ends[r]``).

    Returns a vector of length ``nbins``. Raises ``MixkitError`` if an id lies outside
    ``[0, nbins)``. ``tokens`` may be a memmap: it is read once, sequentially, in blocks
    of ``BLOCK_TOKENS`` per call so the progress bar moves.
    """
    tokens = np.asarray(tokens)
    if tokens.ndim != 1 or tokens.dtype.kind not in "iu":
        raise MixkitError(f"token array must be 1-D integers, got {tokens.dtype} with shape {tokens.shape}")
    width, checked = _bins_for(tokens.dtype, nbins)
    threads = numba.get_num_threads()
    partials = np.zeros((2 * threads, width), dtype=np.uint32)
    counts = np.zeros(width, dtype=np.int64)
    bad = np.zeros(threads, dtype=np.int64)
    if starts is None:
        starts = np.zeros(1, np.int64)
        ends = np.full(1, tokens.size, np.int64)
    starts, ends = _pieces(np.asarray(starts, np.int64), np.asarray(ends, np.int64), threads)
    cum = np.concatenate([[0], np.cumsum(ends - starts)])
    total = int(cum[-1])
    # Batches of whole pieces of about BLOCK_TOKENS tokens: one kernel call (and progress step) each.
    cuts = np.searchsorted(cum, np.arange(0, total, BLOCK_TOKENS), side="right") - 1
    cuts = np.unique(np.concatenate([cuts, [starts.size]]))
    words = None if checked else _paired_view(tokens)
    with _progress(total, desc, progress) as bar:
        for a, b in zip(cuts[:-1], cuts[1:]):
            s, e = starts[a:b], ends[a:b]
            _run(tokens, s, e, _group_by_tokens(s, e, threads), partials, bad, checked, words)
            counts += partials.sum(axis=0, dtype=np.int64)
            partials[:] = 0
            bar.update(int(cum[b] - cum[a]))
    if bad.sum():
        raise MixkitError(f"{int(bad.sum())} token ids lie outside the vocabulary [0, {nbins})")
    if counts[nbins:].any():
        raise MixkitError(f"{int(counts[nbins:].sum())} token ids lie outside the vocabulary [0, {nbins})")
    return counts[:nbins].copy()


def _paired_view(tokens: np.ndarray) -> np.ndarray | None:
    """``tokens`` seen as ``uint32`` pairs when that is possible (contiguous little-endian uint16, 4-byte aligned)."""
    if (
        tokens.dtype == np.uint16
        and tokens.dtype.byteorder in "=<|"
        and sys.byteorder == "little"
        and tokens.flags.c_contiguous
        and tokens.ctypes.data % 4 == 0
        and tokens.size >= 2
    ):
        return tokens[: tokens.size // 2 * 2].view(np.uint32)
    return None


def _run(tokens, starts, ends, groups, partials, bad, checked: bool, words=None) -> None:
    if checked:
        _count_ranges_checked(tokens, starts, ends, groups, partials, bad)
    elif words is not None:
        _count_ranges_paired(tokens, words, starts, ends, groups, partials)
    else:
        _count_ranges(tokens, starts, ends, groups, partials)


# -- options and the store-level count ------------------------------------------------------------


@dataclass(frozen=True)
class CountOptions:
    """What to count. ``docs=None`` counts every document; ``seed`` only matters with ``docs``."""

    docs: int | None = None
    seed: int = 0
    max_tokens_per_doc: int | None = None
    count_eos: bool = False

    def __post_init__(self) -> None:
        if self.docs is not None and (not isinstance(self.docs, int) or self.docs <= 0):
            raise MixkitError(f"docs must be a positive number of documents, got {self.docs!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise MixkitError(f"seed must be a non-negative integer, got {self.seed!r}")
        if self.max_tokens_per_doc is not None and (
            not isinstance(self.max_tokens_per_doc, int) or self.max_tokens_per_doc <= 0
        ):
            raise MixkitError(f"max_tokens_per_doc must be a positive integer, got {self.max_tokens_per_doc!r}")

    def key(self) -> dict[str, Any]:
        """Canonical form recorded in the cache (the seed is dropped when nothing is sampled)."""
        d = asdict(self)
        if self.docs is None:
            d["seed"] = None
        return d


def open_store(store: TokenStore | str | os.PathLike, data_dir: str | os.PathLike | None = None) -> TokenStore:
    return store if isinstance(store, TokenStore) else TokenStore.open(store, data_dir)


def selected_docs(store: TokenStore, options: CountOptions) -> np.ndarray | None:
    """Sorted indices of the sampled documents, or ``None`` for all of them."""
    if options.docs is None or options.docs >= store.num_docs:
        return None
    rng = np.random.default_rng(options.seed)
    return np.sort(rng.choice(store.num_docs, size=options.docs, replace=False)).astype(np.int64)


def documents_counted(store: TokenStore, options: CountOptions) -> int:
    sel = selected_docs(store, options)
    return store.num_docs if sel is None else int(sel.size)


def _eos_to_drop(store: TokenStore, options: CountOptions) -> int | None:
    eos = store.manifest.get("eos") or {}
    if options.count_eos or not eos.get("appended") or eos.get("id") is None:
        return None
    return int(eos["id"])


def compute_counts(store: TokenStore, options: CountOptions, *, progress: bool | None = None) -> np.ndarray:
    """Count without the cache (see the module docstring for what is counted)."""
    if store.num_tokens == 0:
        raise MixkitError(f"store '{store.name}' is empty: there are no tokens to count")
    vocab = store.vocab_size
    tokens = np.asarray(store.tokens)
    eos = _eos_to_drop(store, options)
    sel = selected_docs(store, options)
    desc = f"count {store.name}"
    if sel is None and options.max_tokens_per_doc is None:
        counts = histogram(tokens, vocab, progress=progress, desc=desc)
        if eos is not None:
            lengths = np.asarray(store.doc_lengths, dtype=np.int64)
            last = (store.doc_offsets + lengths - 1)[lengths > 0]
            counts[eos] -= int(np.count_nonzero(tokens[last] == eos))
        return counts
    offsets = store.doc_offsets
    lengths = np.asarray(store.doc_lengths, dtype=np.int64)
    if sel is not None:
        offsets, lengths = offsets[sel], lengths[sel]
    starts = offsets.astype(np.int64)
    ends = starts + lengths
    if eos is not None:
        nonempty = lengths > 0
        ends[nonempty] -= tokens[ends[nonempty] - 1] == eos
    if options.max_tokens_per_doc is not None:
        ends = np.minimum(ends, starts + options.max_tokens_per_doc)
    return histogram(tokens, vocab, starts, ends, progress=progress, desc=desc)


# -- cache ----------------------------------------------------------------------------------------


def cache_paths(store: TokenStore) -> tuple[Path, Path]:
    """``(NAME.counts.npy, NAME.counts.json)`` beside the store's files."""
    return store.files.counts_npy, store.files.counts_json


def _npy_bytes(counts: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(counts, dtype="<i8"), allow_pickle=False)
    return buf.getvalue()


def _cache_meta(store: TokenStore, options: CountOptions) -> dict[str, Any]:
    return {
        "format": CACHE_FORMAT,
        "format_version": CACHE_VERSION,
        "store": store.name,
        "fingerprint": store.fingerprint,
        "tokenizer_sha256": store.tokenizer_sha256,
        "vocab_size": store.vocab_size,
        "options": options.key(),
    }


def load_cached(store: TokenStore, options: CountOptions) -> np.ndarray | None:
    """The cached counts if they were made from this store's content with these options."""
    npy_path, json_path = cache_paths(store)
    try:
        meta = json.loads(json_path.read_text())
        data = npy_path.read_bytes()
    except (OSError, json.JSONDecodeError):
        return None
    expected = _cache_meta(store, options)
    if any(meta.get(k) != v for k, v in expected.items()):
        return None
    if meta.get("npy_sha256") != hashlib.sha256(data).hexdigest():
        return None
    counts = np.load(io.BytesIO(data), allow_pickle=False)
    if counts.shape != (store.vocab_size,):
        return None
    return counts.astype(np.int64, copy=False)


def save_cache(store: TokenStore, options: CountOptions, counts: np.ndarray) -> bool:
    """Write the cache (``.npy`` first, then the JSON that vouches for it); False if not writable."""
    npy_path, json_path = cache_paths(store)
    data = _npy_bytes(counts)
    meta = _cache_meta(store, options)
    meta.update(
        npy_sha256=hashlib.sha256(data).hexdigest(),
        tokens_counted=int(counts.sum()),
        documents_counted=documents_counted(store, options),
    )
    try:
        atomic.write_bytes(npy_path, data)
        atomic.write_json(json_path, meta)
    except OSError as e:
        print(f"warning: could not write the counts cache of '{store.name}' ({e})", file=sys.stderr)
        return False
    return True


def counts(
    store: TokenStore | str | os.PathLike,
    *,
    docs: int | None = None,
    seed: int = 0,
    max_tokens_per_doc: int | None = None,
    count_eos: bool = False,
    cache: bool = True,
    data_dir: str | os.PathLike | None = None,
    progress: bool | None = None,
) -> np.ndarray:
    """int64 vector of length ``store.vocab_size``: how often each token id occurs.

    ``store`` is a ``TokenStore``, a store name (looked up in ``data_dir``) or a path.
    With ``cache`` the result is read from / written to ``NAME.counts.{npy,json}``.
    """
    opened = open_store(store, data_dir)
    options = CountOptions(docs=docs, seed=seed, max_tokens_per_doc=max_tokens_per_doc, count_eos=count_eos)
    return counts_with(opened, options, cache=cache, progress=progress)


def counts_with(
    store: TokenStore, options: CountOptions, *, cache: bool = True, progress: bool | None = None
) -> np.ndarray:
    """``counts`` for an open store and a ready ``CountOptions``."""
    return count_store(store, options, cache=cache, progress=progress).counts


@dataclass(frozen=True)
class StoreCount:
    """What ``count_store`` returned and how: ``how`` is ``"cached"``, ``"counted"``,
    ``"counted, cache not writable"`` or ``"not cached"``; ``cache_file`` is the
    ``NAME.counts.npy`` read or written (None without the cache)."""

    counts: np.ndarray
    how: str
    cache_file: Path | None


def count_store(
    store: TokenStore,
    options: CountOptions,
    *,
    cache: bool = True,
    force: bool = False,
    progress: bool | None = None,
) -> StoreCount:
    """The cache policy: a matching cache is read (unless ``force``), else the store is counted
    and the cache written; ``cache=False`` neither reads nor writes it."""
    if store.num_tokens == 0:
        raise MixkitError(f"store '{store.name}' is empty: there are no tokens to count")
    if not cache:
        return StoreCount(compute_counts(store, options, progress=progress), "not cached", None)
    if not force:
        hit = load_cached(store, options)
        if hit is not None:
            return StoreCount(hit, "cached", store.files.counts_npy)
    result = compute_counts(store, options, progress=progress)
    written = save_cache(store, options, result)
    return StoreCount(result, "counted" if written else "counted, cache not writable", store.files.counts_npy)


# -- mixtures -------------------------------------------------------------------------------------


@dataclass
class Distribution:
    """A unigram distribution ready for the distance metrics.

    ``probs`` sums to 1 (float64, length vocab); ``label`` is what the user typed;
    ``parts`` the ``(store, weight)`` pairs it was made from.
    """

    label: str
    probs: np.ndarray
    parts: list[tuple[TokenStore, float]]

    @property
    def tokenizer_sha256(self) -> str:
        return self.parts[0][0].tokenizer_sha256


def spec_mixture(spec: str | Mixture) -> Mixture:
    """A store name, store path or mixture expression as a mixture (one store: weight 1)."""
    if isinstance(spec, Mixture) or is_mixture_expr(spec):
        return Mixture.parse(spec)
    return Mixture(((str(spec), 1.0),))


def open_spec(spec: str | Mixture, data_dir: str | os.PathLike | None = None) -> list[tuple[TokenStore, float]]:
    """Open the stores a name, path or mixture expression refers to (no counting yet)."""
    parts = [(TokenStore.open(name, data_dir), w) for name, w in spec_mixture(spec)]
    check_same_tokenizer(s for s, _ in parts)
    for s, _ in parts:
        if s.num_tokens == 0:
            raise MixkitError(f"store '{s.name}' is empty: there are no tokens to count")
    return parts


def mixture_distribution(
    parts: list[tuple[TokenStore, float]],
    *,
    mix_by: str = "tokens",
    options: CountOptions | None = None,
    cache: bool = True,
    progress: bool | None = None,
) -> np.ndarray:
    """The weighted mixture of the parts' normalized counts (formulas in the module docstring)."""
    if mix_by not in MIX_BY:
        raise MixkitError(f"mix_by must be one of {', '.join(MIX_BY)}, got '{mix_by}'")
    options = options or CountOptions()
    if not parts:
        raise MixkitError("a mixture needs at least one store")
    check_same_tokenizer(s for s, _ in parts)
    weights = np.array([w for _, w in parts], dtype=np.float64)
    if not np.all(np.isfinite(weights)) or (weights < 0).any():
        raise MixkitError("mixture weights must be finite and non-negative")
    if weights.sum() <= 0:
        raise MixkitError("mixture weights are all zero")
    vocab = parts[0][0].vocab_size
    total = np.zeros(vocab, dtype=np.float64)
    mass = []
    dists = []
    for store, w in parts:
        if w == 0:
            mass.append(0.0)
            dists.append(None)
            continue
        c = counts_with(store, options, cache=cache, progress=progress)
        n = int(c.sum())
        if n == 0:
            raise MixkitError(f"store '{store.name}': no tokens left to count with these options")
        scale = w if mix_by == "tokens" else w * n / documents_counted(store, options)
        mass.append(scale)
        dists.append(c / n)
    mass_arr = np.asarray(mass)
    mass_arr /= mass_arr.sum()
    for m, p in zip(mass_arr, dists):
        if p is not None:
            total += m * p
    return total


def distribution(
    spec: str | Mixture,
    *,
    data_dir: str | os.PathLike | None = None,
    mix_by: str = "tokens",
    options: CountOptions | None = None,
    cache: bool = True,
    progress: bool | None = None,
) -> Distribution:
    """Resolve a store name, store path or mixture expression to its unigram distribution."""
    parts = open_spec(spec, data_dir)
    probs = mixture_distribution(parts, mix_by=mix_by, options=options, cache=cache, progress=progress)
    return Distribution(label=str(spec), probs=probs, parts=parts)


def distributions(
    specs: list[str | Mixture],
    *,
    data_dir: str | os.PathLike | None = None,
    mix_by: str = "tokens",
    options: CountOptions | None = None,
    cache: bool = True,
    progress: bool | None = None,
) -> list[Distribution]:
    """Resolve several specs, refusing before any counting if their tokenizers differ."""
    opened = [open_spec(s, data_dir) for s in specs]
    check_same_tokenizer([s for parts in opened for s, _ in parts])
    out = []
    for spec, parts in zip(specs, opened):
        probs = mixture_distribution(parts, mix_by=mix_by, options=options, cache=cache, progress=progress)
        out.append(Distribution(label=str(spec), probs=probs, parts=parts))
    return out
