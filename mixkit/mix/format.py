"""The mix folder: where a mix lives, its file names, ``mix.json``, and its arrays.

The one owner of the format: ``mixkit.mix.build`` writes a mix through it and
``mixkit.mix.stream`` (and ``inspect``) read one through it. ``DATA_DIR/mixes/NAME/``
holds (every array a ``.npy`` opened with ``mmap_mode='r'``)::

    mix.json                    plan, run shape, seed, inputs (name + fingerprint), per-phase
                                and per-dataset samples/tokens/epochs, file sha256s, fingerprint
    dataset_index.npy           int16 [steps * global_batch]: dataset of each global sample
    dataset_sample_index.npy    int64 [steps * global_batch]: its sample number in that
                                dataset's stream (continues across phases)
    d{k}_doc_idx.npy            int32 [E_k * n_docs]: epoch e's document order at [e*n_docs, ...)
    d{k}_sample_idx.npy         [E_k * (S_k + 1), 2]: epoch e's sample index at rows e*(S_k+1)...
    d{k}_shuffle_idx.npy        [E_k * S_k]: epoch e's sample shuffle at [e*S_k, ...)
                                (with shuffle "megatron": one block over all E_k epochs, below)
    shares.png                  written by ``mixkit inspect`` (not part of the mix)
    verified.json               the stamp of the last passed check (``mixkit.integrity``; not part of the mix)

(layouts of the per-epoch arrays: ``mixkit.mix.indices``; ``mix.json``'s ``files`` lists
the ``d{k}_*`` names of dataset ``k`` under ``datasets[k]``). A dataset's three arrays are
blocks laid back to back, ``datasets[k]``'s ``block_samples`` ``S`` and ``block_documents``
``D`` giving their size: block ``b`` is ``doc_idx[b*D : (b+1)*D]``, ``sample_idx`` rows
``[b*(S+1), (b+1)*(S+1))`` and ``shuffle_idx[b*S : (b+1)*S]``, and stream sample ``m``
lies in block ``m // S``. With ``shuffle = "mixkit"`` a block is an epoch (``S`` =
``samples_per_epoch``, ``D`` = ``documents``); with ``"megatron"`` there is one block,
Megatron's whole index over its ``E`` epochs (``D = E * documents``, ``S = (E*T - 1) // L``;
``megatron_num_samples`` records the sample count it was built for). The mix fingerprint is the
sha256 of ``mix.json``'s content without the fingerprint (canonical JSON: sorted keys, no
spaces), and that content lists every array file's sha256, so equal inputs give equal
fingerprints.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from mixkit import atomic, integrity
from mixkit.errors import MixkitError
from mixkit.resources import disk_errors, preallocate
from mixkit.store import read_manifest as read_json_manifest
from mixkit.store import resolve_data_dir, sha256_file

MIX_FORMAT, MIX_FORMAT_VERSION = "mixkit-mix", 1
MIXES_DIR = "mixes"  # a mix NAME lives in DATA_DIR/mixes/NAME/
MANIFEST, DATASET_INDEX, DATASET_SAMPLE_INDEX = "mix.json", "dataset_index.npy", "dataset_sample_index.npy"
EPOCH_ARRAYS = ("doc_idx", "sample_idx", "shuffle_idx")  # per dataset k: d{k}_doc_idx.npy, ...
SHARES_PLOT = "shares.png"
VERIFIED_STAMP = "verified.json"


def mix_dir(name_or_path: str | os.PathLike, data_dir: str | os.PathLike | None = None) -> Path:
    """A bare name is ``DATA_DIR/mixes/NAME``; anything with a path separator is the directory itself."""
    text = str(name_or_path)
    if os.sep in text or (os.altsep and os.altsep in text):
        return Path(text)
    return resolve_data_dir(data_dir) / MIXES_DIR / text


def lock_path(folder: Path) -> Path:
    """``mixes/.NAME.lock``: the write lock of the mix in ``folder`` (``mixkit.locks``), beside it."""
    return folder.parent / f".{folder.name}.lock"


def store_dir_of(path: Path, data_dir: str | os.PathLike | None = None) -> Path:
    """Where the input stores of the mix at ``path`` are looked up: ``data_dir`` when given,
    else the data directory the mix lives in (``.../DATA_DIR/mixes/NAME``), else the default one."""
    if data_dir is not None:
        return resolve_data_dir(data_dir)
    if path.parent.name == MIXES_DIR:
        return path.parent.parent
    return resolve_data_dir(None)


def dataset_files(k: int) -> dict[str, str]:
    """File names of dataset ``k``'s per-epoch arrays: ``{"doc_idx": "d{k}_doc_idx.npy", ...}``."""
    return {kind: f"d{k}_{kind}.npy" for kind in EPOCH_ARRAYS}


def fingerprint(manifest: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of ``manifest`` (sorted keys, no spaces)."""
    return integrity.canonical_sha256(manifest)


def file_sha256s(folder: Path) -> dict[str, str]:
    """sha256 of every array file in ``folder``, by file name (``mix.json``'s ``files``)."""
    return {p.name: sha256_file(p) for p in sorted(folder.glob("*.npy"))}


def write_manifest(folder: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Write ``mix.json`` (atomically) with ``format``, ``format_version`` and the fingerprint; return it."""
    full = {"format": MIX_FORMAT, "format_version": MIX_FORMAT_VERSION, **manifest}
    full["fingerprint"] = fingerprint(full)
    atomic.write_json(folder / MANIFEST, full)
    return full


def read_manifest(path: Path) -> dict[str, Any]:
    """``mix.json`` of the mix folder ``path``; a clear error when there is no mix there."""
    json_path = path / MANIFEST
    if not json_path.is_file():
        raise MixkitError(f"no mix named '{path.name}' in {path.parent} (`mixkit build-mix` makes one)")
    return read_json_manifest(json_path, MIX_FORMAT, "mix")


def save_array(folder: Path, name: str, array: np.ndarray) -> None:
    """Write a whole array as ``folder/name`` (``.npy``); a full disk is one ``MixkitError``."""
    with disk_errors(folder / name, f"mix array {name}"):
        np.save(folder / name, array)


def create_array(folder: Path, name: str, dtype: np.dtype | type, shape: tuple[int, ...]) -> np.memmap:
    """A new ``.npy`` of ``shape`` at ``folder/name``, memory-mapped for filling in place (``flush`` when done).

    Its blocks are reserved first (``mixkit.resources.preallocate``): writes through the map
    then cannot meet a full disk, which would kill the process with ``SIGBUS``.
    """
    path = folder / name
    with disk_errors(path, f"mix array {name}"):
        arr = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
        fd = os.open(path, os.O_RDWR)
        try:
            preallocate(fd, os.fstat(fd).st_size, path, f"mix array {name}")
        finally:
            os.close(fd)
    return arr


def load_array(path: Path) -> np.ndarray:
    """An array file of a mix, memory-mapped read-only."""
    arr = np.load(path, mmap_mode="r")
    # An empty .npy cannot be memory-mapped on every platform; np.load returns a plain array then.
    return np.asarray(arr)
