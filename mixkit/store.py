"""Token stores: the Megatron-LM / GPT-NeoX ``MMIDIDX`` indexed format plus a JSON manifest.

A store named ``NAME`` is three files in the data directory:

``NAME.bin``
    Every document's token ids, back to back, in the store's dtype (``uint16`` when
    the tokenizer's vocabulary fits, else ``int32``), little-endian, no header.

``NAME.idx``
    The index, byte for byte what Megatron-LM's ``IndexedDatasetBuilder`` writes
    (version 1), so ``megatron.core.datasets.indexed_dataset.IndexedDataset`` and
    GPT-NeoX read it unchanged::

        offset  size            field
        0       9               magic  b"MMIDIDX\\x00\\x00"
        9       8  <Q           version = 1
        17      1  <B           dtype code (1 uint8, 2 int8, 3 int16, 4 int32,
                                5 int64, 6 float64, 7 float32, 8 uint16)
        18      8  <Q           S = number of sequences (documents)
        26      8  <Q           D = number of document indices = S + 1
        34      4*S int32       sequence lengths in tokens
        ..      8*S int64       sequence pointers: byte offset of each sequence in .bin
        ..      8*D int64       document indices: 0, 1, ..., S (one sequence per document)

    Pointers are int64, so stores past 4 G tokens work.

``NAME.json``
    The manifest: format version, dtype, documents, tokens, the tokenizer (file name,
    sha256, vocabulary size), the EOS policy, how text was made (field/template),
    the sources, what was skipped and why, the mixkit version, and ``fingerprint``:
    the sha256 of the ``.idx`` bytes followed by the ``.bin`` bytes. Later artifacts
    (counts, mixes, checkpoints) record that fingerprint and refuse a store whose
    fingerprint changed. Since checksums exist also ``checksums`` (xxh3 of every 64 MB
    of each file), ``max_token_id`` and ``manifest_checksum`` (``mixkit.integrity``).

``TokenStore.open`` checks the manifest, the index's structure and, on first use, the
content against the checksums, then stamps the store as verified (``NAME.verified``) so
the next open reads nothing (``mixkit.integrity``).

The manifest is renamed into place last: a store without its manifest, or whose
files disagree with the sizes the manifest records, does not exist as far as
``TokenStore.open`` is concerned.

Every other file that belongs to a store (partial output, the tokenize checkpoint, the
counts cache, the held-out store) is named by ``StoreFiles``, the one place store file
names are made.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mixkit import atomic, integrity
from mixkit.error_lines import exception_detail
from mixkit.errors import MixkitError
from mixkit.resources import disk_errors, ensure_free_space

MAGIC = b"MMIDIDX\x00\x00"
INDEX_VERSION = 1
MANIFEST_FORMAT = "mixkit-token-store"
MANIFEST_VERSION = 1
HEADER_BYTES = len(MAGIC) + 8 + 1 + 8 + 8

DTYPE_CODES: dict[int, type] = {
    1: np.uint8,
    2: np.int8,
    3: np.int16,
    4: np.int32,
    5: np.int64,
    6: np.float64,
    7: np.float32,
    8: np.uint16,
}
CODE_OF_DTYPE = {np.dtype(v).name: k for k, v in DTYPE_CODES.items()}


def dtype_for_vocab(vocab_size: int) -> np.dtype:
    """``uint16`` when every id in ``[0, vocab_size)`` fits (vocab ≤ 65,536), else ``int32``."""
    if vocab_size <= 0:
        raise MixkitError(f"vocabulary size must be positive, got {vocab_size}")
    if vocab_size <= np.iinfo(np.uint16).max + 1:
        return np.dtype(np.uint16)
    if vocab_size <= np.iinfo(np.int32).max + 1:
        return np.dtype(np.int32)
    raise MixkitError(f"vocabulary size {vocab_size} does not fit int32 token ids")


def default_data_dir() -> Path:
    """``$MIXKIT_DATA_DIR`` if set, else ``./mixkit-data``."""
    return Path(os.environ.get("MIXKIT_DATA_DIR", "mixkit-data"))


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path:
    return Path(data_dir) if data_dir is not None else default_data_dir()


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 23) -> str:
    h = hashlib.sha256()
    _hash_into(h, path, chunk)
    return h.hexdigest()


def _hash_into(h: Any, path: str | os.PathLike, chunk: int = 1 << 23) -> None:
    """Feed the bytes of ``path`` to the hash ``h``, a block at a time."""
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)


def fingerprint_files(idx_path: Path, bin_path: Path, chunk: int = 1 << 23) -> str:
    """sha256 over the ``.idx`` bytes then the ``.bin`` bytes: the store's content identity."""
    h = hashlib.sha256()
    for path in (idx_path, bin_path):
        _hash_into(h, path, chunk)
    return h.hexdigest()


