"""Unigram token counts of token stores and of mixtures of them.

Why: the proximity advantage that predicts midtraining gains is a distance between
*unigram* token distributions, so every measurement starts from one int64 vector per
dataset: ``counts[t]`` = how many times token id ``t`` occurs. Stores reach billions
of tokens, so the count is a Numba kernel over the memory-mapped ``.bin``: the token
range is cut into one contiguous piece per thread, each thread fills its own partial
histogram (no atomics, no false sharing), and the rows are summed at the end::

    partials[g, t] = #{i in piece g : tokens[i] = t}        counts = partials.sum(0)

Options: count a reproducible sample of ``docs`` documents
(``numpy.random.default_rng(seed).choice(num_docs, docs, replace=False)``) and only the
first ``max_tokens_per_doc`` tokens of each. The EOS id that ``mixkit tokenize`` appends
after every document is not counted unless ``count_eos=True``: it is a separator, not
text, and stores made with and without it should measure the same.

Counts are cached next to the store as ``NAME.counts.npy`` plus ``NAME.counts.json``
(names from ``mixkit.store.StoreFiles``; the JSON holds the store fingerprint, options,
vocabulary size, sha256 of the ``.npy``); a cache whose fingerprint, options or bytes
disagree is recomputed and replaced atomically. ``count_store`` is that policy, the one
``mixkit count`` follows.

Mixtures (``mixkit.mixture``): under the default protocol ``"c4:0.8,code:0.2"`` means

    q = sum_i w_i * p_i / sum_i w_i                    (mix_by="tokens", the default)

with ``p_i = counts_i / counts_i.sum()``: the token proportions a model trained on the
mix sees. ``mix_by="docs"`` reads the weights as shares of documents instead, so source
``i`` contributes tokens in proportion to ``w_i * L_i`` with ``L_i`` its mean counted
tokens per document:

    q = sum_i w_i * L_i * p_i / sum_i w_i * L_i

(This is *not* what the paper's released script did; its mixing is the ``paper``
protocol below.)

Protocols: what is counted, and how a mixture is formed from it
-----------------------------------------------------------------

``protocol="all"`` (the default) is everything above: every token of every document
(or the ``CountOptions`` given), mixtures by ``mix_by``.

``protocol="paper"`` is proximity as the paper measured it, transcribed from the
authors' released script (``util_scripts/dataset_similarity_syntactic.py`` of
github.com/nightingal3/midtraining, ``--method token --enable_mixture_weights``):

* **sample**: ``PAPER_DOCS`` = 1,000 documents per store, drawn without replacement,
  seeded, in the order drawn: ``order = default_rng(seed).choice(num_docs,
  min(1000, num_docs), replace=False)`` (the script took the first 1,000 records of a
  streaming shuffle with a 10,000-record buffer and seed 42, the same seed for every
  dataset, as one ``seed`` serves every store here);
* **truncation**: the first ``PAPER_TOKENS_PER_DOC`` = 512 tokens of each document
  (``tokenizer(..., add_special_tokens=False, truncation=True, max_length=512)``), the
  appended EOS never counted; documents left with no token are dropped from the sample
  (the script dropped empty texts). The script also cut each text at 10,000 characters
  before tokenizing, which binds before 512 tokens only past ~19.5 characters a token;
* **a store's distribution** pools the tokens of its whole sample:
  ``p = sum_{d in sample} counts(d[:512]) / total``;
* **a mixture** pools whole sampled documents in the numbers the script's
  ``create_mixed_dataset`` chose. With ``n_i`` the size of part ``i``'s sample, the
  *anchor* ``a`` (the specialty data) keeps its whole sample and every other part ``i``
  with ``w_i > 0`` contributes the first ``k_i`` documents of its sample (a uniform
  subset, as the script's ``random.sample`` of the C4 sample was)::

      k_a = n_a        k_i = min(n_i, floor(n_a * w_i / w_a))        q = sum_i counts(first k_i of part i) / total

  The *base* is the part that plays C4's role: ``base`` when the mixture names it, else
  its first part (``"c4:0.8,code:0.2"``); the anchor is the first part with a positive
  weight that is not the base. For two parts this is the script's rule line for line;
  for more it is our generalisation. Because ``floor(1000 * 0.8 / 0.2) = 4000`` is capped
  at C4's 1,000 sampled documents, every mixture the paper measured (5-20% specialty
  data) is about **1:1 by documents**, not 80:20 by tokens: with all ``k_i = n_i`` the
  pooled distribution is ``q = sum_i n_i L_i p_i / sum_i n_i L_i`` (``L_i`` the mean
  counted tokens of part ``i``'s sampled documents). The C4 documents of a mixture come
  from C4's own sample, as in the script.

The paper protocol's counts are never cached: they are cheap (at most 512,000 tokens a
store), and a store keeps one cache file, which should hold the expensive full count.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numba
import numpy as np
from numba import njit, prange
from tqdm.auto import tqdm

from mixkit import atomic
from mixkit.errors import MixkitError
from mixkit.mixture import Mixture, is_mixture_expr
from mixkit.prefetch import prefetch
from mixkit.store import TokenStore, check_same_tokenizer

CACHE_FORMAT = "mixkit-counts"
CACHE_VERSION = 1
BLOCK_TOKENS = 1 << 30  # tokens per kernel call (the progress bar's step, ~0.2 s at 5 G tok/s; fewer calls, fewer waits for the slower thread); a batch holds < 2 * 2^30 < 2^32
LINE_WORDS = 8  # uint64 words per 64-byte cache line: the four-token kernel's step
PREFETCH_WORDS = 2048  # how far ahead it prefetches, in words: 16 KiB (8-16 KiB measured best on 2 cores)
MIX_BY = ("tokens", "docs")  # what a mixture weight is a share of; the first is the default
PROTOCOLS = ("all", "paper")  # what is counted and how mixtures are formed; the first is the default
PAPER_DOCS = 1_000  # documents sampled per store under the paper protocol
PAPER_TOKENS_PER_DOC = 512  # tokens counted from the start of each sampled document


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


@njit(inline="always", cache=True)
def _add_four(row, w):  # pragma: no cover - compiled
    """Count the four little-endian ``uint16`` tokens packed in the ``uint64`` ``w``."""
    row[w & np.uint64(0xFFFF)] += 1
    row[(w >> np.uint64(16)) & np.uint64(0xFFFF)] += 1
    row[(w >> np.uint64(32)) & np.uint64(0xFFFF)] += 1
    row[w >> np.uint64(48)] += 1


@njit(parallel=True, cache=True)
def _count_ranges_quad(tokens, words, starts, ends, group_bounds, partials):  # pragma: no cover - compiled
    """``_count_ranges`` for little-endian ``uint16`` tokens read four at a time.

    ``words`` is the same memory as ``tokens`` seen as ``uint64`` (``words[j]`` holds
    tokens ``4j .. 4j + 3``, lowest first). Four things make it run at the speed of a
    plain read (benchmarks/README.md: the first three 1.4-1.5x the two-row kernel it
    replaced, the fourth a further 1.1-1.2x):

    * one histogram row per thread (256 KiB of ``uint32`` for 65,536 bins) rather than
      two, so the row stays in the core's L2 cache next to the input streaming through;
    * a 64-byte line (8 words, 32 tokens) per step, unrolled: one load per four tokens
      and no loop bookkeeping between the increments;
    * a non-temporal prefetch ``PREFETCH_WORDS`` ahead each line (``mixkit.prefetch``):
      without it the increments leave too few reads of the input in flight;
    * unsigned word indices: Numba gives a signed index a negative-index fix-up (a
      compare, a conditional move and an address computation) on every load.

    The tokens of a range before its first and after its last whole word are counted
    one at a time.
    """
    nwords = np.uint64(words.size)
    step = np.uint64(LINE_WORDS)
    ahead = np.uint64(PREFETCH_WORDS)
    for g in prange(group_bounds.size - 1):
        row = partials[2 * g]
        for r in range(group_bounds[g], group_bounds[g + 1]):
            s = starts[r]
            e = ends[r]
            while s < e and s & 3:
                row[tokens[s]] += 1
                s += 1
            while e > s and e & 3:
                e -= 1
                row[tokens[e]] += 1
            j = np.uint64(s >> 2)
            last = np.uint64(e >> 2)
            while j + step <= last:
                if j + ahead < nwords:
                    prefetch(words, j + ahead)
                w0 = words[j]
                w1 = words[j + np.uint64(1)]
                w2 = words[j + np.uint64(2)]
                w3 = words[j + np.uint64(3)]
                w4 = words[j + np.uint64(4)]
                w5 = words[j + np.uint64(5)]
                w6 = words[j + np.uint64(6)]
                w7 = words[j + np.uint64(7)]
                _add_four(row, w0)
                _add_four(row, w1)
                _add_four(row, w2)
                _add_four(row, w3)
                _add_four(row, w4)
                _add_four(row, w5)
                _add_four(row, w6)
                _add_four(row, w7)
                j += step
            while j < last:
                _add_four(row, words[j])
                j += np.uint64(1)


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
    words = None if checked else _quad_view(tokens)
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


def _quad_view(tokens: np.ndarray) -> np.ndarray | None:
    """``tokens`` seen as ``uint64`` quadruples when that is possible (contiguous little-endian uint16, 8-byte aligned)."""
    if (
        tokens.dtype == np.uint16
        and tokens.dtype.byteorder in "=<|"
        and sys.byteorder == "little"
        and tokens.flags.c_contiguous
        and tokens.ctypes.data % 8 == 0
        and tokens.size >= 4
    ):
        return tokens[: tokens.size // 4 * 4].view(np.uint64)
    return None


def _run(tokens, starts, ends, groups, partials, bad, checked: bool, words=None) -> None:
    if checked:
        _count_ranges_checked(tokens, starts, ends, groups, partials, bad)
    elif words is not None:
        _count_ranges_quad(tokens, words, starts, ends, groups, partials)
    else:
        _count_ranges(tokens, starts, ends, groups, partials)


# -- options and the store-level count ------------------------------------------------------------


@dataclass(frozen=True)
class CountOptions:
    """What to count. ``docs=None`` counts every document; ``seed`` only matters with ``docs``.

    ``protocol="paper"`` fixes the rest (module docstring): ``docs`` and
    ``max_tokens_per_doc`` become ``PAPER_DOCS`` and ``PAPER_TOKENS_PER_DOC`` (giving
    other values is an error) and the EOS is not counted; ``seed`` seeds the sample.
    """

    docs: int | None = None
    seed: int = 0
    max_tokens_per_doc: int | None = None
    count_eos: bool = False
    protocol: str = "all"

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise MixkitError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {self.protocol!r}")
        if self.docs is not None and (not isinstance(self.docs, int) or self.docs <= 0):
            raise MixkitError(f"docs must be a positive number of documents, got {self.docs!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise MixkitError(f"seed must be a non-negative integer, got {self.seed!r}")
        if self.max_tokens_per_doc is not None and (
            not isinstance(self.max_tokens_per_doc, int) or self.max_tokens_per_doc <= 0
        ):
            raise MixkitError(f"max_tokens_per_doc must be a positive integer, got {self.max_tokens_per_doc!r}")
        if self.protocol == "paper":
            fixed = {"docs": PAPER_DOCS, "max_tokens_per_doc": PAPER_TOKENS_PER_DOC}
            for name, value in fixed.items():
                given = getattr(self, name)
                if given is not None and given != value:
                    raise MixkitError(
                        f"protocol 'paper' counts {PAPER_DOCS:,} documents of {PAPER_TOKENS_PER_DOC} tokens each; "
                        f"{name}={given} contradicts it (use protocol 'all' to choose)"
                    )
                object.__setattr__(self, name, value)
            if self.count_eos:
                raise MixkitError("protocol 'paper' does not count the EOS token; count_eos=True contradicts it")

    def key(self) -> dict[str, Any]:
        """Canonical form recorded in the cache (the seed is dropped when nothing is sampled;
        the protocol only when it is ``all``, so caches written before protocols stay valid)."""
        d = asdict(self)
        if self.docs is None:
            d["seed"] = None
        if self.protocol == "all":
            del d["protocol"]
        return d


def resolve_options(
    options: CountOptions | None = None, *, protocol: str | None = None, seed: int | None = None
) -> CountOptions:
    """``options``, or ``CountOptions(protocol=protocol or "all", seed=seed or 0)`` without them.

    ``protocol`` and ``seed`` given beside ``options`` must agree with it: two answers to
    one question are refused rather than one silently ignored.
    """
    if options is None:
        return CountOptions(protocol=protocol or PROTOCOLS[0], seed=0 if seed is None else seed)
    if protocol is not None and protocol != options.protocol:
        raise MixkitError(f"protocol={protocol!r} disagrees with the count options' protocol {options.protocol!r}")
    if seed is not None and seed != options.seed:
        raise MixkitError(f"seed={seed} disagrees with the count options' seed {options.seed}")
    return options


def open_store(store: TokenStore | str | os.PathLike, data_dir: str | os.PathLike | None = None) -> TokenStore:
    return store if isinstance(store, TokenStore) else TokenStore.open(store, data_dir)


def _draw(num_docs: int, size: int, seed: int) -> np.ndarray:
    """``size`` distinct document ids in the order ``default_rng(seed)`` draws them."""
    return np.random.default_rng(seed).choice(num_docs, size=size, replace=False).astype(np.int64)


def selected_docs(store: TokenStore, options: CountOptions) -> np.ndarray | None:
    """Sorted indices of the sampled documents, or ``None`` for all of them."""
    if options.docs is None or options.docs >= store.num_docs:
        return None
    return np.sort(_draw(store.num_docs, options.docs, options.seed))


def documents_counted(store: TokenStore, options: CountOptions) -> int:
    sel = selected_docs(store, options)
    return store.num_docs if sel is None else int(sel.size)


def _eos_to_drop(store: TokenStore, options: CountOptions) -> int | None:
    eos = store.manifest.get("eos") or {}
    if options.count_eos or not eos.get("appended") or eos.get("id") is None:
        return None
    return int(eos["id"])


def document_ranges(store: TokenStore) -> tuple[np.ndarray, np.ndarray]:
    """int64 ``(offsets, lengths)`` of every document, refused in one line when the index points
    outside the ``.bin`` (a damaged ``.idx``): counting would index past the end of the tokens."""
    offsets = np.asarray(store.doc_offsets, dtype=np.int64)
    lengths = np.asarray(store.doc_lengths, dtype=np.int64)
    bad = (offsets < 0) | (lengths < 0) | (offsets > store.num_tokens - lengths)
    if bad.any():
        i = int(np.argmax(bad))
        raise MixkitError(f"{store.files.idx}: damaged index: document {i} spans tokens [{offsets[i]}, "
                          f"{offsets[i] + lengths[i]}) but {store.files.bin.name} holds {store.num_tokens} "
                          f"(re-tokenize with --overwrite)")
    return offsets, lengths


def counted_ranges(
    store: TokenStore, doc_ids: np.ndarray | None, options: CountOptions
) -> tuple[np.ndarray, np.ndarray]:
    """``(starts, ends)``: the token range counted of each document in ``doc_ids`` (``None``: all), in that order.

    ``ends`` excludes the appended EOS (unless ``options.count_eos``) and stops
    ``options.max_tokens_per_doc`` tokens after ``starts``.
    """
    offsets, lengths = document_ranges(store)
    if doc_ids is not None:
        offsets, lengths = offsets[doc_ids], lengths[doc_ids]
    starts = offsets.copy()
    ends = starts + lengths
    eos = _eos_to_drop(store, options)
    if eos is not None:
        nonempty = lengths > 0
        ends[nonempty] -= np.asarray(store.tokens)[ends[nonempty] - 1] == eos
    if options.max_tokens_per_doc is not None:
        ends = np.minimum(ends, starts + options.max_tokens_per_doc)
    return starts, ends


def compute_counts(store: TokenStore, options: CountOptions, *, progress: bool | None = None) -> np.ndarray:
    """Count without the cache (see the module docstring for what is counted)."""
    if store.num_tokens == 0:
        raise MixkitError(f"store '{store.name}' is empty: there are no tokens to count")
    vocab = store.vocab_size
    tokens = np.asarray(store.tokens)
    sel = selected_docs(store, options)
    desc = f"count {store.name}"
    if sel is None and options.max_tokens_per_doc is None:
        counts = histogram(tokens, vocab, progress=progress, desc=desc)
        eos = _eos_to_drop(store, options)
        if eos is not None:
            offsets, lengths = document_ranges(store)
            last = (offsets + lengths - 1)[lengths > 0]
            counts[eos] -= int(np.count_nonzero(tokens[last] == eos))
        return counts
    starts, ends = counted_ranges(store, sel, options)
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
    protocol: str = "all",
    cache: bool = True,
    data_dir: str | os.PathLike | None = None,
    progress: bool | None = None,
) -> np.ndarray:
    """int64 vector of length ``store.vocab_size``: how often each token id occurs.

    ``store`` is a ``TokenStore``, a store name (looked up in ``data_dir``) or a path.
    With ``cache`` the result is read from / written to ``NAME.counts.{npy,json}``.
    ``protocol="paper"`` counts the paper's sample of the store (``seed`` seeds it).
    """
    opened = open_store(store, data_dir)
    options = CountOptions(
        docs=docs, seed=seed, max_tokens_per_doc=max_tokens_per_doc, count_eos=count_eos, protocol=protocol
    )
    return counts_with(opened, options, cache=cache, progress=progress)


def counts_with(
    store: TokenStore, options: CountOptions, *, cache: bool = True, progress: bool | None = None
) -> np.ndarray:
    """``counts`` for an open store and a ready ``CountOptions``."""
    return count_store(store, options, cache=cache, progress=progress).counts


@dataclass(frozen=True)
class StoreCount:
    """What ``count_store`` returned and how: ``how`` is ``"cached"``, ``"counted"``,
    ``"counted, cache not writable"``, ``"not cached"`` or ``"paper sample, not cached"``;
    ``cache_file`` is the ``NAME.counts.npy`` read or written (None without the cache)."""

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
    and the cache written; ``cache=False`` neither reads nor writes it. The paper protocol's
    small sample is always counted afresh and never cached (module docstring)."""
    if store.num_tokens == 0:
        raise MixkitError(f"store '{store.name}' is empty: there are no tokens to count")
    if options.protocol == "paper":
        return StoreCount(compute_counts(store, options, progress=progress), "paper sample, not cached", None)
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
    ``parts`` the ``(store, weight)`` pairs it was made from; ``options`` what was
    counted (its ``protocol`` and ``seed`` say how); ``documents`` how many documents of
    each part were counted (0 for a zero weight; under the paper protocol, the ``k_i``
    of the module docstring).
    """

    label: str
    probs: np.ndarray
    parts: list[tuple[TokenStore, float]]
    options: CountOptions = field(default_factory=CountOptions)
    documents: tuple[int, ...] = ()

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


def _check_weights(parts: list[tuple[TokenStore, float]]) -> np.ndarray:
    if not parts:
        raise MixkitError("a mixture needs at least one store")
    check_same_tokenizer(s for s, _ in parts)
    weights = np.array([w for _, w in parts], dtype=np.float64)
    if not np.all(np.isfinite(weights)) or (weights < 0).any():
        raise MixkitError("mixture weights must be finite and non-negative")
    if weights.sum() <= 0:
        raise MixkitError("mixture weights are all zero")
    return weights


def paper_sample(store: TokenStore, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The paper protocol's sample of ``store``: ``(starts, ends)`` of the counted tokens, in the order drawn.

    ``min(PAPER_DOCS, num_docs)`` documents from ``default_rng(seed)`` without
    replacement, each cut to its first ``PAPER_TOKENS_PER_DOC`` tokens without the EOS;
    documents with nothing left are dropped. The same set as ``CountOptions(protocol=
    "paper", seed=seed)`` counts; the order decides which ``k`` documents a mixture takes.
    """
    options = CountOptions(protocol="paper", seed=seed)
    order = _draw(store.num_docs, min(PAPER_DOCS, store.num_docs), seed)
    starts, ends = counted_ranges(store, order, options)
    keep = ends > starts
    return starts[keep], ends[keep]


