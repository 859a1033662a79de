"""Which records of a source set shard ``i`` of ``K`` owns (``mixkit tokenize --num-shards``).

Shards split the *documents*, not only the files, so one large file gives ``K`` balanced
shards. The sources are laid end to end on one line of bytes, in the order of the
expanded source list (each file at its size on disk; a ``datasets`` folder at the size of
its files), and the line is cut into ``K`` equal ranges::

    total bytes B = sum of the sources' sizes
    shard i owns the byte range [floor(i·B/K), floor((i+1)·B/K))

Every record has a place on that line, and a shard owns the records placed in its range:

- an uncompressed JSON-lines file, or a text file read with ``--lines``: a line's place
  is the byte it *starts* at, so a shard owns every line that starts inside its range
  and reads it by seeking (``Part("bytes", ...)``);
- a file that cannot be entered in the middle (``.gz``/``.zst`` streams, JSON arrays), a
  Parquet file and a ``datasets`` folder: its ``n`` records are spread evenly over its
  bytes, record ``r`` at ``floor(r·size/n)``, so a shard owns a contiguous range of record
  indices (``Part("records", ...)``). Parquet and ``datasets`` folders know ``n`` from their
  metadata and are read from the row groups / rows that hold the range; a compressed
  stream or a JSON array is *counted* first (a decompressing pass over its lines, a
  parse of the array) and then read from its start up to the range's end: that is the
  price of a format without random access, paid only by the (at most two) shards whose
  range cuts such a file; a shard whose range holds a whole file reads it once;
- a text file read as one document: the document sits at the file's first byte;
- a hub dataset (``hf://``, streamed, size unknown) is not split: the ``j``-th hub dataset
  of the list goes whole to shard ``j mod K``.

A source of size zero is listed by the shard whose range holds its place, so every
source appears in some shard's manifest; a source read in part carries ``shard_part``
(``{"bytes": [start, stop]}`` or ``{"records": [start, stop]}``) in the shard's manifest,
which is also part of the job's identity for resuming. Within a source, shard ``i``'s part comes
before shard ``i + 1``'s, so ``mixkit merge`` puts documents back in order by (source,
shard) and the merged store is byte-identical to one unsharded run. With plain line files
a shard is empty only when a single line spans its whole range (a line longer than
``B/K`` bytes); the other formats give every shard a record when the source set has at
least ``K`` of them spread as evenly as their sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

from mixkit.readers import (
    DatasetFolder,
    HubDataset,
    Part,
    RemoteFile,
    Source,
    count_records,
    remote_identity,
    source_format,
)


@dataclass(frozen=True)
class SourcePart:
    """One source (``index`` in the expanded source list) and the part of it a shard reads;
    ``part`` is None for the whole source."""

    index: int
    source: Source
    part: Part | None = None
    nbytes: int | None = None  # the bytes of the source in the shard's range (None: not measured)


def source_bytes(source: Source) -> int | None:
    """A source's size on the line of bytes: the file's size, a folder's files' sizes; None for a hub dataset."""
    if isinstance(source, HubDataset):
        return None
    if isinstance(source, RemoteFile):
        return remote_identity(source)["bytes"]
    path = source.path if isinstance(source, DatasetFolder) else source
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _seekable_lines(source: Source, lines: bool) -> bool:
    """An uncompressed line file: entered at any byte."""
    if isinstance(source, (HubDataset, DatasetFolder)):
        return False
    name = source.name.lower()
    if name.endswith((".gz", ".zst", ".zstd")):
        return False
    fmt = source_format(source)
    return fmt == "jsonl" or (fmt == "txt" and lines)


def _first_at_or_after(offset: int, size: int, n: int) -> int:
    """The least record index ``r`` with ``floor(r·size/n) >= offset`` (records spread over ``size`` bytes)."""
    return min(n, -(-offset * n // size))


def shard_parts(sources: list[Source], num_shards: int, shard_index: int, lines: bool = False, split: str | None = None) -> list[SourcePart]:
    """The parts of ``sources`` that shard ``shard_index`` of ``num_shards`` reads, in source order (module docstring)."""
    if num_shards == 1:
        return [SourcePart(i, s) for i, s in enumerate(sources)]
    sizes = [source_bytes(s) for s in sources]
    total = sum(size for size in sizes if size is not None)
    lo, hi = shard_index * total // num_shards, (shard_index + 1) * total // num_shards
    last = shard_index == num_shards - 1
    parts: list[SourcePart] = []
    offset = 0
    unsized = 0  # hub datasets so far
    for index, (source, size) in enumerate(zip(sources, sizes)):
        if size is None:
            if unsized % num_shards == shard_index:
                parts.append(SourcePart(index, source))
            unsized += 1
            continue
        begin, end = offset, offset + size
        offset = end
        if size == 0 or (not isinstance(source, DatasetFolder) and source_format(source) == "txt" and not lines):
            # One place: the source's first byte (a shard at the end of the line owns its end).
            if lo <= begin < hi or (last and begin == hi):
                parts.append(SourcePart(index, source, None, size))
            continue
        start, stop = max(lo, begin) - begin, min(hi, end) - begin
        if start >= stop:
            continue
        if start == 0 and stop == size:
            parts.append(SourcePart(index, source, None, size))
        elif _seekable_lines(source, lines):
            parts.append(SourcePart(index, source, Part("bytes", start, stop), stop - start))
        else:
            n = count_records(source, lines=lines, split=split)
            first, end_record = _first_at_or_after(start, size, n), _first_at_or_after(stop, size, n)
            parts.append(SourcePart(index, source, Part("records", first, end_record), stop - start))
    return parts