def encode_index(lengths: np.ndarray, dtype: np.dtype) -> bytes:
    """The ``.idx`` bytes for documents of the given token ``lengths`` (see module docstring)."""
    dtype = np.dtype(dtype)
    lengths = np.asarray(lengths, dtype=np.int64)
    if lengths.size and (lengths.min() < 0 or lengths.max() > np.iinfo(np.int32).max):
        raise MixkitError("a document length does not fit the index's int32 lengths")
    pointers = np.zeros(lengths.size, dtype=np.int64)
    if lengths.size > 1:
        np.cumsum(lengths[:-1] * dtype.itemsize, out=pointers[1:])
    doc_idx = np.arange(lengths.size + 1, dtype=np.int64)
    header = (
        MAGIC
        + struct.pack("<Q", INDEX_VERSION)
        + struct.pack("<B", CODE_OF_DTYPE[dtype.name])
        + struct.pack("<Q", lengths.size)
        + struct.pack("<Q", doc_idx.size)
    )
    return (
        header
        + lengths.astype("<i4").tobytes()
        + pointers.astype("<i8").tobytes()
        + doc_idx.astype("<i8").tobytes()
    )


@dataclass(frozen=True)
class IndexArrays:
    dtype: np.dtype
    lengths: np.ndarray  # int32, one per document
    pointers: np.ndarray  # int64 byte offsets into .bin
    doc_idx: np.ndarray  # int64, S + 1 entries


def read_index(idx_path: str | os.PathLike) -> IndexArrays:
    """Memory-map an ``.idx`` file and check its header; no copy of the arrays is made."""
    idx_path = Path(idx_path)
    size = idx_path.stat().st_size
    if size < HEADER_BYTES:
        raise MixkitError(f"{idx_path}: truncated index ({size} bytes, header needs {HEADER_BYTES})")
    with open(idx_path, "rb") as f:
        header = f.read(HEADER_BYTES)
    if header[: len(MAGIC)] != MAGIC:
        raise MixkitError(f"{idx_path}: not an MMIDIDX index (bad magic)")
    (version,) = struct.unpack_from("<Q", header, 9)
    (code,) = struct.unpack_from("<B", header, 17)
    (n_seq,) = struct.unpack_from("<Q", header, 18)
    (n_doc,) = struct.unpack_from("<Q", header, 26)
    if version != INDEX_VERSION:
        raise MixkitError(f"{idx_path}: index version {version}, expected {INDEX_VERSION}")
    if code not in DTYPE_CODES:
        raise MixkitError(f"{idx_path}: unknown dtype code {code}")
    expected = HEADER_BYTES + 4 * n_seq + 8 * n_seq + 8 * n_doc
    if size != expected:
        raise MixkitError(f"{idx_path}: index is {size} bytes, its header implies {expected} (truncated?)")
    mm = np.memmap(idx_path, dtype=np.uint8, mode="r")
    off = HEADER_BYTES
    lengths = mm[off : off + 4 * n_seq].view("<i4")
    off += 4 * n_seq
    pointers = mm[off : off + 8 * n_seq].view("<i8")
    off += 8 * n_seq
    doc_idx = mm[off : off + 8 * n_doc].view("<i8")
    return IndexArrays(np.dtype(DTYPE_CODES[code]), lengths, pointers, doc_idx)


HOLDOUT_SUFFIX = "-holdout"


def holdout_name(name: str) -> str:
    """The store of the documents held out of store ``name`` (``--holdout-docs``): ``NAME-holdout``."""
    return name + HOLDOUT_SUFFIX


def store_prefix(name_or_path: str | os.PathLike, data_dir: str | os.PathLike | None = None) -> Path:
    """Map a store name, a path prefix, or a path to one of its files onto the path prefix.

    A bare name (no path separator) is looked up in the data directory; anything with a
    separator (``./c4``, ``/data/c4.bin``) is a path.
    """
    text = str(name_or_path)
    for suffix in StoreFiles.STORE_SUFFIXES:
        if text.endswith(suffix):
            return Path(text[: -len(suffix)])
    if os.sep in text or (os.altsep and os.altsep in text):
        return Path(text)
    return resolve_data_dir(data_dir) / text