def paper_anchor(names: list[str], weights: list[float], base: str | None = None) -> int:
    """Index of the part whose whole sample a paper-protocol mixture keeps (module docstring).

    The base is ``base`` when it is one of ``names``, else the first part; the anchor is
    the first part with a positive weight that is not the base (the base itself when no
    other part has weight).
    """
    base_index = names.index(base) if base is not None and base in names else 0
    for i, w in enumerate(weights):
        if w > 0 and i != base_index:
            return i
    return base_index


def paper_document_counts(sample_sizes: list[int], weights: list[float], anchor: int) -> list[int]:
    """``k_i``: documents of each part in a paper-protocol mixture.

    ``k_anchor = n_anchor`` and ``k_i = min(n_i, floor(n_anchor * w_i / w_anchor))``, as
    the script's ``create_mixed_dataset`` computed ``int(total_samples * c4_proportion /
    specialty_proportion)`` and capped it at the C4 sample (same order of operations, so
    the same floating-point floor); ``k_i = 0`` for a zero weight.
    """
    n_a, w_a = sample_sizes[anchor], weights[anchor]
    if w_a <= 0:
        raise MixkitError("the anchor of a paper-protocol mixture needs a positive weight")
    out = []
    for i, (n, w) in enumerate(zip(sample_sizes, weights)):
        if i == anchor:
            out.append(int(n))
        elif w <= 0:
            out.append(0)
        else:
            out.append(min(int(n), int(n_a * w / w_a)))
    return out


