"""Slow, obviously-correct constructions of a mix, for checking the fast paths in mixkit.mix."""

from __future__ import annotations

import numpy as np

from mixkit.mix.indices import epoch_seed
from mixkit.store import TokenStore


def reference_blend(weights, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The blending rule as the issue states it, one sample at a time in plain Python floats."""
    counts = [0] * len(weights)
    ds = np.empty(size, dtype=np.int16)
    sn = np.empty(size, dtype=np.int64)
    for n in range(size):
        x = max(float(n), 1.0)
        errors = [float(w) * x - c for w, c in zip(weights, counts)]
        k = errors.index(max(errors))  # first maximum: ties to the lowest k
        ds[n], sn[n] = k, counts[k]
        counts[k] += 1
    return ds, sn


class ReferenceStream:
    """A dataset's sample stream built the long way: shuffle documents, concatenate, cut, shuffle samples."""

    def __init__(self, store: TokenStore, seed: int, seq_len: int):
        self.store, self.seed, self.seq_len = store, seed, seq_len
        self.per_epoch = (store.num_tokens - 1) // seq_len
        self._epochs: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def _epoch(self, e: int) -> tuple[np.ndarray, np.ndarray]:
        if e not in self._epochs:
            rs = np.random.RandomState(epoch_seed(self.seed, self.store.name, e))
            order = np.arange(self.store.num_docs, dtype=np.int32)
            rs.shuffle(order)
            tokens = np.concatenate([np.asarray(self.store[int(d)], dtype=np.int64) for d in order])
            shuffle = np.arange(self.per_epoch, dtype=np.uint32)
            rs.shuffle(shuffle)
            self._epochs[e] = (tokens, shuffle)
        return self._epochs[e]

    def window(self, e: int, j: int) -> np.ndarray:
        """Unshuffled sample ``j`` of epoch ``e``: tokens ``[j*L, j*L + L + 1)``."""
        tokens, _ = self._epoch(e)
        return tokens[j * self.seq_len : j * self.seq_len + self.seq_len + 1]

    def sample(self, m: int) -> np.ndarray:
        e, i = divmod(m, self.per_epoch)
        _, shuffle = self._epoch(e)
        return self.window(e, int(shuffle[i]))


def reference_rows(stores: dict[str, TokenStore], phases, steps: int, global_batch: int, seq_len: int, seed: int):
    """``(sources, samples)`` of every global sample of a mix, from ``phases = [(start_step, {name: w})]``.

    Source names are numbered in order of first appearance with a positive weight.
    """
    names: list[str] = []
    for _, weights in phases:
        for k, w in weights.items():
            if w > 0 and k not in names:
                names.append(k)
    streams = {k: ReferenceStream(stores[k], seed, seq_len) for k in names}
    used = dict.fromkeys(names, 0)
    sources, samples = [], []
    bounds = [p[0] for p in phases] + [steps]
    for (start, weights), end in zip(phases, bounds[1:]):
        active = [k for k in weights if weights[k] > 0]
        w = np.array([weights[k] for k in active], dtype=np.float64)
        w = w / w.sum()
        ds, sn = reference_blend(w, (end - start) * global_batch)
        for d, s in zip(ds, sn):
            name = active[int(d)]
            sources.append(names.index(name))
            samples.append(streams[name].sample(used[name] + int(s)))
        for k in active:
            used[k] += int(np.sum(ds == active.index(k)))
    return names, np.array(sources), np.array(samples)