def _file(suffix: str) -> property:
    """A ``StoreFiles`` property: the path ``PREFIX + suffix``."""
    return property(lambda files: files.prefix.with_name(files.prefix.name + suffix), doc=f"``NAME{suffix}``")


@dataclass(frozen=True)
class StoreFiles:
    """The paths of every file that belongs to store ``NAME``; ``prefix`` is ``DATA_DIR/NAME``.

    ::

        NAME.bin  NAME.idx  NAME.json           the store itself (module docstring)
        NAME.bin.partial  NAME.lengths.partial  a ``StoreWriter``'s output while it grows
        NAME.idx.partial                        the index while ``finish`` writes it
        NAME.detached.bin.partial               output set aside by ``StoreWriter.detach``
        NAME.detached.lengths.partial
        NAME.tokenize-state.json                ``mixkit tokenize``'s resume checkpoint
        .NAME.lock                              held by the one process writing NAME (``mixkit.locks``)
        NAME.counts.npy  NAME.counts.json       cached unigram counts (``mixkit.unigram``)
        NAME.verified                           the stamp of the last passed check (``mixkit.integrity``)
        NAME-holdout.*                          the documents held out of NAME: another store
    """

    BIN_SUFFIX, IDX_SUFFIX, MANIFEST_SUFFIX = ".bin", ".idx", ".json"
    STORE_SUFFIXES = (BIN_SUFFIX, IDX_SUFFIX, MANIFEST_SUFFIX)

    prefix: Path

    bin = _file(BIN_SUFFIX)
    idx = _file(IDX_SUFFIX)
    manifest = _file(MANIFEST_SUFFIX)
    bin_partial = _file(".bin.partial")
    lengths_partial = _file(".lengths.partial")
    idx_partial = _file(".idx.partial")
    detached_bin = _file(".detached.bin.partial")
    detached_lengths = _file(".detached.lengths.partial")
    tokenize_state = _file(".tokenize-state.json")
    counts_npy = _file(".counts.npy")
    counts_json = _file(".counts.json")
    verified = _file(".verified")

    @classmethod
    def of(cls, name_or_path: str | os.PathLike, data_dir: str | os.PathLike | None = None) -> StoreFiles:
        """The files of a store given by name (in ``data_dir``), path prefix or path to one of its files."""
        return cls(store_prefix(name_or_path, data_dir))

    @property
    def name(self) -> str:
        return self.prefix.name

    @property
    def lock(self) -> Path:
        """``.NAME.lock``: the write lock of the store (``mixkit.locks``), held by whoever writes NAME."""
        return self.prefix.with_name(f".{self.name}.lock")

    def partials(self) -> list[Path]:
        """Every file a writer of NAME keeps while it works (the ``*.partial`` files above)."""
        return [self.bin_partial, self.lengths_partial, self.idx_partial, self.detached_bin, self.detached_lengths]

    @property
    def holdout(self) -> StoreFiles:
        """The files of ``NAME-holdout``, the store of the documents held out of this one."""
        return StoreFiles(self.prefix.with_name(holdout_name(self.name)))

    def exists(self) -> bool:
        """Whether the store is there: its manifest is written last, so it decides."""
        return self.manifest.exists()

    def published_manifest(self) -> dict[str, Any] | None:
        """The manifest in place as a dict, or None (none, unreadable, not a JSON object).

        For deciding whether an output already there is the one a run would write (a rerun
        of a finished job, a publish an interrupted run began); never for reading a store,
        which ``TokenStore.open`` checks whole.
        """
        try:
            manifest = json.loads(self.manifest.read_text())
        except (OSError, ValueError):
            return None
        return manifest if isinstance(manifest, dict) else None