def paper_mixture_counts(
    parts: list[tuple[TokenStore, float]],
    *,
    seed: int = 0,
    base: str | None = None,
    progress: bool | None = None,
) -> tuple[np.ndarray, list[int]]:
    """Pooled int64 counts of a mixture under the paper protocol, and the documents ``k_i`` of each part.

    ``base`` is the store name of the part that plays C4's role; without it, or when
    the mixture has no such part, the first part.
    """
    weights = _check_weights(parts)
    samples = [paper_sample(store, seed) if w > 0 else None for store, w in parts]
    names = [store.name for store, _ in parts]
    anchor = paper_anchor(names, list(weights), base)
    sizes = [0 if s is None else int(s[0].size) for s in samples]
    if sizes[anchor] == 0:
        raise MixkitError(f"store '{names[anchor]}': no tokens left to count with these options")
    k = paper_document_counts(sizes, list(weights), anchor)
    total = np.zeros(parts[0][0].vocab_size, dtype=np.int64)
    for (store, _), sample, k_i in zip(parts, samples, k):
        if k_i:
            starts, ends = sample
            total += histogram(np.asarray(store.tokens), store.vocab_size, starts[:k_i], ends[:k_i],
                               progress=progress, desc=f"count {store.name}")
    return total, k


def mixture_distribution(
    parts: list[tuple[TokenStore, float]],
    *,
    mix_by: str | None = None,
    options: CountOptions | None = None,
    base: str | None = None,
    cache: bool = True,
    progress: bool | None = None,
) -> np.ndarray:
    """The mixture of the parts as a probability vector (formulas in the module docstring).

    Under ``options.protocol == "all"``: the weighted mixture of the parts' normalized
    counts, by ``mix_by`` (default ``"tokens"``). Under ``"paper"``: the script's pooled
    documents (``paper_mixture_counts``); ``mix_by`` does not apply and is refused.
    """
    return _mixture(parts, mix_by=mix_by, options=options, base=base, cache=cache, progress=progress)[0]


