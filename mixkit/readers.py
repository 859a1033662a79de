"""Readers: one small generator per input format, each yielding ``Record``s in file order.

Every reader streams: JSON lines are read line by line (through gzip or zstd when the
name says so), JSON arrays are decoded one element at a time, Parquet is read one
row group at a time, and ``datasets`` folders are memory-mapped Arrow. Memory stays
bounded by one record (or one row group) whatever the file size.

A record carries its origin (file and 1-based line or record number), so every error
names where it happened. Problems with one record raise ``BadRecord`` (the caller
decides to stop or to skip and count); problems with a whole file (truncated
compression, unreadable file) raise ``MixkitError``.
"""

from __future__ import annotations

import glob
import gzip
import io
import json
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zstandard

from mixkit.errors import MixkitError


@dataclass(frozen=True)
class Record:
    """One input record: a dict of fields (a ``.txt`` document is ``{"text": ...}``)."""

    fields: dict[str, Any]
    origin: str  # "path:line 12" / "path:record 3"


class BadRecord(Exception):
    """A record that cannot be used; ``reason`` is a short category for the skip counts."""

    def __init__(self, origin: str, reason: str, detail: str):
        super().__init__(f"{origin}: {detail}")
        self.origin = origin
        self.reason = reason


FORMATS = (".jsonl", ".jsonl.gz", ".jsonl.zst", ".json", ".json.gz", ".json.zst", ".parquet", ".txt", ".txt.gz", ".txt.zst")


