"""Verify stores and mixes before they are used, cheaply: structure at open, content once.

Why: a token store or a mix changed in place (same size) used to be read as if it were
good: counts, distances, mixes and training went on with the wrong data, and index
values past the end of a memory map crashed the trainer. Every reader now opens through
``TokenStore.open`` / ``MixStream.open``, which check:

**The manifest itself** (always; microseconds). A store manifest written since checksums
exist records ``manifest_checksum``: the sha256 of its canonical JSON (sorted keys, no
spaces) without that key, so an edited ``vocab_size`` is refused. ``mix.json`` has
always carried the same thing as its ``fingerprint``.

**Structure** (at open; vectorised NumPy over the index, milliseconds per million
documents). A store's index: lengths ``>= 0``, pointers exactly
``pointers[i] = itemsize * sum(lengths[:i])`` (so monotone and inside the ``.bin``),
the totals equal to the ``.bin``'s size and the manifest's counts, document indices
``0..S``; the dtype holds every id below ``vocab_size``, and ``max_token_id`` (recorded
at finish) ``< vocab_size``. A mix's arrays: their shapes against the manifest, and every
value in range of what it indexes (``dataset_index`` below the number of datasets,
``dataset_sample_index`` below the dataset's stream, ``shuffle_idx`` below the block's
samples, ``sample_idx`` positions below the block's documents and offsets within the
longest document, ``doc_idx`` below the store's documents).

**Content** (on first use; a full read). Stores carry checksums by chunk, computed at
finish in the same pass as the fingerprint::

    "checksums": {"algorithm": "xxh3_64", "chunk_bytes": 67108864,
                  "bin": [xxh3_64 of bytes [i*C, (i+1)*C) of NAME.bin, ...], "idx": [...]}

and a mismatch names the file and the byte range. A mix's arrays are checked against
the sha256 of each file that ``mix.json`` has always listed (``files``). Stores written
before checksums existed (no ``checksums`` in the manifest) are checked against their
sha256 ``fingerprint`` instead (slower, same guarantee) and their largest token id is
measured then; having no ``manifest_checksum``, an edit of their manifest that keeps
every id below ``vocab_size`` cannot be detected (re-tokenize to get the full check).

**A stamp** makes the second open free: after a check passes, ``NAME.verified`` beside
the store (``verified.json`` in a mix folder) records the size, mtime and inode of every
file checked, and the manifest's digest; while they are unchanged, neither structure
nor content is read again. A file modified less than ``RACY_SECONDS`` before the check
is not stamped (a later change within the file system's timestamp granularity could
keep the same mtime), so it is checked again next time. A folder that cannot be written
simply gets no stamp.

``--no-verify`` (``set_content_checks(False)`` or ``MIXKIT_NO_VERIFY=1``) skips the
content checks; the manifest and structure checks always run. Whatever the arrays say,
the batch kernel of ``mixkit.mix.stream`` never reads or writes out of bounds.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import xxhash

from mixkit import atomic, locks
from mixkit.errors import MixkitError

CHUNK_BYTES = 64 << 20  # bytes per content checksum
ALGORITHM = "xxh3_64"
RACY_SECONDS = 2.0  # files younger than this at check time get no stamp (timestamp granularity)
STAMP_FORMAT = "mixkit-verified"
STAMP_VERSION = 1
INDEX_CHUNK = 1 << 22  # elements per step of the vectorised structure checks (bounded memory)
READ_BYTES = 8 << 20  # read size of the sha256 passes

_content_checks: bool | None = None  # None: decided by $MIXKIT_NO_VERIFY


# -- the switch -----------------------------------------------------------------------------------


def content_checks_enabled() -> bool:
    """Whether readers check content (checksums) on first use: ``set_content_checks``'s value,
    else not when ``$MIXKIT_NO_VERIFY`` is set to anything but ``0``/empty."""
    if _content_checks is not None:
        return _content_checks
    return os.environ.get("MIXKIT_NO_VERIFY", "") in ("", "0")


def set_content_checks(enabled: bool | None) -> None:
    """Turn content checks on or off for this process (``None``: back to ``$MIXKIT_NO_VERIFY``)."""
    global _content_checks
    _content_checks = enabled


# -- digests --------------------------------------------------------------------------------------


def canonical_sha256(obj: Any) -> str:
    """sha256 of ``obj``'s canonical JSON: sorted keys, no spaces."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def manifest_checksum(manifest: dict[str, Any]) -> str:
    """The ``manifest_checksum`` of a store manifest: ``canonical_sha256`` of it without that key."""
    return canonical_sha256({k: v for k, v in manifest.items() if k != "manifest_checksum"})