def _mixture(parts, *, mix_by, options, base, cache, progress) -> tuple[np.ndarray, list[int]]:
    options = options or CountOptions()
    if options.protocol == "paper":
        if mix_by is not None:
            raise MixkitError("protocol 'paper' mixes by the script's document counts; mix_by does not apply")
        pooled, k = paper_mixture_counts(parts, seed=options.seed, base=base, progress=progress)
        return pooled / pooled.sum(), k
    mix_by = mix_by or MIX_BY[0]
    if mix_by not in MIX_BY:
        raise MixkitError(f"mix_by must be one of {', '.join(MIX_BY)}, got '{mix_by}'")
    weights = _check_weights(parts)
    vocab = parts[0][0].vocab_size
    total = np.zeros(vocab, dtype=np.float64)
    mass = []
    dists = []
    documents = []
    for (store, _), w in zip(parts, weights):
        if w == 0:
            mass.append(0.0)
            dists.append(None)
            documents.append(0)
            continue
        c = counts_with(store, options, cache=cache, progress=progress)
        n = int(c.sum())
        if n == 0:
            raise MixkitError(f"store '{store.name}': no tokens left to count with these options")
        documents.append(documents_counted(store, options))
        scale = w if mix_by == "tokens" else w * n / documents[-1]
        mass.append(scale)
        dists.append(c / n)
    mass_arr = np.asarray(mass)
    mass_arr /= mass_arr.sum()
    for m, p in zip(mass_arr, dists):
        if p is not None:
            total += m * p
    return total, documents


