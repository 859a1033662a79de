"""Readers: one small generator per input format, each yielding ``Record``s in file order.

Every reader streams: JSON lines are read line by line (through gzip or zstd when the
name says so), JSON arrays are decoded one element at a time, Parquet is read one
row group at a time, and ``datasets`` folders are memory-mapped Arrow. Memory stays
bounded by one record (or one row group) whatever the file size.

A record carries its origin (file and 1-based line or record number), so every error
names where it happened. Problems with one record raise ``BadRecord`` (the caller
decides to stop or to skip and count); problems with a whole file (truncated
compression, unreadable file) raise ``MixkitError``.

A source is one of these (``expand_sources`` turns the command line's strings into them):

``Path``
    a local file in one of ``FORMATS``, or a ``datasets`` folder.
``DatasetFolder``  (``FOLDER:SPLIT``)
    one split of a local ``datasets`` folder.
``HubDataset``  (``hf://DATASET[@REVISION][/CONFIG][:SPLIT]``)
    a dataset on the Hugging Face hub, streamed by ``datasets`` (``load_dataset_builder``
    then ``as_streaming_dataset``) in the dataset's own order (its files in order, rows in
    order), so a prefix of it is the same prefix every time. ``DATASET`` is ``OWNER/NAME``
    or a bare ``NAME`` (then without a config); the local HF cache and ``HF_HUB_OFFLINE``
    work as they do in ``datasets``.
``RemoteFile``  (``s3://``, ``gs://``, ``https://``, ``file://``: any ``fsspec`` URL)
    a file in one of ``FORMATS`` read through ``fsspec``; a glob expands with the file
    system's own ``glob``, sorted. ``s3://`` needs ``s3fs``, ``gs://`` needs ``gcsfs``.
    ``hf://datasets/OWNER/NAME/PATH`` names files of a hub dataset repository through
    ``huggingface_hub``'s file system (for data laid out in folders rather than configs,
    such as ``hf://datasets/bigcode/starcoderdata/python/*.parquet``).

Splits are never merged silently: a ``datasets`` folder or hub dataset with more than one
split is read only with a split named, in the source string or as ``split=`` (the command
line's ``--split``); a dataset with a single split is read as it is.
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import io
import itertools
import json
import re
import sys
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import zstandard

from mixkit.error_lines import exception_detail
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


@dataclass(frozen=True)
class DatasetFolder:
    """One split of a local ``datasets`` folder: ``FOLDER:SPLIT`` on the command line."""

    path: Path
    split: str

    def __str__(self) -> str:
        return f"{self.path}:{self.split}"


@dataclass(frozen=True)
class HubDataset:
    """``hf://DATASET[@REVISION][/CONFIG][:SPLIT]``: a hub dataset, streamed (module docstring)."""

    dataset: str
    config: str | None = None
    split: str | None = None
    revision: str | None = None

    def __str__(self) -> str:
        return (
            f"hf://{self.dataset}"
            + (f"@{self.revision}" if self.revision else "")
            + (f"/{self.config}" if self.config else "")
            + (f":{self.split}" if self.split else "")
        )


@dataclass(frozen=True)
class RemoteFile:
    """A file read through ``fsspec``, named by its URL (``s3://b/x.jsonl.zst``, ``file:///x.jsonl``)."""

    url: str

    @property
    def name(self) -> str:
        return self.url.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0]

    def __str__(self) -> str:
        return self.url


Source = Path | DatasetFolder | HubDataset | RemoteFile

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
HUB_FILES_PREFIX = "hf://datasets/"
_HUB_PART = re.compile(r"^[A-Za-z0-9][\w.-]*$")


def parse_hub(spec: str) -> HubDataset:
    """``hf://OWNER/NAME[@REVISION][/CONFIG][:SPLIT]`` (or a bare ``NAME``) → ``HubDataset``."""
    body = spec[len("hf://") :]
    split = None
    if ":" in body:
        body, split = body.rsplit(":", 1)
        if not split:
            raise MixkitError(f"{spec}: empty split after ':' (expected hf://DATASET[/CONFIG][:SPLIT])")
    parts = body.split("/")
    if not 1 <= len(parts) <= 3 or not all(parts):
        raise MixkitError(f"{spec}: expected hf://OWNER/NAME[@REVISION][/CONFIG][:SPLIT]")
    revision = None
    owner_name = parts[:2]
    if "@" in owner_name[-1]:
        owner_name[-1], revision = owner_name[-1].split("@", 1)
    config = parts[2] if len(parts) == 3 else None
    if not all(_HUB_PART.match(p) for p in owner_name) or (config is not None and not _HUB_PART.match(config)) or revision == "":
        raise MixkitError(f"{spec}: expected hf://OWNER/NAME[@REVISION][/CONFIG][:SPLIT]")
    return HubDataset("/".join(owner_name), config, split, revision)


