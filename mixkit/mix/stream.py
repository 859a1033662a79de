"""``MixStream``: the batches of a built mix, readable at any step in O(1).

Global sample ``n`` of a mix is dataset ``k = dataset_index[n]``'s stream sample
``m = dataset_sample_index[n]``; with ``S`` samples per block of ``k``'s index arrays (an
epoch, or Megatron's whole index: ``mixkit.mix.format``), that is block ``e = m // S``,
sample ``j = shuffle_idx[e*S + m % S]`` of the block, whose ``L + 1`` tokens start at
``sample_idx[e*(S+1) + j]`` and end (inclusive) at the next row's position: ``(position in
the block's doc_idx, offset in that document)``.

Step ``t`` is global samples ``[t*B, (t+1)*B)`` (``B`` the global batch); rank ``r`` of
``W`` takes rows ``[r*B/W, (r+1)*B/W)`` of it. ``batch`` reads those rows of the two
global arrays, a few rows of each dataset's indices, and the tokens: nothing else, so its
cost does not depend on the step and resuming needs only the step number.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numba
import numpy as np
from numba import njit

from mixkit.errors import MixkitError
from mixkit.mix import format as mixfmt
from mixkit.store import TokenStore, read_index, sha256_file

_INT64 = np.dtype(np.int64)


@njit(cache=True, inline="always")
def _locate(sample_idx, shuffle_idx, per_epoch, n_docs, m, loc):
    """``loc[:] = (base, d0, o0, d1, o1)`` of stream sample ``m``: its tokens run from offset
    ``o0`` of the document at position ``d0`` of its epoch's ``doc_idx[base:]`` to offset
    ``o1`` (inclusive) of the one at ``d1``."""
    e = m // per_epoch
    r = e * (per_epoch + 1) + np.int64(shuffle_idx[m])  # every epoch's shuffle back to back: [e*S + m % S] is [m]
    loc[0] = e * n_docs
    loc[1] = sample_idx[r, 0]
    loc[2] = sample_idx[r, 1]
    loc[3] = sample_idx[r + 1, 0]
    loc[4] = sample_idx[r + 1, 1]


@njit(cache=True, inline="always")
def _copy_docs(tokens, lengths, pointers, itemsize, doc_idx, loc, dst):
    """Write the tokens ``_locate`` found into the 1-D int64 row ``dst``."""
    base, d0, o0, d1, o1 = loc[0], loc[1], loc[2], loc[3], loc[4]
    col = 0
    for d in range(d0, d1 + 1):
        doc = doc_idx[base + d]
        start = o0 if d == d0 else 0
        stop = o1 + 1 if d == d1 else np.int64(lengths[doc])
        first = pointers[doc] // itemsize + start
        n = stop - start
        # Index views from 0 with a range() counter: Numba then knows the index is
        # non-negative, skips the wraparound check, and vectorises the widening copy.
        src = tokens[first : first + n]
        seg = dst[col : col + n]
        for t in range(n):
            seg[t] = src[t]
        col += n


@njit(cache=True)
def _gather(tokens, lengths, pointers, itemsize, doc_idx, sample_idx, shuffle_idx, per_epoch, n_docs, stream_ids, rows, out):
    """Copy stream samples ``stream_ids`` of one dataset into ``out[rows]``."""
    loc = np.empty(5, dtype=np.int64)
    for i in range(stream_ids.size):
        _locate(sample_idx, shuffle_idx, per_epoch, n_docs, np.int64(stream_ids[i]), loc)
        _copy_docs(tokens, lengths, pointers, itemsize, doc_idx, loc, out[rows[i]])


@njit(cache=True)
def _fetch(ds, sn, lo, tokens, lengths, pointers, doc_idx, sample_idx, shuffle_idx, params, out):
    """Global samples ``[lo, lo + len(out))`` into ``out`` when every dataset's arrays share dtypes.

    The per-dataset arrays come as tuples indexed by dataset id and ``params[k]`` is
    ``(itemsize, samples per epoch, documents)``, so a call takes few arguments (Numba's
    call cost grows with their number, and for an 8-row batch it is a third of the time).
    Two passes: first each row's chain of dependent lookups (shuffle, then sample_idx),
    which is independent across rows so the CPU overlaps their cache misses; then the
    token copies.
    """
    n = out.shape[0]
    loc = np.empty((n, 5), dtype=np.int64)
    for i in range(n):
        k = ds[lo + i]
        _locate(sample_idx[k], shuffle_idx[k], params[k, 1], params[k, 2], np.int64(sn[lo + i]), loc[i])
    for i in range(n):
        k = ds[lo + i]
        _copy_docs(tokens[k], lengths[k], pointers[k], params[k, 0], doc_idx[k], loc[i], out[i])


class MixStream:
    """A built mix, memory-mapped. See the module docstring for how a row is found."""

    def __init__(self, path: Path, manifest: dict[str, Any], stores: list[TokenStore]):
        self.path = path
        self.manifest = manifest
        self.stores = stores
        self.num_steps: int = int(manifest["num_steps"])
        self.seq_len: int = int(manifest["seq_len"])
        self.global_batch: int = int(manifest["global_batch"])
        self.seed: int = int(manifest["seed"])
        self.source_names: list[str] = list(manifest["source_names"])
        self.vocab_size: int = int(manifest["vocab_size"])
        self.tokenizer_sha256: str = manifest["tokenizer_sha256"]
        self.eos_id: int | None = manifest["eos_id"]
        self._ds = mixfmt.load_array(path / mixfmt.DATASET_INDEX)
        self._sn = mixfmt.load_array(path / mixfmt.DATASET_SAMPLE_INDEX)
        self._datasets = []
        for info, store in zip(manifest["datasets"], stores):
            files = info["files"]
            index = read_index(store.files.idx)
            self._datasets.append(
                (
                    np.asarray(store.tokens),
                    np.asarray(index.lengths),
                    np.asarray(index.pointers),
                    store.dtype.itemsize,
                    mixfmt.load_array(path / files["doc_idx"]),
                    mixfmt.load_array(path / files["sample_idx"]),
                    mixfmt.load_array(path / files["shuffle_idx"]),
                    # One block of the dataset's index arrays (mixkit.mix.format); mixes built
                    # before blocks were recorded have one block per epoch.
                    int(info.get("block_samples", info["samples_per_epoch"])),
                    int(info.get("block_documents", info["documents"])),
                )
            )
        self._packed = _pack(self._datasets)
        self._fetch_entry = None  # bound on the first read, so opening a mix for its metadata compiles nothing

    @classmethod
    def open(cls, name_or_path: str | os.PathLike, data_dir: str | os.PathLike | None = None) -> MixStream:
        """Open mix ``NAME`` (``DATA_DIR/mixes/NAME``) or the mix directory at a path.

        Input stores are looked up by name in ``data_dir``, else in the data directory
        the mix lives in (``.../DATA_DIR/mixes/NAME``), else the default data directory;
        each must still have the fingerprint the mix was built from.
        """
        path = mixfmt.mix_dir(name_or_path, data_dir)
        manifest = mixfmt.read_manifest(path)
        store_dir = mixfmt.store_dir_of(path, data_dir)
        stores = []
        for info in manifest["datasets"]:
            store = TokenStore.open(info["name"], store_dir)
            if store.fingerprint != info["fingerprint"]:
                raise MixkitError(
                    f"mix '{manifest['name']}': input store '{info['name']}' changed since the mix was built "
                    f"(fingerprint {store.fingerprint[:12]}, mix expects {info['fingerprint'][:12]}); rebuild the mix"
                )
            stores.append(store)
        return cls(path, manifest, stores)

    # -- metadata ----------------------------------------------------------------------------------

    @property
    def fingerprint(self) -> str:
        return self.manifest["fingerprint"]

    @property
    def num_samples(self) -> int:
        return self.num_steps * self.global_batch

    def tokens_seen(self, step: int) -> int:
        """Tokens trained on before ``step``: ``step * global_batch * seq_len``."""
        return int(step) * self.global_batch * self.seq_len

    # -- reading -----------------------------------------------------------------------------------

    def _rows(self, step: int, rank: int, world_size: int) -> tuple[int, int]:
        if not 0 <= step < self.num_steps:
            raise MixkitError(f"step {step} is outside the mix's {self.num_steps} steps")
        if world_size < 1 or self.global_batch % world_size:
            raise MixkitError(f"global batch {self.global_batch} is not divisible by world size {world_size}")
        if not 0 <= rank < world_size:
            raise MixkitError(f"rank {rank} is outside world size {world_size}")
        per = self.global_batch // world_size
        lo = step * self.global_batch + rank * per
        return lo, lo + per

    def sources(self, step: int, rank: int = 0, world_size: int = 1) -> np.ndarray:
        """Index into ``source_names`` of the dataset each row of ``batch(step, rank, world_size)`` came from."""
        lo, hi = self._rows(step, rank, world_size)
        return np.array(self._ds[lo:hi], dtype=np.int16)

    def samples(self, lo: int, hi: int, out: np.ndarray | None = None) -> np.ndarray:
        """Global samples ``[lo, hi)`` as an int64 ``(hi - lo, seq_len + 1)`` array (into ``out`` if given)."""
        if not 0 <= lo <= hi <= self.num_samples:
            raise MixkitError(f"samples [{lo}, {hi}) are outside the mix's {self.num_samples}")
        shape = (hi - lo, self.seq_len + 1)
        if out is None:
            out = np.empty(shape, dtype=np.int64)
        else:
            self._check_out(out, hi - lo)
        if self._packed is not None:
            (self._fetch_entry or self._bind_fetch())(self._ds, self._sn, lo, *self._packed, out)
            return out
        ds = self._ds[lo:hi]
        sn = self._sn[lo:hi]
        for k in np.unique(ds):
            rows = np.flatnonzero(ds == k)
            _gather(*self._datasets[int(k)], np.ascontiguousarray(sn[rows]), rows, out)
        return out

    def batch(self, step: int, rank: int = 0, world_size: int = 1, out: np.ndarray | None = None) -> np.ndarray:
        """int64 ``(global_batch // world_size, seq_len + 1)``: inputs ``[:, :-1]``, targets ``[:, 1:]``.

        ``out`` (optional) is a preallocated array of that shape to fill and return, which
        spares a training loop a fresh allocation (and its page faults) every step.
        """
        gb = self.global_batch
        if not (0 <= step < self.num_steps and 0 <= rank < world_size and gb % world_size == 0):
            self._rows(step, rank, world_size)  # raises the precise error
        if self._packed is None:
            return self.samples(*self._rows(step, rank, world_size), out)
        # The common path, with as little Python as possible: at 8 rows it is a third of the time.
        per = gb // world_size
        if out is None:
            out = np.empty((per, self.seq_len + 1), dtype=np.int64)
        elif out.strides != (8 * (self.seq_len + 1), 8) or out.shape != (per, self.seq_len + 1) or out.dtype is not _INT64:
            self._check_out(out, per)
        (self._fetch_entry or self._bind_fetch())(self._ds, self._sn, step * gb + rank * per, *self._packed, out)
        return out

    def _bind_fetch(self) -> Any:
        no_rows = np.empty((0, self.seq_len + 1), dtype=np.int64)
        self._fetch_entry = _compiled(_fetch, (self._ds, self._sn, 0, *self._packed, no_rows))
        return self._fetch_entry

    def _check_out(self, out: np.ndarray, rows: int) -> None:
        shape = (rows, self.seq_len + 1)
        if out.shape != shape or out.dtype != np.int64 or not out.flags.c_contiguous:
            raise MixkitError(f"out must be a C-contiguous int64 array of shape {shape}")

    def verify(self) -> None:
        """Recompute the sha256 of every index file and every input store (reads everything)."""
        for fname, sha in self.manifest["files"].items():
            if sha256_file(self.path / fname) != sha:
                raise MixkitError(f"mix '{self.manifest['name']}': {fname} differs from its recorded sha256")
        for store in self.stores:
            store.verify()

    def __repr__(self) -> str:
        return (
            f"MixStream({self.manifest['name']!r}, steps={self.num_steps}, global_batch={self.global_batch}, "
            f"seq_len={self.seq_len}, sources={self.source_names})"
        )


def _pack(datasets: list[tuple]) -> tuple | None:
    """``_fetch``'s per-dataset arguments when every dataset's arrays share dtype and rank, else None."""
    tokens, lengths, pointers, itemsize, doc_idx, sample_idx, shuffle_idx, per_epoch, n_docs = zip(*datasets)
    arrays = (tokens, lengths, pointers, doc_idx, sample_idx, shuffle_idx)
    if any(len({(a.dtype, a.ndim) for a in f}) != 1 for f in arrays):
        return None
    params = np.ascontiguousarray(np.array([itemsize, per_epoch, n_docs], dtype=np.int64).T)
    return (*arrays, params)


def _compiled(dispatcher: Any, args: tuple) -> Any:
    """The machine-code entry of ``dispatcher`` for the types of ``args``, else ``dispatcher``.

    Calling the entry skips Numba's per-call type dispatch, half of the fixed cost of a
    call with this many array arguments (about 1 of 2 µs, on an 8-row batch of 5 µs).
    Safe because a stream always calls with arguments of exactly these types: its own
    arrays, an int and a checked int64 C-contiguous ``out``.
    """
    dispatcher(*args)  # compile, or load the cached machine code
    overloads = getattr(dispatcher, "overloads", {})
    compiled = overloads.get(tuple(numba.typeof(a) for a in args))
    return getattr(compiled, "entry_point", None) or dispatcher
