"""Hold out evaluation documents at tokenize time: ``--holdout-docs N`` writes ``NAME-holdout``.

Forgetting is measured as the loss on pretraining-corpus documents the model never
saw. Splitting at tokenize time makes that guarantee structural: the held-out
documents are simply not in ``NAME``, so no mix built from it can contain them, and
every run evaluates on the same ``NAME-holdout``. The N documents are a seeded
uniform sample (``numpy.random.default_rng(seed)``), kept in corpus order.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mixkit.errors import MixkitError
from mixkit.store import StoreFiles, StoreWriter


def holdout_indices(num_docs: int, n: int, seed: int) -> np.ndarray:
    """Sorted indices of the ``n`` held-out documents among ``num_docs``."""
    if n >= num_docs:
        raise MixkitError(f"--holdout-docs {n} leaves no training documents (the sources have {num_docs})")
    return np.sort(np.random.default_rng(seed).choice(num_docs, size=n, replace=False))


def finish_with_holdout(writer: StoreWriter, manifest: dict[str, Any], n: int, seed: int, overwrite: bool) -> dict[str, Any]:
    """Split the output of ``writer`` into ``NAME`` and ``NAME-holdout``; return ``NAME``'s manifest."""
    full = writer.detach()
    held = holdout_indices(len(full), n, seed)
    is_held = np.zeros(len(full), dtype=bool)
    is_held[held] = True
    files = StoreFiles(writer.prefix)
    train = StoreWriter(files.prefix, writer.dtype)
    hold = StoreWriter(files.holdout.prefix, writer.dtype)
    try:
        chunk = 4096
        for start in range(0, len(full), chunk):
            stop = min(len(full), start + chunk)
            docs = full.documents(start, stop)
            train.add_many([d for d, h in zip(docs, is_held[start:stop]) if not h])
            hold.add_many([d for d, h in zip(docs, is_held[start:stop]) if h])
    except BaseException:
        train.abort()
        hold.abort()
        raise
    split = {"holdout": {"documents": int(n), "seed": int(seed), "store": files.holdout.name, "of": files.name}}
    hold_manifest = hold.finish({**manifest, **split, "role": "holdout"}, overwrite=overwrite)
    result = train.finish({**manifest, **split, "role": "train", "holdout_fingerprint": hold_manifest["fingerprint"]}, overwrite=overwrite)
    full.delete()
    return result