def source_format(path: Path | RemoteFile) -> str:
    """The reader for ``path``: 'jsonl', 'json', 'parquet', 'txt' or 'hf' (a datasets folder)."""
    if isinstance(path, Path) and path.is_dir():
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


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__


def _filesystem(url: str):
    """``(fs, path)`` for an fsspec URL; a missing backend package is one line saying which."""
    import fsspec

    try:
        return fsspec.core.url_to_fs(url)
    except ImportError as e:
        raise MixkitError(f"{url}: reading {url.split('://', 1)[0]}:// URLs needs a package that is not installed ({_first_line(e)})") from None
    except ValueError as e:
        raise MixkitError(f"{url}: not a URL fsspec can read ({_first_line(e)})") from None


def _expand_url(pattern: str) -> list[RemoteFile]:
    fs, path = _filesystem(pattern)
    try:
        if any(c in path for c in "*?["):
            matches = sorted(fs.glob(path))
            if not matches:
                raise MixkitError(f"no input files match {pattern!r}")
            return [RemoteFile(fs.unstrip_protocol(m)) for m in matches]
        info = fs.info(path)
    except FileNotFoundError as e:
        cause = e.__cause__  # fsspec's HTTP file system says "not found" for any failure
        if cause is not None and not isinstance(cause, FileNotFoundError) and getattr(cause, "status", None) != 404:
            raise MixkitError(f"{pattern}: cannot reach ({_first_line(cause)})") from None
        raise MixkitError(f"input {pattern} does not exist") from None
    except MixkitError:
        raise
    except Exception as e:
        raise MixkitError(f"{pattern}: cannot reach ({_first_line(e)})") from None
    if info.get("type") == "directory":
        raise MixkitError(f"input {pattern} is a directory (name its files, or a glob such as {pattern.rstrip('/')}/*.jsonl.zst)")
    return [RemoteFile(pattern)]


def _expand_local(pattern: str) -> list[Path | DatasetFolder]:
    if any(c in pattern for c in "*?["):
        matches = sorted(glob.glob(pattern, recursive=True))
        if not matches:
            raise MixkitError(f"no input files match {pattern!r}")
        return [Path(m) for m in matches]
    p = Path(pattern)
    if p.exists():
        return [p]
    folder, sep, split = pattern.rpartition(":")
    if sep and split and "/" not in split and Path(folder).is_dir():
        return [DatasetFolder(Path(folder), split)]
    raise MixkitError(f"input {pattern} does not exist")


def expand_sources(patterns: list[str] | tuple[str, ...]) -> list[Source]:
    """Expand globs (each sorted, so the order never depends on the file system); keep order otherwise.

    ``hf://...`` becomes a ``HubDataset`` (checked when it is read), except
    ``hf://datasets/OWNER/NAME/PATH`` (files of a dataset repository) and any other URL: one
    ``RemoteFile`` per match, ``FOLDER:SPLIT`` a ``DatasetFolder``, anything else a ``Path``.
    """
    if not patterns:
        raise MixkitError("no input sources given")
    out: list[Source] = []
    for pat in patterns:
        if pat.startswith(HUB_FILES_PREFIX):  # files of a hub repository: huggingface_hub's fsspec file system
            out.extend(_expand_url(pat))
        elif pat.startswith("hf://"):
            out.append(parse_hub(pat))
        elif _URL.match(pat):
            out.extend(_expand_url(pat))
        else:
            out.extend(_expand_local(pat))
    seen: set[Any] = set()
    unique = []
    for p in out:
        key = p.resolve() if isinstance(p, Path) else p
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique


class SourceDigest:
    """sha256 and count of the bytes read from a local file, taken as they are read.

    A source's identity in a store manifest comes from the very bytes that were tokenized,
    not from a separate pass over the file (which could see another version of it). The
    readers of sequential formats (JSON lines, JSON arrays, text, compressed or not) read a
    file to its end, so ``hexdigest`` is the sha256 of the whole file as it was read.
    """

    def __init__(self) -> None:
        self._sha = hashlib.sha256()
        self.bytes = 0

    def update(self, data) -> None:
        self._sha.update(data)
        self.bytes += len(data)

    def hexdigest(self) -> str:
        return self._sha.hexdigest()


class _DigestingFile(io.RawIOBase):
    """A raw local file whose every byte read also goes to a ``SourceDigest``."""

    def __init__(self, path: Path, digest: SourceDigest):
        self._f = open(path, "rb", buffering=0)
        self._digest = digest

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = self._f.readinto(b)
        if n:
            self._digest.update(memoryview(b)[:n])
        return n

    def close(self) -> None:
        self._f.close()
        super().close()


def open_binary(path: Path | RemoteFile, digest: SourceDigest | None = None) -> io.BufferedIOBase:
    """Open a file for binary reading, decompressing ``.gz`` and ``.zst`` on the fly; ``digest``
    (local files) receives the file's bytes as they are read."""
    name = path.name.lower()
    if name.endswith(".gz") and isinstance(path, Path) and digest is None:
        return gzip.open(path, "rb")  # type: ignore[return-value]
    raw: IO[bytes] = open_raw(path, digest)
    if name.endswith(".gz"):
        return _GzipOwningFile(raw)  # type: ignore[return-value]
    if name.endswith((".zst", ".zstd")):
        return io.BufferedReader(_ZstdReader(path, raw), buffer_size=1 << 20)
    return raw  # type: ignore[return-value]


def open_raw(path: Path | RemoteFile, digest: SourceDigest | None = None) -> IO[bytes]:
    """The file's bytes as they are stored: a local file, or an ``fsspec`` file object."""
    if isinstance(path, Path):
        if digest is not None:
            return io.BufferedReader(_DigestingFile(path, digest), buffer_size=1 << 20)  # type: ignore[return-value]
        return open(path, "rb")
    fs, inner = _filesystem(path.url)
    try:
        return fs.open(inner, "rb")
    except FileNotFoundError:
        raise MixkitError(f"input {path} does not exist") from None
    except Exception as e:
        raise MixkitError(f"{path}: cannot open ({_first_line(e)})") from None


def remote_identity(path: RemoteFile) -> dict[str, Any]:
    """``{"bytes", "ukey"}``: the size and fsspec's key of the file's properties (an ETag, a
    modification time...), which changes when the file does; used to refuse resuming on a
    changed file without downloading it twice to hash it."""
    fs, inner = _filesystem(path.url)
    try:
        info = fs.info(inner)
        return {"bytes": int(info.get("size") or 0), "ukey": fs.ukey(inner)}
    except Exception as e:
        raise MixkitError(f"{path}: cannot read its properties ({_first_line(e)})") from None


class _GzipOwningFile(gzip.GzipFile):
    """``gzip.GzipFile`` over an open file object that it closes too (``GzipFile`` leaves it open)."""

    def __init__(self, raw: IO[bytes]):
        super().__init__(fileobj=raw, mode="rb")
        self._raw = raw

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._raw.close()


class _ZstdReader(io.RawIOBase):
    """Streaming zstd decompression that notices a cut-off file.

    ``zstandard``'s own stream reader ends quietly on a truncated frame; here every
    frame is decoded with a ``decompressobj`` and reaching the end of the input inside a
    frame is an error. Concatenated frames are read in turn.
    """

    def __init__(self, path: Path | RemoteFile, raw: IO[bytes]):
        self._zstd = zstandard
        self._path = path
        self._f = raw
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


def _lines(path: Path | RemoteFile, digest: SourceDigest | None = None) -> Iterator[tuple[int, bytes]]:
    try:
        with open_binary(path, digest) as f:
            yield from enumerate(f, 1)
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise MixkitError(f"{path}: truncated or corrupt gzip stream ({e})") from None
    except OSError as e:
        raise MixkitError(f"{path}: cannot read ({e})") from None
    except MixkitError:
        raise
    except Exception as e:
        if isinstance(path, RemoteFile):  # a network library's own errors
            raise MixkitError(f"{path}: cannot read ({_first_line(e)})") from None
        raise