def read_manifest(path: Path, fmt: str, what: str) -> dict[str, Any]:
    """The JSON manifest at ``path``, which must say ``"format": fmt``; ``what`` names the artifact in errors.

    Every artifact mixkit writes (stores, mixes) carries such a manifest, written with
    ``mixkit.atomic.write_json``.
    """
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as e:  # ValueError: bad UTF-8 or JSON
        raise MixkitError(f"{path}: unreadable {what} manifest ({exception_detail(e)})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != fmt:
        raise MixkitError(f"{path}: not a mixkit {what} manifest")
    return manifest


# The fields of a store manifest that opening and reading a store rely on, and their types.
STORE_MANIFEST_FIELDS = {
    "dtype": str, "documents": int, "tokens": int, "bin_bytes": int, "idx_bytes": int, "fingerprint": str, "tokenizer": dict,
}


def check_store_manifest(manifest: dict[str, Any], path: Path) -> None:
    """Refuse a store manifest that lacks a field the store's readers use (an edited or foreign file),
    or whose recorded checksum says it was edited (a manifest without one is from before checksums)."""
    for key, kind in STORE_MANIFEST_FIELDS.items():
        if not isinstance(manifest.get(key), kind) or isinstance(manifest.get(key), bool):
            problem = "missing" if key not in manifest else f"not {'an' if kind is int else 'a'} {kind.__name__}"
            raise MixkitError(f"{path}: damaged store manifest ({key!r} is {problem}; re-tokenize with --overwrite)")
    tokenizer = manifest["tokenizer"]
    if not isinstance(tokenizer.get("vocab_size"), int) or not isinstance(tokenizer.get("sha256"), str):
        raise MixkitError(f"{path}: damaged store manifest (tokenizer.vocab_size or tokenizer.sha256 is missing)")
    integrity.check_manifest_checksum(path, manifest)


class TokenStore:
    """A read-only, memory-mapped token store.

    ``store[i]`` is document ``i``'s tokens as a zero-copy view of ``store.tokens``,
    the whole ``.bin`` as one 1-D memmap; ``store.files`` names its files (``StoreFiles``).
    Opening reads the manifest and the index, checks file sizes, the manifest's checksum and
    the index's structure, and on first use the content (``mixkit.integrity``: once, then a
    stamp); ``verify()`` rereads everything whatever the stamp says.
    """

    def __init__(self, prefix: Path, manifest: dict[str, Any], index: IndexArrays):
        self.prefix = prefix
        self.files = StoreFiles(prefix)
        self.manifest = manifest
        self._index = index
        self.dtype: np.dtype = index.dtype
        self._measured_max_token_id: int | None = None  # found by a content check of a store without one recorded
        nbytes = self.files.bin.stat().st_size
        if nbytes:
            self.tokens: np.ndarray = np.memmap(self.files.bin, dtype=self.dtype, mode="r")
        else:
            self.tokens = np.zeros(0, dtype=self.dtype)

    # -- opening ---------------------------------------------------------------------------------

    @classmethod
    def open(
        cls, name_or_path: str | os.PathLike, data_dir: str | os.PathLike | None = None, *, verify: bool | None = None
    ) -> TokenStore:
        """Open a store by name, prefix or file path, checked as the class docstring says.

        ``verify`` decides the content check on first use (None: ``integrity.content_checks_enabled()``);
        the manifest and structure checks always run unless a stamp vouches for the files.
        """
        files = StoreFiles.of(name_or_path, data_dir)
        prefix = files.prefix
        if not files.exists():
            where = prefix.parent if str(prefix.parent) != "." else Path.cwd()
            raise MixkitError(
                f"no token store named '{prefix.name}' in {where} "
                f"(`mixkit list` shows the stores; `mixkit tokenize` makes one)"
            )
        manifest = read_manifest(files.manifest, MANIFEST_FORMAT, "token store")
        check_store_manifest(manifest, files.manifest)
        for path, key in ((files.bin, "bin_bytes"), (files.idx, "idx_bytes")):
            if not path.exists():
                raise MixkitError(f"store '{prefix.name}': {path.name} is missing")
            if path.stat().st_size != manifest[key]:
                raise MixkitError(
                    f"store '{prefix.name}': {path.name} is {path.stat().st_size} bytes but the manifest "
                    f"says {manifest[key]} (truncated or rewritten; re-tokenize with --overwrite)"
                )
        index = read_index(files.idx)
        if index.dtype.name != manifest["dtype"]:
            raise MixkitError(f"store '{prefix.name}': index dtype {index.dtype.name} != manifest {manifest['dtype']}")
        store = cls(prefix, manifest, index)
        store._check(integrity.content_checks_enabled() if verify is None else verify)
        return store

    def _stamp_files(self) -> dict[str, Path]:
        return {"bin": self.files.bin, "idx": self.files.idx}

    def _check(self, content: bool) -> None:
        """Structure, then (``content``) the checksums, unless the stamp vouches for the files;
        a passed content check writes the stamp."""
        digest = integrity.canonical_sha256(self.manifest)
        stamp = integrity.read_stamp(self.files.verified, self._stamp_files(), digest)
        if stamp is not None:
            self._measured_max_token_id = stamp.get("max_token_id")
            return
        self._check_structure()
        if content:
            top = integrity.verify_store_content(self.name, self.files.idx, self.files.bin, self.dtype, self.manifest)
            integrity.check_vocabulary(self.name, self.dtype, self.manifest, top)
            self._measured_max_token_id = top
            integrity.write_stamp(self.files.verified, self._stamp_files(), digest, max_token_id=top)

    def _check_structure(self) -> None:
        index = self._index
        integrity.check_store_structure(
            self.name, self.files.idx, index.lengths, index.pointers, index.doc_idx, self.dtype,
            self.files.bin.stat().st_size, self.manifest,
        )

    # -- paths and metadata ----------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.prefix.name

    @property
    def fingerprint(self) -> str:
        return self.manifest["fingerprint"]

    @property
    def num_tokens(self) -> int:
        return int(self.tokens.size)

    @property
    def num_docs(self) -> int:
        return int(self._index.lengths.size)

    @property
    def vocab_size(self) -> int:
        return int(self.manifest["tokenizer"]["vocab_size"])

    @property
    def tokenizer_sha256(self) -> str:
        return self.manifest["tokenizer"]["sha256"]

    @property
    def max_token_id(self) -> int | None:
        """The largest token id in the store: recorded at finish, else measured by the content
        check (None: not known, as for a store written before it was recorded and opened unchecked)."""
        if "max_token_id" in self.manifest:
            return self.manifest["max_token_id"]
        return self._measured_max_token_id

    @property
    def eos_id(self) -> int | None:
        eos = self.manifest.get("eos") or {}
        return eos.get("id")

    @property
    def doc_lengths(self) -> np.ndarray:
        """int32 token count of each document (memory-mapped)."""
        return self._index.lengths

    @property
    def doc_offsets(self) -> np.ndarray:
        """int64 token offset of each document in ``tokens`` (pointers / itemsize)."""
        return np.asarray(self._index.pointers) // self.dtype.itemsize

    # -- access -----------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self.num_docs

    def __getitem__(self, i: int) -> np.ndarray:
        n = self.num_docs
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"document {i} out of range for a store of {n} documents")
        start = int(self._index.pointers[i]) // self.dtype.itemsize
        return self.tokens[start : start + int(self._index.lengths[i])]

    def __iter__(self):
        for i in range(self.num_docs):
            yield self[i]

    def verify(self) -> None:
        """Reread everything, whatever the stamp says: the fingerprint, the checksums, the index's
        structure and totals, the largest id against the vocabulary; raise ``MixkitError`` on any
        mismatch, else renew the stamp."""
        self._check_structure()
        fp, sums, top = integrity.scan_store(self.files.idx, self.files.bin, self.dtype)
        recorded = self.manifest.get("checksums")
        if isinstance(recorded, dict):
            for key, path in (("idx", self.files.idx), ("bin", self.files.bin)):
                if recorded.get(key) != sums[key]:
                    raise MixkitError(f"store '{self.name}': {path} differs from its checksums (its fingerprint differs from the manifest: files changed)")
        if fp != self.fingerprint:
            raise MixkitError(
                f"store '{self.name}': content fingerprint of {self.files.bin.name} and {self.files.idx.name} "
                "differs from its manifest (files changed)"
            )
        integrity.check_vocabulary(self.name, self.dtype, self.manifest, top)
        self._measured_max_token_id = top
        total = int(np.asarray(self._index.lengths, dtype=np.int64).sum())
        if total != self.num_tokens or total != self.manifest["tokens"]:
            raise MixkitError(f"store '{self.name}': index counts {total} tokens, .bin holds {self.num_tokens}")
        if self.num_docs != self.manifest["documents"]:
            raise MixkitError(f"store '{self.name}': index has {self.num_docs} documents, manifest says {self.manifest['documents']}")
        integrity.write_stamp(self.files.verified, self._stamp_files(), integrity.canonical_sha256(self.manifest), max_token_id=top)

    def summary(self) -> dict[str, Any]:
        """The figures ``mixkit info`` and ``mixkit list`` print."""
        m = self.manifest
        tok = m["tokenizer"]
        return {
            "name": self.name,
            "documents": self.num_docs,
            "tokens": self.num_tokens,
            "dtype": self.dtype.name,
            "tokenizer": f"{tok.get('file')} (sha256 {tok['sha256'][:12]}, vocab {tok['vocab_size']:,})",
            "mean_doc_tokens": self.num_tokens / self.num_docs if self.num_docs else 0.0,
            "size_mb": (m["bin_bytes"] + m["idx_bytes"]) / 1e6,
            "skipped": m.get("skipped", {}),
            "text": m.get("text"),
            "eos": m.get("eos"),
            "fingerprint": self.fingerprint,
        }

    def __repr__(self) -> str:
        return f"TokenStore({self.name!r}, docs={self.num_docs}, tokens={self.num_tokens}, dtype={self.dtype.name})"


