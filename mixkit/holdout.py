"""Hold out evaluation documents at tokenize time: ``--holdout-docs N`` writes ``NAME-holdout``.

Forgetting is measured as the loss on pretraining-corpus documents the model never
saw. Splitting at tokenize time makes that guarantee structural: the held-out
documents are simply not in ``NAME``, so no mix built from it can contain them, and
every run evaluates on the same ``NAME-holdout``. The N documents are a seeded
uniform sample (``numpy.random.default_rng(seed)``), kept in corpus order.

Publishing is ordered so that every kill window can be finished by running the command
again: the full output is set aside (``StoreWriter.detach``), the split writes both stores'
partial files, ``NAME-holdout`` is renamed into place, then ``NAME``, and only then is the
set-aside output deleted. The split is a pure function of the full output and the seed, so a
rerun simply splits again; an output that is already in place with exactly the content the
split makes (same fingerprint) was published by the interrupted run and is replaced by the
same bytes, not refused.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mixkit.errors import MixkitError
from mixkit.store import DetachedOutput, StoreFiles, StoreWriter


def holdout_record(files: StoreFiles, n: int, seed: int) -> dict[str, Any]:
    """The ``holdout`` entry both halves' manifests carry: how many documents, drawn with which
    seed, into which store, out of which (what a rerun compares to know the split is the same)."""
    return {"documents": int(n), "seed": int(seed), "store": files.holdout.name, "of": files.name}


def holdout_indices(num_docs: int, n: int, seed: int) -> np.ndarray:
    """Sorted indices of the ``n`` held-out documents among ``num_docs``."""
    check_holdout_count(num_docs, n)
    return np.sort(np.random.default_rng(seed).choice(num_docs, size=n, replace=False))


def check_holdout_count(num_docs: int, n: int) -> None:
    """Refuse a split that leaves no training documents (checked before anything is set aside)."""
    if n >= num_docs:
        raise MixkitError(f"--holdout-docs {n} leaves no training documents (the sources have {num_docs})")


def finish_with_holdout(writer: StoreWriter, manifest: dict[str, Any], n: int, seed: int, overwrite: bool) -> dict[str, Any]:
    """Split the output of ``writer`` into ``NAME`` and ``NAME-holdout``; return ``NAME``'s manifest.

    A bad count is refused before the output is touched (the caller decides what to remove).
    """
    check_holdout_count(writer.num_docs, n)
    return split_and_publish(writer.detach(), StoreFiles(writer.prefix), writer.dtype, manifest, n, seed, overwrite)


def split_and_publish(
    full: DetachedOutput, files: StoreFiles, dtype: np.dtype, manifest: dict[str, Any], n: int, seed: int, overwrite: bool
) -> dict[str, Any]:
    """Split a set-aside output into ``NAME`` and ``NAME-holdout``, publish both (holdout first),
    then delete the set-aside output; return ``NAME``'s manifest."""
    held = holdout_indices(len(full), n, seed)
    is_held = np.zeros(len(full), dtype=bool)
    is_held[held] = True
    train = StoreWriter(files.prefix, dtype)
    hold = StoreWriter(files.holdout.prefix, dtype)
    try:
        chunk = 4096
        for start in range(0, len(full), chunk):
            stop = min(len(full), start + chunk)
            docs = full.documents(start, stop)
            train.add_many([d for d, h in zip(docs, is_held[start:stop]) if not h])
            hold.add_many([d for d, h in zip(docs, is_held[start:stop]) if h])
        for writer in (hold, train):
            if not overwrite and writer.files.exists() and not writer.matches_published():
                raise MixkitError(f"store '{writer.files.name}' already exists in {files.prefix.parent} (use --overwrite to replace it)")
        # Both checked before either is published: an existing store here holds the very bytes
        # the split made (an interrupted run published it), so replacing it changes nothing.
        split = {"holdout": holdout_record(files, n, seed)}
        hold_manifest = hold.finish({**manifest, **split, "role": "holdout"}, overwrite=True)
        result = train.finish({**manifest, **split, "role": "train", "holdout_fingerprint": hold_manifest["fingerprint"]}, overwrite=True)
    except BaseException:
        train.abort()
        hold.abort()
        raise
    full.delete()
    return result

