"""Hold out evaluation documents at tokenize time: ``--holdout-docs N`` writes ``NAME-holdout``.

Forgetting is measured as the loss on pretraining-corpus documents the model never
saw. Splitting at tokenize time makes that guarantee structural: the held-out
documents are simply not in ``NAME``, so no mix built from it can contain them, and
every run evaluates on the same ``NAME-holdout``. The N documents are a seeded
uniform sample (``numpy.random.default_rng(seed)``), kept in corpus order.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from mixkit.errors import MixkitError
from mixkit.store import StoreWriter


def holdout_indices(num_docs: int, n: int, seed: int) -> np.ndarray:
    """Sorted indices of the ``n`` held-out documents among ``num_docs``."""
    if n >= num_docs:
        raise MixkitError(f"--holdout-docs {n} leaves no training documents (the sources have {num_docs})")
    return np.sort(np.random.default_rng(seed).choice(num_docs, size=n, replace=False))


def finish_with_holdout(writer: StoreWriter, manifest: dict[str, Any], n: int, seed: int, overwrite: bool) -> dict[str, Any]:
    """Split the finished partial output of ``writer`` into ``NAME`` and ``NAME-holdout``."""
    writer.flush()
    writer.close()
    # The split writes NAME's own partial files, so move the full output aside first.
    full_bin = writer.partial_path.with_name(writer.prefix.name + ".full.bin.partial")
    full_lengths = writer.lengths_path.with_name(writer.prefix.name + ".full.lengths.partial")
    os.replace(writer.partial_path, full_bin)
    os.replace(writer.lengths_path, full_lengths)
    lengths = np.fromfile(full_lengths, dtype="<i4").astype(np.int64)
    tokens = np.memmap(full_bin, dtype=writer.dtype, mode="r") if lengths.sum() else np.zeros(0, writer.dtype)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    held = holdout_indices(lengths.size, n, seed)
    is_held = np.zeros(lengths.size, dtype=bool)
    is_held[held] = True
    name = writer.prefix.name
    train = StoreWriter(writer.prefix, writer.dtype)
    hold = StoreWriter(writer.prefix.with_name(name + "-holdout"), writer.dtype)
    try:
        chunk = 4096
        for start in range(0, lengths.size, chunk):
            stop = min(lengths.size, start + chunk)
            docs = [tokens[offsets[i] : offsets[i + 1]] for i in range(start, stop)]
            train.add_many([d for d, h in zip(docs, is_held[start:stop]) if not h])
            hold.add_many([d for d, h in zip(docs, is_held[start:stop]) if h])
    except BaseException:
        train.abort()
        hold.abort()
        raise
    del tokens
    split = {"holdout": {"documents": int(n), "seed": int(seed), "store": name + "-holdout", "of": name}}
    hold_manifest = hold.finish({**manifest, **split, "role": "holdout"}, overwrite=overwrite)
    result = train.finish({**manifest, **split, "role": "train", "holdout_fingerprint": hold_manifest["fingerprint"]}, overwrite=overwrite)
    full_bin.unlink(missing_ok=True)
    full_lengths.unlink(missing_ok=True)
    return result