def check_same_tokenizer(stores: Iterable[TokenStore]) -> None:
    """Refuse to combine stores made with different tokenizers: their ids mean different things."""
    stores = list(stores)
    if not stores:
        return
    first = stores[0]
    for other in stores[1:]:
        if other.tokenizer_sha256 != first.tokenizer_sha256:
            raise MixkitError(
                f"stores '{first.name}' and '{other.name}' were made with different tokenizers "
                f"({first.manifest['tokenizer'].get('file')} sha256 {first.tokenizer_sha256[:12]} vs "
                f"{other.manifest['tokenizer'].get('file')} sha256 {other.tokenizer_sha256[:12]})"
            )


def list_stores(data_dir: str | os.PathLike | None = None) -> list[str]:
    d = resolve_data_dir(data_dir)
    if not d.is_dir():
        return []
    names = []
    for p in sorted(d.glob("*" + StoreFiles.MANIFEST_SUFFIX)):
        try:
            manifest = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            continue
        if isinstance(manifest, dict) and manifest.get("format") == MANIFEST_FORMAT:
            names.append(p.stem)
    return names


class StoreWriter:
    """Append documents to a store under temporary names; ``finish`` makes it appear.

    The ``.bin`` grows at ``PREFIX.bin.partial`` and the document lengths at
    ``PREFIX.lengths.partial`` (int32), so memory stays flat however many documents
    there are. ``flush`` makes both durable and returns the position ``(bin_bytes,
    documents)``; ``resume_from`` reopens the partial files at such a position so a
    killed job continues instead of starting over. ``finish`` writes the index and the
    manifest (with the fingerprint) and renames ``.bin``, ``.idx``, ``.json`` into
    place, the manifest last; ``detach`` instead hands the documents written so far
    over to be read (``DetachedOutput``), so new writers may start at the same prefix.
    """

    def __init__(self, prefix: str | os.PathLike, dtype: np.dtype | str, *, resume_from: tuple[int, int] | None = None):
        self.prefix = Path(prefix)
        self.files = StoreFiles(self.prefix)
        self.prefix.parent.mkdir(parents=True, exist_ok=True)
        self.dtype = np.dtype(dtype)
        if self.dtype.name not in CODE_OF_DTYPE:
            raise MixkitError(f"unsupported token dtype {self.dtype}")
        self.partial_path = self.files.bin_partial
        self.lengths_path = self.files.lengths_partial
        self._pending: list[np.ndarray] = []
        if resume_from is None:
            self._f = open(self.partial_path, "wb")
            self._lf = open(self.lengths_path, "wb")
            self.num_docs = 0
            self.num_tokens = 0
        else:
            nbytes, ndocs = resume_from
            self._f = open(self.partial_path, "r+b")
            self._lf = open(self.lengths_path, "r+b")
            for fh, size in ((self._f, nbytes), (self._lf, 4 * ndocs)):
                fh.seek(0, os.SEEK_END)
                if fh.tell() < size:
                    raise MixkitError(f"{self.partial_path}: partial output is shorter than its checkpoint; start over")
                fh.truncate(size)
                fh.seek(size)
            self.num_docs = ndocs
            self.num_tokens = nbytes // self.dtype.itemsize
            total = int(np.fromfile(self.lengths_path, dtype="<i4").astype(np.int64).sum()) if ndocs else 0
            if total != self.num_tokens:
                raise MixkitError(f"{self.partial_path}: checkpoint lengths disagree with the partial file; start over")

    def _checked(self, tokens: np.ndarray) -> np.ndarray:
        arr = np.asarray(tokens)
        if arr.dtype != self.dtype:
            if arr.size and (int(arr.min()) < 0 or int(arr.max()) > np.iinfo(self.dtype).max):
                raise MixkitError(f"token id out of range for {self.dtype.name} (min {arr.min()}, max {arr.max()})")
            arr = arr.astype(self.dtype)
        return arr

    def add(self, tokens: np.ndarray) -> None:
        self.add_many([tokens])

    def add_many(self, docs: Iterable[np.ndarray]) -> None:
        arrays = [self._checked(d) for d in docs]
        if not arrays:
            return
        lengths = np.fromiter((a.size for a in arrays), dtype=np.int64, count=len(arrays))
        if lengths.max() > np.iinfo(np.int32).max:
            raise MixkitError("a document is longer than the index's int32 lengths allow")
        with disk_errors(self.partial_path, f"store '{self.prefix.name}'"):
            self._f.write(np.concatenate(arrays).astype(self.dtype.newbyteorder("<"), copy=False).tobytes())
            self._lf.write(lengths.astype("<i4").tobytes())
        self.num_docs += len(arrays)
        self.num_tokens += int(lengths.sum())

    def add_packed(self, tokens: np.ndarray, lengths: np.ndarray) -> None:
        """Append documents given back to back: ``tokens`` (the store's dtype) cut by ``lengths``."""
        tokens = self._checked(tokens)
        lengths = np.asarray(lengths, dtype=np.int64)
        if int(lengths.sum()) != tokens.size or (lengths < 0).any():
            raise ValueError("lengths do not add up to the tokens given")
        if not lengths.size:
            return
        if lengths.max() > np.iinfo(np.int32).max:
            raise MixkitError("a document is longer than the index's int32 lengths allow")
        with disk_errors(self.partial_path, f"store '{self.prefix.name}'"):
            self._f.write(tokens.astype(self.dtype.newbyteorder("<"), copy=False).tobytes())
            self._lf.write(lengths.astype("<i4").tobytes())
        self.num_docs += int(lengths.size)
        self.num_tokens += int(tokens.size)

    def flush(self) -> tuple[int, int]:
        """Make everything added so far durable; return ``(bin_bytes, documents)``."""
        with disk_errors(self.partial_path, f"store '{self.prefix.name}'"):
            for fh in (self._f, self._lf):
                fh.flush()
                os.fsync(fh.fileno())
        return self._f.tell(), self.num_docs

    def close(self) -> None:
        """Close the partial files, keeping them (and their durable prefix) for a resume."""
        self._f.close()
        self._lf.close()

    def abort(self) -> None:
        self.close()
        self.partial_path.unlink(missing_ok=True)
        self.lengths_path.unlink(missing_ok=True)

    def pending_fingerprint(self) -> str:
        """The fingerprint ``finish`` will give the store (sha256 of the ``.idx`` then ``.bin`` bytes)."""
        self.flush()
        h = hashlib.sha256(encode_index(np.fromfile(self.lengths_path, dtype="<i4"), self.dtype))
        _hash_into(h, self.partial_path)
        return h.hexdigest()

    def matches_published(self) -> bool:
        """Whether the store in place already holds exactly what ``finish`` would publish (the
        same fingerprint): an interrupted run of the same job published it, so replacing it with
        these bytes changes nothing."""
        return (self.files.published_manifest() or {}).get("fingerprint") == self.pending_fingerprint()

    def detach(self) -> DetachedOutput:
        """Close the writer and hand over the documents written so far, moved to other names.

        What a split needs (``mixkit.holdout`` turns one run's output into ``NAME`` and
        ``NAME-holdout``): the output stays readable while new ``StoreWriter``s write
        at the same prefix. ``DetachedOutput.delete`` removes it when done.
        """
        self.flush()
        self.close()
        os.replace(self.partial_path, self.files.detached_bin)
        os.replace(self.lengths_path, self.files.detached_lengths)
        return DetachedOutput(self.files.detached_bin, self.files.detached_lengths, self.dtype)

    def finish(self, manifest: dict[str, Any], overwrite: bool = False) -> dict[str, Any]:
        """Write the index and manifest, rename everything into place; return the manifest."""
        self.flush()
        self._f.close()
        self._lf.close()
        files = self.files
        bin_path, idx_path, json_path = files.bin, files.idx, files.manifest
        if files.exists() and not overwrite:
            raise MixkitError(f"store '{self.prefix.name}' already exists in {self.prefix.parent} (use --overwrite to replace it)")
        lengths = np.fromfile(self.lengths_path, dtype="<i4")
        idx_tmp = files.idx_partial
        index_bytes = encode_index(lengths, self.dtype)
        what = f"the index of store '{self.prefix.name}'"
        ensure_free_space(idx_tmp, len(index_bytes), what)
        with disk_errors(idx_tmp, what):
            atomic.write_bytes(idx_tmp, index_bytes)
        fingerprint, checksums, max_token_id = integrity.scan_store(idx_tmp, self.partial_path, self.dtype)
        full = dict(manifest)
        full.update(
            format=MANIFEST_FORMAT,
            format_version=MANIFEST_VERSION,
            name=self.prefix.name,
            dtype=self.dtype.name,
            documents=int(lengths.size),
            tokens=int(self.num_tokens),
            bin_bytes=self.partial_path.stat().st_size,
            idx_bytes=idx_tmp.stat().st_size,
            fingerprint=fingerprint,
            checksums=checksums,
            max_token_id=max_token_id,
        )
        full.pop("manifest_checksum", None)
        full["manifest_checksum"] = integrity.manifest_checksum(full)  # last: it covers everything above
        # The old manifest goes first so no reader pairs it with the new .bin/.idx.
        json_path.unlink(missing_ok=True)
        os.replace(self.partial_path, bin_path)
        os.replace(idx_tmp, idx_path)
        atomic.write_json(json_path, full)
        self.lengths_path.unlink(missing_ok=True)
        return full