def distribution(
    spec: str | Mixture,
    *,
    data_dir: str | os.PathLike | None = None,
    protocol: str | None = None,
    seed: int | None = None,
    mix_by: str | None = None,
    options: CountOptions | None = None,
    base: str | None = None,
    cache: bool = True,
    progress: bool | None = None,
) -> Distribution:
    """Resolve a store name, store path or mixture expression to its unigram distribution.

    ``protocol`` (``"all"``, the default, or ``"paper"``) and ``seed`` (default 0) say
    what is counted when ``options`` is not given (``resolve_options``); ``mix_by``
    (default ``"tokens"``) applies under ``"all"`` only; ``base`` names the pretraining
    store of a paper-protocol mixture (default: its first part).
    """
    return distributions([spec], data_dir=data_dir, protocol=protocol, seed=seed, mix_by=mix_by, options=options,
                         base=base, cache=cache, progress=progress)[0]


def distributions(
    specs: list[str | Mixture],
    *,
    data_dir: str | os.PathLike | None = None,
    protocol: str | None = None,
    seed: int | None = None,
    mix_by: str | None = None,
    options: CountOptions | None = None,
    base: str | None = None,
    cache: bool = True,
    progress: bool | None = None,
) -> list[Distribution]:
    """Resolve several specs (arguments as ``distribution``), refusing before any counting if their tokenizers differ."""
    options = resolve_options(options, protocol=protocol, seed=seed)
    opened = [open_spec(s, data_dir) for s in specs]
    check_same_tokenizer([s for parts in opened for s, _ in parts])
    out = []
    for spec, parts in zip(specs, opened):
        probs, documents = _mixture(parts, mix_by=mix_by, options=options, base=base, cache=cache, progress=progress)
        out.append(Distribution(label=str(spec), probs=probs, parts=parts, options=options, documents=tuple(documents)))
    return out