def _blocks(path: Path, size: int) -> Iterator[memoryview]:
    """The bytes of ``path`` in blocks of ``size`` (one buffer reused: bounded memory)."""
    buf = bytearray(size)
    view = memoryview(buf)
    with open(path, "rb") as f:
        while n := f.readinto(buf):
            yield view[:n]


def chunk_checksums(path: str | os.PathLike, chunk_bytes: int = CHUNK_BYTES) -> list[str]:
    """``xxh3_64`` (hex) of each ``chunk_bytes`` piece of the file, in order (empty file: none)."""
    return [xxhash.xxh3_64_hexdigest(block) for block in _blocks(Path(path), chunk_bytes)]


def scan_store(idx_path: Path, bin_path: Path, dtype: np.dtype) -> tuple[str, dict[str, Any], int | None]:
    """One read of a store's files: ``(fingerprint, checksums, max_token_id)``.

    The fingerprint is sha256 over the ``.idx`` then the ``.bin`` bytes (``mixkit.store``),
    ``checksums`` the manifest entry of the module docstring, and ``max_token_id`` the
    largest id in the ``.bin`` (None when it is empty).
    """
    sha = hashlib.sha256()
    sums: dict[str, Any] = {"algorithm": ALGORITHM, "chunk_bytes": CHUNK_BYTES}
    dtype = np.dtype(dtype).newbyteorder("<")
    top: int | None = None
    for key, path in (("idx", idx_path), ("bin", bin_path)):
        digests = []
        for block in _blocks(path, CHUNK_BYTES):
            sha.update(block)
            digests.append(xxhash.xxh3_64_hexdigest(block))
            if key == "bin":
                ids = np.frombuffer(block, dtype=dtype, count=len(block) // dtype.itemsize)
                if ids.size:
                    m = int(ids.max())
                    top = m if top is None else max(top, m)
        sums[key] = digests
    return sha.hexdigest(), sums, top


def human_bytes(n: float) -> str:
    """``1536`` → ``"1.5 KiB"``: sizes in messages."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover - the loop returns


# -- store checks ---------------------------------------------------------------------------------


def check_manifest_checksum(manifest_path: Path, manifest: dict[str, Any]) -> None:
    """When the manifest records its own checksum, it must still match (an edit would not)."""
    recorded = manifest.get("manifest_checksum")
    if recorded is not None and recorded != manifest_checksum(manifest):
        raise MixkitError(
            f"{manifest_path}: the manifest was edited after the store was written (its checksum differs); "
            "re-tokenize with --overwrite"
        )


def check_store_structure(
    name: str, idx_path: Path, lengths: np.ndarray, pointers: np.ndarray, doc_idx: np.ndarray,
    dtype: np.dtype, bin_bytes: int, manifest: dict[str, Any],
) -> None:
    """The index describes the ``.bin`` exactly, and the dtype and recorded ids fit the vocabulary.

    ``pointers[i] = itemsize * sum(lengths[:i])`` and ``itemsize * sum(lengths) = bin_bytes``,
    checked in steps of ``INDEX_CHUNK`` documents (bounded memory); see the module docstring.
    """
    where = f"store '{name}': {idx_path.name}"
    itemsize = np.dtype(dtype).itemsize
    n = int(lengths.size)
    if n != int(manifest["documents"]):
        raise MixkitError(f"{where} indexes {n} documents, the manifest says {manifest['documents']} (damaged)")
    if doc_idx.size != n + 1 or (n and (int(doc_idx[0]) != 0 or int(doc_idx[-1]) != n)):
        raise MixkitError(f"{where}: its document indices are not 0..{n} (damaged)")
    offset = 0  # tokens before the current chunk
    for lo in range(0, n, INDEX_CHUNK):
        chunk = np.asarray(lengths[lo : lo + INDEX_CHUNK], dtype=np.int64)
        if chunk.size and int(chunk.min()) < 0:
            bad = lo + int(np.argmax(chunk < 0))
            raise MixkitError(f"{where}: document {bad} has a negative length (damaged)")
        expected = offset + np.concatenate(([0], np.cumsum(chunk[:-1])))
        got = np.asarray(pointers[lo : lo + chunk.size], dtype=np.int64)
        wrong = got != expected * itemsize
        if wrong.any():
            bad = lo + int(np.argmax(wrong))
            raise MixkitError(
                f"{where}: document {bad} points to byte {int(pointers[bad])}, expected {int(expected[bad - lo]) * itemsize} "
                f"(the .bin has {bin_bytes} bytes; damaged)"
            )
        offset += int(chunk.sum())
    if offset * itemsize != bin_bytes or offset != int(manifest["tokens"]):
        raise MixkitError(
            f"{where}: the documents add up to {offset} tokens, the .bin holds {bin_bytes // itemsize} "
            f"and the manifest says {manifest['tokens']} (damaged)"
        )
    check_vocabulary(name, dtype, manifest)


def check_vocabulary(name: str, dtype: np.dtype, manifest: dict[str, Any], max_token_id: int | None = None) -> None:
    """``vocab_size`` is a positive int the dtype can hold, and no recorded id reaches it."""
    vocab = (manifest.get("tokenizer") or {}).get("vocab_size")
    if not isinstance(vocab, int) or isinstance(vocab, bool) or vocab <= 0:
        raise MixkitError(f"store '{name}': the manifest's vocab_size {vocab!r} is not a positive integer (damaged)")
    info = np.iinfo(dtype)
    if vocab - 1 > info.max:
        raise MixkitError(f"store '{name}': vocab_size {vocab} does not fit its {np.dtype(dtype).name} tokens (damaged manifest)")
    top = manifest.get("max_token_id") if max_token_id is None else max_token_id
    if top is not None and not (isinstance(top, int) and 0 <= top < vocab):
        raise MixkitError(
            f"store '{name}': token id {top} is outside the vocabulary [0, {vocab}) "
            "(the ids and the tokenizer do not belong together)"
        )


def verify_store_content(name: str, idx_path: Path, bin_path: Path, dtype: np.dtype, manifest: dict[str, Any]) -> int | None:
    """Read the store once and compare it with its manifest; return its largest token id.

    With ``checksums``: each chunk's xxh3, a mismatch naming the file and byte range.
    Without (stores written before them): the sha256 ``fingerprint``.
    """
    sums = manifest.get("checksums")
    if isinstance(sums, dict) and sums.get("algorithm") == ALGORITHM:
        chunk = int(sums["chunk_bytes"])
        dt = np.dtype(dtype).newbyteorder("<")
        top: int | None = None
        for key, path in (("idx", idx_path), ("bin", bin_path)):
            recorded = list(sums.get(key, []))
            got = 0
            for i, block in enumerate(_blocks(path, chunk)):
                if i >= len(recorded) or xxhash.xxh3_64_hexdigest(block) != recorded[i]:
                    raise MixkitError(
                        f"store '{name}': {path} differs from its checksum in bytes "
                        f"[{i * chunk}, {i * chunk + len(block)}) (damaged; re-tokenize with --overwrite)"
                    )
                if key == "bin":
                    ids = np.frombuffer(block, dtype=dt, count=len(block) // dt.itemsize)
                    if ids.size:
                        m = int(ids.max())
                        top = m if top is None else max(top, m)
                got += 1
            if got != len(recorded):
                raise MixkitError(f"store '{name}': {path} is shorter than its checksums say (damaged)")
        return top
    fingerprint, _, top = scan_store(idx_path, bin_path, dtype)
    if fingerprint != manifest.get("fingerprint"):
        raise MixkitError(
            f"store '{name}': {bin_path} or {idx_path.name} differs from the store's fingerprint "
            "(damaged; re-tokenize with --overwrite)"
        )
    return top


# -- stamps ---------------------------------------------------------------------------------------


def file_identity(path: Path) -> list[int]:
    """``[size, mtime_ns, inode]``: what a stamp is keyed by."""
    st = path.stat()
    return [int(st.st_size), int(st.st_mtime_ns), int(st.st_ino)]


def read_stamp(stamp_path: Path, files: dict[str, Path], manifest_digest: str) -> dict[str, Any] | None:
    """The stamp at ``stamp_path`` if it vouches for exactly these files and manifest, else None."""
    try:
        stamp = json.loads(stamp_path.read_text())
        if not isinstance(stamp, dict) or stamp.get("format") != STAMP_FORMAT or stamp.get("manifest") != manifest_digest:
            return None
        recorded = stamp.get("files")
        if not isinstance(recorded, dict) or set(recorded) != set(files):
            return None
        if any(recorded[k] != file_identity(p) for k, p in files.items()):
            return None
    except (OSError, ValueError):
        return None
    return stamp


def write_stamp(stamp_path: Path, files: dict[str, Path], manifest_digest: str, **extra: Any) -> bool:
    """Record that these files passed their checks (atomically); False when not written
    (a file too young to trust its mtime, or a folder that cannot be written)."""
    now = time.time_ns()
    try:
        identities = {k: file_identity(p) for k, p in files.items()}
        if any(now - ident[1] < RACY_SECONDS * 1e9 for ident in identities.values()):
            return False
        stamp = {"format": STAMP_FORMAT, "format_version": STAMP_VERSION, "manifest": manifest_digest,
                 "files": identities, **extra}
        # a reader killed while writing a stamp left its temporary: gone once its owner is dead
        locks.remove_orphans(stamp_path.parent, stamp_path.name)
        atomic.write_json(stamp_path, stamp)
    except OSError:
        return False
    return True