def source_format(path: Path) -> str:
    """The reader for ``path``: 'jsonl', 'json', 'parquet', 'txt' or 'hf' (a datasets folder)."""
    if path.is_dir():
        return "hf"
    name = path.name.lower()
    for suffix in (".gz", ".zst", ".zstd"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    for ext, fmt in ((".jsonl", "jsonl"), (".ndjson", "jsonl"), (".json", "json"), (".parquet", "parquet"), (".txt", "txt")):
        if name.endswith(ext):
            return fmt
    raise MixkitError(f"{path}: unknown input format (expected one of {', '.join(FORMATS)}, or a datasets folder)")


def expand_sources(patterns: list[str] | tuple[str, ...]) -> list[Path]:
    """Expand globs (each sorted, so the order never depends on the file system); keep order otherwise."""
    if not patterns:
        raise MixkitError("no input sources given")
    out: list[Path] = []
    for pat in patterns:
        if any(c in pat for c in "*?["):
            matches = sorted(glob.glob(pat, recursive=True))
            if not matches:
                raise MixkitError(f"no input files match {pat!r}")
            out.extend(Path(m) for m in matches)
        else:
            p = Path(pat)
            if not p.exists():
                raise MixkitError(f"input {pat} does not exist")
            out.append(p)
    seen: set[Path] = set()
    unique = []
    for p in out:
        rp = p.resolve()
        if rp not in seen:
            seen.add(rp)
            unique.append(p)
    return unique


def open_binary(path: Path) -> io.BufferedIOBase:
    """Open a file for binary reading, decompressing ``.gz`` and ``.zst`` on the fly."""
    name = path.name.lower()
    if name.endswith(".gz"):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    if name.endswith((".zst", ".zstd")):
        return io.BufferedReader(_ZstdReader(path), buffer_size=1 << 20)
    return open(path, "rb")


class _ZstdReader(io.RawIOBase):
    """Streaming zstd decompression that notices a cut-off file.

    ``zstandard``'s own stream reader ends quietly on a truncated frame; here every
    frame is decoded with a ``decompressobj`` and reaching the end of the input inside a
    frame is an error. Concatenated frames are read in turn.
    """

    def __init__(self, path: Path):
        self._zstd = zstandard
        self._path = path
        self._f = open(path, "rb")
        self._d = zstandard.ZstdDecompressor().decompressobj()
        self._in_frame = False
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while not self._pending:
            chunk = self._f.read(1 << 20)
            if not chunk:
                if self._in_frame:
                    raise MixkitError(f"{self._path}: truncated or corrupt zstd stream (input ends inside a frame)")
                return 0
            self._pending = self._feed(chunk)
        n = min(len(b), len(self._pending))
        b[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def _feed(self, chunk: bytes) -> bytes:
        out = []
        while chunk:
            try:
                out.append(self._d.decompress(chunk))
            except self._zstd.ZstdError as e:
                raise MixkitError(f"{self._path}: corrupt zstd stream ({e})") from None
            self._in_frame = not self._d.eof
            chunk = self._d.unused_data if self._d.eof else b""
            if self._d.eof:
                self._d = self._zstd.ZstdDecompressor().decompressobj()
                self._in_frame = bool(chunk)
        return b"".join(out)

    def close(self) -> None:
        self._f.close()
        super().close()


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    try:
        with open_binary(path) as f:
            yield from enumerate(f, 1)
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise MixkitError(f"{path}: truncated or corrupt gzip stream ({e})") from None
    except OSError as e:
        raise MixkitError(f"{path}: cannot read ({e})") from None


def _decode(raw: bytes, origin: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadRecord(origin, "invalid UTF-8", f"invalid UTF-8 at byte {e.start}") from None


def read_jsonl(path: Path) -> Iterator[Record | BadRecord]:
    for lineno, raw in _lines(path):
        origin = f"{path}:line {lineno}"
        if not raw.strip():
            continue
        try:
            text = _decode(raw, origin)
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as e:
                raise BadRecord(origin, "malformed JSON", f"malformed JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(obj, dict):
                raise BadRecord(origin, "not an object", f"expected a JSON object, got {type(obj).__name__}")
        except BadRecord as bad:
            yield bad
            continue
        yield Record(obj, origin)


def read_json_array(path: Path, chunk_size: int = 1 << 20) -> Iterator[Record | BadRecord]:
    """Decode a top-level JSON array element by element without loading the file.

    ``json.JSONDecoder.raw_decode`` parses one value from a buffer; when a value runs
    past the buffer we read more and try again, so memory holds one element plus a chunk.
    """
    decoder = json.JSONDecoder()
    try:
        f = open_binary(path)
    except OSError as e:
        raise MixkitError(f"{path}: cannot read ({e})") from None
    with f:
        reader = io.TextIOWrapper(f, encoding="utf-8", errors="strict")
        buf = ""
        pos = 0
        eof = False

        def fill() -> bool:
            nonlocal buf, pos, eof
            try:
                chunk = reader.read(chunk_size)
            except UnicodeDecodeError as e:
                raise MixkitError(f"{path}: invalid UTF-8 ({e.reason})") from None
            except (EOFError, zlib.error, gzip.BadGzipFile) as e:
                raise MixkitError(f"{path}: truncated or corrupt compressed stream ({e})") from None
            if not chunk:
                eof = True
                return False
            buf = buf[pos:] + chunk
            pos = 0
            return True

        def skip_ws() -> None:
            nonlocal pos
            while True:
                while pos < len(buf) and buf[pos] in " \t\r\n":
                    pos += 1
                if pos < len(buf) or not fill():
                    return

        skip_ws()
        if pos >= len(buf) or buf[pos] != "[":
            raise MixkitError(f"{path}: expected a JSON array ('[' at the start)")
        pos += 1
        index = 0
        while True:
            skip_ws()
            if pos >= len(buf):
                raise MixkitError(f"{path}: JSON array is not closed (truncated?)")
            if buf[pos] == "]":
                return
            if index > 0:
                if buf[pos] != ",":
                    raise MixkitError(f"{path}:record {index + 1}: malformed JSON (expected ',' between elements)")
                pos += 1
                skip_ws()
            index += 1
            origin = f"{path}:record {index}"
            while True:
                try:
                    obj, end = decoder.raw_decode(buf, pos)
                    if end == len(buf) and not eof:
                        # A number at the buffer's end may continue in the next chunk.
                        if fill():
                            continue
                    pos = end
                    break
                except json.JSONDecodeError as e:
                    if not eof and fill():
                        continue
                    raise MixkitError(f"{origin}: malformed JSON ({e.msg})") from None
            if not isinstance(obj, dict):
                yield BadRecord(origin, "not an object", f"expected a JSON object, got {type(obj).__name__}")
            else:
                yield Record(obj, origin)


def read_parquet(path: Path, batch_size: int = 1024) -> Iterator[Record | BadRecord]:
    import pyarrow.parquet as pq  # heavy (a third of a second): loaded only for Parquet sources

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:
        raise MixkitError(f"{path}: not a readable Parquet file ({e})") from None
    n = 0
    for rg in range(pf.num_row_groups):
        try:
            table = pf.read_row_group(rg)
        except Exception as e:
            raise MixkitError(f"{path}: row group {rg} unreadable ({e})") from None
        for batch in table.to_batches(max_chunksize=batch_size):
            for row in batch.to_pylist():
                n += 1
                yield Record(row, f"{path}:record {n}")


def read_txt(path: Path, lines: bool = False) -> Iterator[Record | BadRecord]:
    if lines:
        for lineno, raw in _lines(path):
            origin = f"{path}:line {lineno}"
            try:
                text = _decode(raw, origin)
            except BadRecord as bad:
                yield bad
                continue
            yield Record({"text": text.rstrip("\r\n")}, origin)
        return
    # One document per file: read in chunks so a bad byte is reported with its offset.
    chunks = []
    for _, raw in _lines(path):
        chunks.append(raw)
    data = b"".join(chunks)
    origin = f"{path}:document"
    try:
        yield Record({"text": _decode(data, origin)}, origin)
    except BadRecord as bad:
        yield bad


def read_hf(path: Path) -> Iterator[Record | BadRecord]:
    """A ``datasets`` folder: ``save_to_disk`` output, or a local dataset script/data folder.

    ``save_to_disk`` folders are memory-mapped Arrow; a script/data folder goes through
    ``load_dataset`` with the network off (``HF_DATASETS_OFFLINE``), and every split is
    read in sorted split order.
    """
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import datasets  # heavy, and reads the offline switches above when imported

    datasets.disable_progress_bars()
    try:
        if (path / "state.json").exists() or (path / "dataset_dict.json").exists():
            ds = datasets.load_from_disk(str(path))
        else:
            ds = datasets.load_dataset(str(path))
    except Exception as e:
        raise MixkitError(f"{path}: cannot load as a datasets folder ({type(e).__name__}: {e})") from None
    parts = [(name, ds[name]) for name in sorted(ds.keys())] if isinstance(ds, datasets.DatasetDict) else [(None, ds)]
    for split, part in parts:
        where = f"{path}[{split}]" if split else str(path)
        for i, row in enumerate(part, 1):
            yield Record(dict(row), f"{where}:record {i}")


def read_records(path: Path, lines: bool = False) -> Iterator[Record | BadRecord]:
    """Dispatch on the format of ``path``; see ``source_format``."""
    fmt = source_format(path)
    if fmt == "jsonl":
        return read_jsonl(path)
    if fmt == "json":
        return read_json_array(path)
    if fmt == "parquet":
        return read_parquet(path)
    if fmt == "txt":
        return read_txt(path, lines=lines)
    return read_hf(path)