class DetachedOutput:
    """Documents a ``StoreWriter`` wrote, set aside by ``StoreWriter.detach``: read, then ``delete``.

    ``tokens`` memory-maps the token file, ``lengths`` holds each document's token count
    (int64) and ``offsets`` where each starts (``offsets[i + 1] - offsets[i] = lengths[i]``).
    """

    def __init__(self, bin_path: Path, lengths_path: Path, dtype: np.dtype):
        self.bin_path = bin_path
        self.lengths_path = lengths_path
        self.lengths = np.fromfile(lengths_path, dtype="<i4").astype(np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)])
        self.tokens = np.memmap(bin_path, dtype=dtype, mode="r") if self.offsets[-1] else np.zeros(0, dtype)

    def __len__(self) -> int:
        return int(self.lengths.size)

    def documents(self, start: int, stop: int) -> list[np.ndarray]:
        """Documents ``start`` to ``stop - 1`` as views of ``tokens``."""
        return [self.tokens[self.offsets[i] : self.offsets[i + 1]] for i in range(start, stop)]

    def delete(self) -> None:
        self.tokens = np.zeros(0, self.tokens.dtype)  # drop the memory map before its file goes
        self.bin_path.unlink(missing_ok=True)
        self.lengths_path.unlink(missing_ok=True)