def _decode(raw: bytes, origin: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadRecord(origin, "invalid UTF-8", f"invalid UTF-8 at byte {e.start}") from None


def json_limit(e: Exception) -> tuple[str, str]:
    """``(skip reason, detail)`` for a JSON value Python's parser refuses beyond syntax: nesting
    deeper than the recursion limit, or an integer longer than ``sys.get_int_max_str_digits()``."""
    if isinstance(e, RecursionError):
        return "nested too deeply", f"JSON nested too deeply to parse (more than about {sys.getrecursionlimit()} levels)"
    if "integer string conversion" in str(e):
        return "integer too long", (f"a JSON integer longer than {getattr(sys, 'get_int_max_str_digits', lambda: 4300)()} digits "
                                    f"(Python's limit on converting integers)")
    return "malformed JSON", f"malformed JSON ({exception_detail(e)})"


def _byte_range_lines(path: Path | RemoteFile, start: int, stop: int) -> Iterator[tuple[str, bytes]]:
    """``(origin, line)`` for every line of an uncompressed file that *starts* at a byte
    offset in ``[start, stop)``: the line cut of a shard (``mixkit.sharding``).

    Reading from ``start - 1`` and dropping everything up to the first newline lands on
    the first line starting at or after ``start`` (a line starting exactly at ``start``
    is kept because the byte before it is its predecessor's newline). Line numbers are
    not known without reading the bytes before, so the origin names the line's offset.
    """
    try:
        with open_raw(path) as raw:
            f = raw if isinstance(raw, io.BufferedIOBase) else io.BufferedReader(raw, buffer_size=1 << 20)
            position = 0
            if start > 0:
                f.seek(start - 1)
                position = start - 1 + len(f.readline())
            while position < stop:
                line = f.readline()
                if not line:
                    return
                yield f"{path}:line at byte {position}", line
                position += len(line)
    except OSError as e:
        raise MixkitError(f"{path}: cannot read ({e})") from None


def _numbered_lines(
    path: Path | RemoteFile, first: int = 0, stop: int | None = None, digest: SourceDigest | None = None
) -> Iterator[tuple[str, bytes]]:
    """``(origin, line)`` for the lines numbered ``first + 1 .. stop`` (all from ``first`` when ``stop`` is None);
    ``digest`` receives the bytes read (whole files only: see ``SourceDigest``)."""
    for lineno, raw in _lines(path, digest):
        if stop is not None and lineno > stop:
            return
        if lineno > first:
            yield f"{path}:line {lineno}", raw


def _jsonl_records(lines: Iterator[tuple[str, bytes]]) -> Iterator[Record | BadRecord]:
    for origin, raw in lines:
        if not raw.strip():
            continue
        try:
            text = _decode(raw, origin)
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as e:
                raise BadRecord(origin, "malformed JSON", f"malformed JSON ({e.msg} at column {e.colno})") from None
            except (RecursionError, ValueError) as e:
                reason, detail = json_limit(e)
                raise BadRecord(origin, reason, detail) from None
            if not isinstance(obj, dict):
                raise BadRecord(origin, "not an object", f"expected a JSON object, got {type(obj).__name__}")
        except BadRecord as bad:
            yield bad
            continue
        yield Record(obj, origin)


def read_jsonl(path: Path, digest: SourceDigest | None = None) -> Iterator[Record | BadRecord]:
    return _jsonl_records(_numbered_lines(path, digest=digest))


def read_json_array(path: Path, chunk_size: int = 1 << 20, digest: SourceDigest | None = None) -> Iterator[Record | BadRecord]:
    """Decode a top-level JSON array element by element without loading the file.

    ``json.JSONDecoder.raw_decode`` parses one value from a buffer; when a value runs
    past the buffer we read more and try again, so memory holds one element plus a chunk.
    """
    decoder = json.JSONDecoder()
    try:
        f = open_binary(path, digest)
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
                if digest is not None:
                    while f.read(1 << 20):  # what follows the array, so the digest covers the whole file
                        pass
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
                except (RecursionError, ValueError) as e:
                    # where this element ends is unknown, so it cannot be skipped
                    raise MixkitError(f"{origin}: {json_limit(e)[1]}") from None
            if not isinstance(obj, dict):
                yield BadRecord(origin, "not an object", f"expected a JSON object, got {type(obj).__name__}")
            else:
                yield Record(obj, origin)


def read_parquet(path: Path | RemoteFile, batch_size: int = 1024, rows: range | None = None) -> Iterator[Record | BadRecord]:
    """The rows of a Parquet file in order, one row group at a time; with ``rows`` only
    those rows (0-based), reading only the row groups that hold them."""
    import pyarrow.parquet as pq  # heavy (a third of a second): loaded only for Parquet sources

    if isinstance(path, RemoteFile):
        with open_raw(path) as raw:
            yield from _parquet_rows(pq, raw, path, batch_size, rows)
    else:
        yield from _parquet_rows(pq, path, path, batch_size, rows)


def _parquet_file(pq, file, path: Path | RemoteFile):
    try:
        return pq.ParquetFile(file)
    except Exception as e:
        raise MixkitError(f"{path}: not a readable Parquet file ({e})") from None


def _parquet_rows(pq, file, path: Path | RemoteFile, batch_size: int, rows: range | None = None) -> Iterator[Record | BadRecord]:
    pf = _parquet_file(pq, file, path)
    wanted = rows if rows is not None else range(pf.metadata.num_rows)
    first = 0  # index of the row group's first row
    for rg in range(pf.num_row_groups):
        size = pf.metadata.row_group(rg).num_rows
        lo, hi = max(wanted.start, first), min(wanted.stop, first + size)
        if lo < hi:
            try:
                table = pf.read_row_group(rg).slice(lo - first, hi - lo)
            except Exception as e:
                raise MixkitError(f"{path}: row group {rg} unreadable ({e})") from None
            n = lo
            for batch in table.to_batches(max_chunksize=batch_size):
                for row in batch.to_pylist():
                    n += 1
                    yield Record(row, f"{path}:record {n}")
        first += size


def _txt_line_records(lines: Iterator[tuple[str, bytes]]) -> Iterator[Record | BadRecord]:
    for origin, raw in lines:
        try:
            text = _decode(raw, origin)
        except BadRecord as bad:
            yield bad
            continue
        yield Record({"text": text.rstrip("\r\n")}, origin)


def read_txt(path: Path, lines: bool = False, digest: SourceDigest | None = None) -> Iterator[Record | BadRecord]:
    if lines:
        yield from _txt_line_records(_numbered_lines(path, digest=digest))
        return
    # One document per file: read in chunks so a bad byte is reported with its offset.
    chunks = []
    for _, raw in _lines(path, digest):
        chunks.append(raw)
    data = b"".join(chunks)
    origin = f"{path}:document"
    try:
        yield Record({"text": _decode(data, origin)}, origin)
    except BadRecord as bad:
        yield bad


@contextmanager
def _datasets_offline(datasets_module):
    """The hub switched off in ``datasets`` while a local folder loads (it needs no network),
    and back on after, so a hub source later in the same process is not affected."""
    config = datasets_module.config
    names = [n for n in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE") if hasattr(config, n)]
    before = {n: getattr(config, n) for n in names}
    for n in names:
        setattr(config, n, True)
    try:
        yield
    finally:
        for n, v in before.items():
            setattr(config, n, v)


def _pick_split(where: str, splits: list[str], split: str | None) -> str | None:
    """The split to read: the one asked for, or the only one; several and none named is an error."""
    if split is not None:
        if split not in splits:
            raise MixkitError(f"{where}: no split {split!r} (splits: {', '.join(splits)})")
        return split
    if len(splits) == 1:
        return splits[0]
    raise MixkitError(
        f"{where}: has splits {', '.join(splits)}; name one with --split or {where}:SPLIT (splits are never merged)"
    )


def read_hf(path: Path, split: str | None = None, named_in_source: bool = False, rows: range | None = None) -> Iterator[Record | BadRecord]:
    """A local ``datasets`` folder: ``save_to_disk`` output, or a folder of data files.

    ``save_to_disk`` folders are memory-mapped Arrow; a data folder goes through
    ``load_dataset`` with the hub switched off. A ``DatasetDict`` gives the split named
    (``split``), or its only split; with several splits and none named it is refused,
    never merged (a test split read into training data is a leak). A plain ``Dataset``
    ignores a job-wide ``split`` unless it records another split; a split named in the
    source itself (``FOLDER:SPLIT``) must exist.
    """
    ds, where = _load_hf(path, split, named_in_source)
    first = 0
    if rows is not None:
        ds, first = ds.select(rows), rows.start
    for i, row in enumerate(ds, first + 1):
        yield Record(dict(row), f"{where}:record {i}")


def _load_hf(path: Path, split: str | None, named_in_source: bool):
    """``(dataset, where)``: the one split of a local ``datasets`` folder that ``read_hf`` reads."""
    import datasets  # heavy: loaded only for datasets folders

    datasets.disable_progress_bars()
    try:
        with _datasets_offline(datasets):
            if (path / "state.json").exists() or (path / "dataset_dict.json").exists():
                ds = datasets.load_from_disk(str(path))
            else:
                ds = datasets.load_dataset(str(path))
    except Exception as e:
        raise MixkitError(f"{path}: cannot load as a datasets folder ({_first_line(e)})") from None
    if isinstance(ds, datasets.DatasetDict):
        name = _pick_split(str(path), sorted(ds.keys()), split)
        ds, where = ds[name], f"{path}:{name}"
    elif split is not None and (named_in_source or ds.split is not None) and str(ds.split) != split:
        held = f"the single split {ds.split}" if ds.split is not None else "one dataset without splits"
        raise MixkitError(f"{path}: holds {held}, not the split {split!r}")
    else:
        where = str(path)
    return ds, where


_HUB_BUILDERS: dict[tuple[str, str | None, str | None], Any] = {}


def _hub_builder(src: HubDataset):
    """The dataset's ``datasets`` builder, made once per process: one resolution of the
    revision, so the identity recorded and the rows read are the same commit."""
    key = (src.dataset, src.config, src.revision)
    if key not in _HUB_BUILDERS:
        import datasets

        datasets.disable_progress_bars()
        if Path(src.dataset).is_dir():
            # ``datasets`` would read the local folder instead of the hub's dataset.
            raise MixkitError(f"{src}: a local folder {src.dataset} shadows the hub dataset; "
                              f"pass the folder itself as the source, or run from another directory")
        try:
            _HUB_BUILDERS[key] = datasets.load_dataset_builder(src.dataset, src.config, revision=src.revision)
        except Exception as e:
            raise MixkitError(f"{src}: cannot load from the Hugging Face hub ({_first_line(e)})") from None
    return _HUB_BUILDERS[key]


def _hub_stream(src: HubDataset, split: str | None):
    builder = _hub_builder(src)
    try:
        splits = sorted(builder.as_streaming_dataset().keys())
    except Exception as e:
        raise MixkitError(f"{src}: cannot list its splits ({_first_line(e)})") from None
    name = _pick_split(str(src), splits, src.split or split)
    return builder, name, builder.as_streaming_dataset(split=name)


def hub_identity(src: HubDataset, split: str | None = None) -> dict[str, Any]:
    """``{"dataset", "config", "split", "revision"}``: what a hub source is, for a manifest and
    the resume check (``revision`` is the commit ``datasets`` resolved, or its cache's hash offline)."""
    builder, name, _ = _hub_stream(src, split)
    return {"dataset": src.dataset, "config": builder.config.name, "split": name, "revision": str(builder.hash)}


def read_hub(src: HubDataset, split: str | None = None) -> Iterator[Record | BadRecord]:
    """A hub dataset's split, streamed in the dataset's own order (module docstring)."""
    _, name, stream = _hub_stream(src, split)
    where = str(HubDataset(src.dataset, src.config, name, src.revision))
    rows = iter(stream)
    i = 0
    while True:
        try:
            row = next(rows)
        except StopIteration:
            return
        except Exception as e:
            raise MixkitError(f"{where}: reading record {i + 1} failed ({_first_line(e)})") from None
        i += 1
        yield Record(dict(row), f"{where}:record {i}")


@dataclass(frozen=True)
class Part:
    """A contiguous part of one source's records: what one shard reads of it (``mixkit.sharding``).

    ``unit == "bytes"``: the lines of an uncompressed line file (JSON lines, ``--lines``
    text) that start at a byte offset in ``[start, stop)``; the file is entered there.
    ``unit == "records"``: the records with a 0-based index in ``[start, stop)``, where the
    index is the line number - 1 for line files (blank lines counted), the element for a
    JSON array, the row for Parquet and ``datasets`` folders, and 0 for a one-document
    text file. Parquet reads only the row groups that hold the rows, a ``datasets`` folder
    only the rows (memory-mapped); a compressed stream or a JSON array is read from its
    start, since neither can be entered in the middle.
    """

    unit: str
    start: int
    stop: int

    def describe(self) -> dict[str, Any]:
        return {self.unit: [self.start, self.stop]}


def count_records(source: Path | DatasetFolder | RemoteFile, lines: bool = False, split: str | None = None) -> int:
    """How many records ``Part(unit="records")`` indexes in ``source`` (see ``Part``).

    Parquet and ``datasets`` folders: from their metadata. Line files: the newlines, plus
    a last line without one (the decompressed bytes are counted, not parsed). JSON arrays:
    a full decoding pass.
    """
    if isinstance(source, DatasetFolder):
        return len(_load_hf(source.path, source.split, True)[0])
    fmt = source_format(source)
    if fmt == "hf":
        return len(_load_hf(source, split, False)[0])
    if fmt == "parquet":
        import pyarrow.parquet as pq

        if isinstance(source, RemoteFile):
            with open_raw(source) as raw:
                return _parquet_file(pq, raw, source).metadata.num_rows
        return _parquet_file(pq, source, source).metadata.num_rows
    if fmt == "json":
        return sum(1 for _ in read_json_array(source))
    if fmt == "txt" and not lines:
        return 1
    count, last = 0, b"\n"
    try:
        with open_binary(source) as f:
            while chunk := f.read(1 << 22):
                count += chunk.count(b"\n")
                last = chunk[-1:]
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise MixkitError(f"{source}: truncated or corrupt gzip stream ({e})") from None
    except OSError as e:
        raise MixkitError(f"{source}: cannot read ({e})") from None
    return count + (last != b"\n")


def _part_records(source: Path | DatasetFolder | RemoteFile, part: Part, lines: bool, split: str | None) -> Iterator[Record | BadRecord]:
    rows = range(part.start, part.stop)
    if isinstance(source, DatasetFolder):
        return read_hf(source.path, source.split, named_in_source=True, rows=rows)
    fmt = source_format(source)
    if fmt == "hf":
        return read_hf(source, split, rows=rows)
    if fmt == "parquet":
        return read_parquet(source, rows=rows)
    if fmt == "json":
        return itertools.islice(read_json_array(source), part.start, part.stop)
    if fmt == "txt" and not lines:
        return read_txt(source) if part.start == 0 < part.stop else iter(())
    if part.unit == "bytes":
        line_range = _byte_range_lines(source, part.start, part.stop)
    else:
        line_range = _numbered_lines(source, part.start, part.stop)
    return _jsonl_records(line_range) if fmt == "jsonl" else _txt_line_records(line_range)


def read_records(
    source: Source, lines: bool = False, split: str | None = None, part: Part | None = None,
    digest: SourceDigest | None = None,
) -> Iterator[Record | BadRecord]:
    """Dispatch on the kind and format of ``source``; ``split`` is for datasets that have splits
    and name none themselves (see ``source_format`` and the module docstring); ``part``, when
    given, is the part of a local or remote file or folder to read (not of a hub dataset).
    ``digest`` receives the bytes of a whole local file in a sequential format (see
    ``digests_reads``); a part is not hashed."""
    if part is not None and not isinstance(source, HubDataset):
        return _part_records(source, part, lines, split)
    if isinstance(source, HubDataset):
        return read_hub(source, split)
    if isinstance(source, DatasetFolder):
        return read_hf(source.path, source.split, named_in_source=True)
    fmt = source_format(source)
    local = digest if isinstance(source, Path) else None
    if fmt == "jsonl":
        return read_jsonl(source, local)
    if fmt == "json":
        return read_json_array(source, digest=local)
    if fmt == "parquet":
        return read_parquet(source)
    if fmt == "txt":
        return read_txt(source, lines=lines, digest=local)
    return read_hf(source, split)


def digests_reads(source: Source) -> bool:
    """Whether ``read_records`` feeds a ``SourceDigest`` every byte of ``source``: local files in
    the sequential formats (Parquet is read by row group, out of order; folders are Arrow maps)."""
    return isinstance(source, Path) and not source.is_dir() and source_format(source) in ("jsonl", "json", "txt")