def write_store(
    prefix: str | os.PathLike,
    docs: Iterable[np.ndarray],
    *,
    vocab_size: int,
    tokenizer: dict[str, Any] | None = None,
    dtype: np.dtype | str | None = None,
    eos_id: int | None = 0,
    overwrite: bool = False,
    **manifest: Any,
) -> TokenStore:
    """Write token arrays as a store (for tests, synthetic data and merges); return it opened.

    ``tokenizer`` defaults to a description naming a synthetic vocabulary of ``vocab_size``
    ids, so synthetic stores only combine with stores of the same synthetic vocabulary.
    """
    dtype = dtype_for_vocab(vocab_size) if dtype is None else np.dtype(dtype)
    if tokenizer is None:
        tokenizer = {
            "file": None,
            "sha256": hashlib.sha256(f"synthetic-vocab-{vocab_size}".encode()).hexdigest(),
            "vocab_size": vocab_size,
        }
    writer = StoreWriter(prefix, dtype)
    try:
        writer.add_many(docs)
        full = {"tokenizer": tokenizer, "eos": {"appended": eos_id is not None, "id": eos_id}}
        full.update(manifest)
        writer.finish(full, overwrite=overwrite)
    except BaseException:
        writer.abort()
        raise
    return TokenStore.open(Path(prefix))
