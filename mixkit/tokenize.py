"""``mixkit tokenize``: sources → documents → encoder → token store, resumable.

The pipeline has three stages joined by bounded queues, so reading, encoding and
writing overlap and memory stays at a few batches:

    reader thread   records → documents (text), grouped into batches of ~``batch_bytes``
    main thread     the encoder (``mixkit.encoders``): ids of every text, EOS appended,
                    packed as one flat token array plus the document lengths
    writer thread   packed batches → ``StoreWriter``; a durable checkpoint every few seconds

Encoders (``--encoder``): ``hf`` is ``tokenizers``' ``encode_batch_fast`` with ``--workers``
Rust threads; ``fast`` is the same pipeline rebuilt on ``tiktoken`` (ids proven equal by a
self-test at load, see ``mixkit.encoders``); ``auto`` (the default) takes ``fast`` when the
self-test passes. The manifest's ``encoder`` says which one ran; the ``.bin``/``.idx`` and
the fingerprint are the same either way.

Workers with the fast encoder are processes, so encoding scales past the GIL: the main
thread sends each batch (texts, pickled) to a pool of ``--workers`` single-threaded
encoder processes, keeps at most ``2 × workers`` batches in flight and takes the results
back *in submission order*, so the store does not depend on the number of workers.
Each process holds one batch of texts and its ids (~``batch_bytes`` × 3), so memory is
bounded per worker. Inputs smaller than one batch are encoded in the main process
(starting processes costs more than it saves). At 64 cores the one reader thread (read,
decompress, parse JSON: ~100 MB/s) feeds ~60 encoders at ~2 MB/s each; beyond that,
``--num-shards`` splits the sources across independent jobs.

A checkpoint (``NAME.tokenize-state.json``) records the position in the sources
(source index, records consumed) and the durable length of the partial files. A run
killed at any moment and started again with the same command resumes there; because
encoding is a pure function of the text and batches never change what is written,
the result is byte-identical to an uninterrupted run, whatever ``--workers``.

Sharding: ``num_shards=K, shard_index=i`` takes the ``i``-th of ``K`` equal byte ranges of
the source set, split by documents (``mixkit.sharding``: line starts of a JSON-lines
file, record ranges of compressed files, Parquet, JSON arrays and ``datasets`` folders),
so one file gives ``K`` balanced shards. Each source a shard reads carries its ``shard_part``
in the manifest; ``mixkit merge`` puts the parts back in (source, shard) order (see
``mixkit.merge``). A shard resumes like any run: its position is in the part it reads.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import sys
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
from tokenizers import Tokenizer
from tqdm import tqdm

from mixkit import __version__, atomic
from mixkit.config import invalid
from mixkit.encoders import ENCODERS, EncoderChoice, FastEncoder, HFEncoder, load_encoder
from mixkit.errors import MixkitError
from mixkit.holdout import finish_with_holdout
from mixkit.names import check_new_name
from mixkit.presets import TextSpec
from mixkit.readers import (
    BadRecord,
    DatasetFolder,
    HubDataset,
    RemoteFile,
    Source,
    expand_sources,
    hub_identity,
    read_records,
    remote_identity,
)
from mixkit.sharding import SourcePart, shard_parts
from mixkit.store import StoreFiles, StoreWriter, dtype_for_vocab, resolve_data_dir, sha256_file
from mixkit.tokenizer_files import FALLBACK_EOS, resolve_tokenizer

EOS_TOKEN = FALLBACK_EOS  # the EOS of a tokenizer whose config names none
STATE_VERSION = 1
OnError = Literal["raise", "skip"]
ON_ERROR: tuple[str, ...] = get_args(OnError)  # stop at a bad record, or skip and count it


@dataclass
class TokenizeConfig:
    """Everything that decides the bytes of a store (plus how to run: workers, quiet).

    A config (``mixkit.config``): built from a table with ``from_table`` or directly; the
    checks run at once, before any work, and raise ``invalid(key, problem)``.
    """

    sources: list[str]
    name: str
    text: TextSpec = field(default_factory=TextSpec)
    tokenizer: str | None = None
    data_dir: str | None = None
    workers: int | None = None
    eos: bool = True
    lines: bool = False
    on_error: OnError = "raise"
    num_shards: int = 1
    shard_index: int = 0
    overwrite: bool = False
    holdout_docs: int = 0
    holdout_seed: int = 0
    quiet: bool = False
    batch_bytes: int = 1 << 21
    checkpoint_seconds: float = 5.0
    encoder: str = "auto"
    split: str | None = None
    max_docs: int | None = None
    max_tokens: int | None = None

    def __post_init__(self) -> None:
        if not self.sources:
            raise invalid("sources", "no input sources given (pass files, globs or datasets folders)")
        try:
            check_new_name(self.name, "store")
        except MixkitError as e:
            raise invalid("name", e.message) from None
        if self.on_error not in ON_ERROR:
            raise invalid("on_error", f"expected 'raise' or 'skip', got {self.on_error!r}")
        if self.num_shards < 1 or not 0 <= self.shard_index < self.num_shards:
            raise invalid("shard_index", f"need 0 <= shard_index < num_shards, got {self.shard_index} of {self.num_shards}")
        if self.workers is not None and self.workers < 1:
            raise invalid("workers", f"must be at least 1, got {self.workers}")
        if self.holdout_docs < 0:
            raise invalid("holdout_docs", f"must be >= 0, got {self.holdout_docs}")
        if self.holdout_docs and self.num_shards > 1:
            raise invalid("holdout_docs", "applies to a whole corpus: give it to `mixkit merge`, not to a shard")
        if self.encoder not in ENCODERS:
            raise invalid("encoder", f"expected one of {', '.join(ENCODERS)}, got {self.encoder!r}")
        if self.split is not None and not self.split:
            raise invalid("split", "must be a split name such as 'train', or not given")
        for key in ("max_docs", "max_tokens"):
            if getattr(self, key) is not None and getattr(self, key) < 1:
                raise invalid(key, f"must be at least 1 when given, got {getattr(self, key)}")


@dataclass
class TokenizerInfo:
    path: Path  # the tokenizer.json used: its sha256 is the tokenizer's identity
    sha256: str
    vocab_size: int
    eos_id: int | None
    eos_token: str = EOS_TOKEN
    origin: str | None = None  # the folder or hub id (``OWNER/NAME@COMMIT``) it came from

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {"file": self.path.name, "sha256": self.sha256, "vocab_size": self.vocab_size}
        if self.origin:
            d["source"] = self.origin
        return d


def load_tokenizer(spec: str | os.PathLike | None, workers: int | None = None):
    """Load a tokenizer (a ``tokenizer.json``, a tokenizer folder or a hub id: see
    ``mixkit.tokenizer_files``); ``workers`` caps the Rust thread pool.

    The pool size must be set before the first parallel encode in the process, which is
    why it is an environment variable set here rather than an argument. EOS is the token
    the tokenizer's config names, else ``<|endoftext|>``; ``eos_id`` is None when the
    vocabulary lacks it.
    """
    if workers is not None:
        os.environ["RAYON_RS_NUM_CPUS"] = str(workers)
        os.environ["RAYON_NUM_THREADS"] = str(workers)
    files = resolve_tokenizer(spec)
    path = files.json_path
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as e:
        raise MixkitError(f"cannot read tokenizer {path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    # Special-token strings inside documents are encoded as plain text: the only EOS ids
    # in a store are the ones appended after each document.
    tok.encode_special_tokens = True
    eos_token = files.eos_token or EOS_TOKEN
    info = TokenizerInfo(path, sha256_file(path), tok.get_vocab_size(), tok.token_to_id(eos_token), eos_token, files.origin)
    return tok, info


_CHOICES: dict[tuple[str, str, str], EncoderChoice] = {}


def choose_encoder(tok, info: TokenizerInfo, mode: str) -> EncoderChoice:
    """``mixkit.encoders.load_encoder`` for a loaded tokenizer, the verdict kept per file content.

    The self-test takes about a second; a process that tokenizes many stores runs it once
    per tokenizer (keyed by the file's sha256, so a changed file is tested again).
    """
    key = (str(info.path.resolve()), info.sha256, mode)
    if key not in _CHOICES:
        _CHOICES[key] = load_encoder(info.path, mode, hf=HFEncoder(tok))
    elif _CHOICES[key].note:
        print(f"note: {_CHOICES[key].note}", file=sys.stderr)
    return _CHOICES[key]


def pack(id_lists: list[list[int]], eos: int | None, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """``(tokens, lengths)``: the documents' ids back to back (EOS after each) and their int64 lengths."""
    if eos is not None:
        for ids in id_lists:
            ids.append(eos)
    lengths = np.fromiter(map(len, id_lists), dtype=np.int64, count=len(id_lists))
    flat: list[int] = []
    for ids in id_lists:
        flat += ids
    return np.array(flat, dtype=dtype), lengths


_WORKER_ENCODER: FastEncoder | None = None


def _worker_start(encoder: FastEncoder) -> None:
    global _WORKER_ENCODER
    _WORKER_ENCODER = encoder


def _worker_encode(texts: list[str], eos: int | None, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    return pack(_WORKER_ENCODER.encode_batch(texts), eos, np.dtype(dtype))


def describe_source(index: int, source: Source, split: str | None = None, content_hash: bool = True) -> dict[str, Any]:
    """Identity of a source for the manifest and the resume check.

    A local file: its sha256 (with ``content_hash=False``, for a shard that reads a later
    part of a file, its size and mtime instead: hashing a large file in every shard would
    read it K times; the shard that reads its first part records the sha256). A folder: the size and mtime of each file (and the split).
    A hub dataset: id, config, split and the revision ``datasets`` resolved (no bytes are
    known before reading). An fsspec URL: size and fsspec's ``ukey`` (an ETag, an mtime).
    """
    if isinstance(source, HubDataset):
        return {"index": index, "path": str(source), **hub_identity(source, split)}
    if isinstance(source, RemoteFile):
        return {"index": index, "path": str(source), **remote_identity(source)}
    path = source.path if isinstance(source, DatasetFolder) else source
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        folder = {
            "index": index,
            "path": str(source),
            "bytes": sum(p.stat().st_size for p in files),
            "size_mtime": [[str(p.relative_to(path)), p.stat().st_size, int(p.stat().st_mtime)] for p in files],
        }
        chosen = source.split if isinstance(source, DatasetFolder) else split
        return {**folder, "split": chosen} if chosen else folder
    stat = path.stat()
    if not content_hash:
        return {"index": index, "path": str(path), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    return {"index": index, "path": str(path), "bytes": stat.st_size, "sha256": sha256_file(path)}


IDENTITY_KEYS = ("bytes", "sha256", "size_mtime", "ukey", "dataset", "config", "split", "revision", "mtime_ns")


def _identity(src: dict[str, Any]) -> dict[str, Any]:
    return {k: src[k] for k in IDENTITY_KEYS if k in src}


@dataclass
class _Batch:
    texts: list[str]
    source_of: list[int]  # source index of each text
    nbytes: int
    position: tuple[int, int]  # (source index, records consumed in it) after this batch
    skipped: Counter
    empty: int
    per_source_records: Counter
    start: tuple[int, int] = (0, 0)  # the position before this batch
    marks: list[tuple[int, int]] = field(default_factory=list)  # the position after each text
    skip_events: list[tuple[int, str]] = field(default_factory=list)  # (texts before it, reason)
    empty_events: list[int] = field(default_factory=list)  # texts before each empty record

    def first(self, k: int) -> _Batch:
        """The batch cut after its ``k``-th text (``--max-docs``/``--max-tokens``): the counts of
        records, skips and empties are those read up to that text."""
        end = self.marks[k - 1] if k else self.start
        (s0, r0), (s1, r1) = self.start, end
        records: Counter = Counter()
        for src, n in self.per_source_records.items():
            if src < s1:
                records[src] = n
            elif src == s1:
                records[src] = r1 - (r0 if src == s0 else 0)
        skipped = Counter(reason for before, reason in self.skip_events if before < k)
        empty = sum(1 for before in self.empty_events if before < k)
        nbytes = sum(len(t.encode("utf-8")) for t in self.texts[:k])
        return _Batch(self.texts[:k], self.source_of[:k], nbytes, end, skipped, empty, records, self.start, self.marks[:k])


_DONE = object()


class Tokenization:
    """One run of ``mixkit tokenize``; ``run()`` returns the finished store's manifest."""

    def __init__(self, cfg: TokenizeConfig):
        self.cfg = cfg
        self.data_dir = resolve_data_dir(cfg.data_dir)
        self.files = StoreFiles(self.data_dir / cfg.name)
        self.prefix = self.files.prefix
        all_sources = expand_sources(cfg.sources)
        self.all_sources = all_sources
        self.selected: list[SourcePart] = shard_parts(all_sources, cfg.num_shards, cfg.shard_index, cfg.lines, cfg.split)
        self.tok, self.tokinfo = load_tokenizer(cfg.tokenizer, cfg.workers)
        self.encoder_choice = choose_encoder(self.tok, self.tokinfo, cfg.encoder)
        self.encoder = self.encoder_choice.encoder
        if cfg.eos and self.tokinfo.eos_id is None:
            raise MixkitError(f"tokenizer {self.tokinfo.origin or self.tokinfo.path} has no {self.tokinfo.eos_token} token; use --no-eos")
        self.dtype = dtype_for_vocab(self.tokinfo.vocab_size)
        self.state_path = self.files.tokenize_state

    # -- identity of the job -------------------------------------------------------------------

    def job_description(self, sources: list[dict[str, Any]]) -> dict[str, Any]:
        cfg = self.cfg
        return {
            "sources": [{"path": s["path"], **_identity(s), **({"shard_part": s["shard_part"]} if "shard_part" in s else {})} for s in sources],
            "all_sources": [str(p) for p in self.all_sources],
            "text": cfg.text.describe(),
            "tokenizer": self.tokinfo.describe(),
            "eos": cfg.eos,
            "lines": cfg.lines,
            "on_error": cfg.on_error,
            "shard": [cfg.shard_index, cfg.num_shards],
            "holdout": [cfg.holdout_docs, cfg.holdout_seed],
            "split": cfg.split,
            "limit": [cfg.max_docs, cfg.max_tokens],
        }

    # -- the run ---------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        outputs = [self.files, self.files.holdout] if cfg.holdout_docs else [self.files]
        for files in outputs:
            if files.exists() and not cfg.overwrite:
                raise MixkitError(f"store '{files.name}' already exists in {self.data_dir} (use --overwrite to replace it)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.files.interrupted_temporaries():
            stale.unlink(missing_ok=True)
        sources = [describe_source(p.index, p.source, cfg.split, content_hash=p.part is None or p.part.start == 0)
                   for p in self.selected]
        for entry, p in zip(sources, self.selected):
            if p.part is not None:
                entry["shard_part"] = p.part.describe()
        job = self.job_description(sources)
        job_hash = hashlib.sha256(json.dumps(job, sort_keys=True).encode()).hexdigest()

        state = self._load_state(job_hash)
        if state is not None:
            writer = StoreWriter(self.prefix, self.dtype, resume_from=(state["bin_bytes"], state["documents"]))
            position = tuple(state["position"])
            skipped = Counter(state["skipped"])
            empty = state["empty"]
            per_source = {int(k): v for k, v in state["per_source"].items()}
        else:
            writer = StoreWriter(self.prefix, self.dtype)
            position = (0, 0)
            skipped, empty = Counter(), 0
            per_source = {s["index"]: {"documents": 0, "tokens": 0, "records": 0} for s in sources}
        resumed = state is not None

        try:
            self._pipeline(writer, position, skipped, empty, per_source, job_hash, sources)
        except MixkitError:
            # Bad input: nothing half-written is left (a fixed input is a new job anyway).
            writer.abort()
            self.state_path.unlink(missing_ok=True)
            raise
        except BaseException:
            # Interrupted: the partial files and the last checkpoint stay to resume from.
            writer.close()
            raise
        return self._finish(writer, job, sources, per_source, resumed)

    def _load_state(self, job_hash: str) -> dict[str, Any] | None:
        if not self.state_path.exists():
            return None
        try:
            state = json.loads(self.state_path.read_text())
        except (OSError, json.JSONDecodeError):
            return None
        if state.get("version") != STATE_VERSION or state.get("job") != job_hash:
            return None
        partial = self.files.bin_partial
        if not partial.exists() or partial.stat().st_size < state["bin_bytes"]:
            return None
        return state

    def _pipeline(self, writer, position, skipped, empty, per_source, job_hash, sources) -> None:
        cfg = self.cfg
        batches: queue.Queue = queue.Queue(maxsize=3)
        encoded: queue.Queue = queue.Queue(maxsize=3)
        errors: list[BaseException] = []
        stop = threading.Event()  # set by the writer: an error, or --max-docs/--max-tokens reached
        # The progress bar's total: what a shard reads of each source (or the whole source's bytes).
        sizes = [p.nbytes if p.nbytes is not None else s.get("bytes") for p, s in zip(self.selected, sources)]
        total_bytes = sum(sizes) if None not in sizes else None

        def read() -> None:
            try:
                for batch in self._batches(position, writer.num_docs):
                    while not stop.is_set():
                        try:
                            batches.put(batch, timeout=0.1)
                            break
                        except queue.Full:
                            continue
                    if stop.is_set():
                        return
            except BaseException as e:  # handed to the main thread
                errors.append(e)
            finally:
                batches.put(_DONE)

        state = {"skipped": skipped, "empty": empty, "per_source": per_source, "limit_reached": False}

        def write() -> None:
            last = time.monotonic()
            try:
                while True:
                    item = encoded.get()
                    if item is _DONE:
                        break
                    batch, (tokens, lengths) = item
                    keep = self._within_limits(writer, lengths)
                    cut = keep < len(lengths)
                    if cut:
                        batch = batch.first(keep)
                        tokens, lengths = tokens[: int(lengths[:keep].sum())], lengths[:keep]
                    if keep:
                        writer.add_packed(tokens, lengths)
                    for src, n in zip(batch.source_of, lengths.tolist()):
                        per_source[src]["documents"] += 1
                        per_source[src]["tokens"] += n
                    for src, n in batch.per_source_records.items():
                        per_source[src]["records"] += n
                    state["skipped"].update(batch.skipped)
                    state["empty"] += batch.empty
                    if cut or self._limit_reached(writer):
                        # A cut batch leaves no checkpoint: a rerun cuts it again at the same place.
                        state["limit_reached"] = True
                        bar.update(batch.nbytes)
                        stop.set()
                        while encoded.get() is not _DONE:
                            pass
                        break
                    if time.monotonic() - last >= cfg.checkpoint_seconds:
                        self._checkpoint(writer, batch.position, state, job_hash)
                        last = time.monotonic()
                    bar.update(batch.nbytes)
                    bar.set_postfix(docs=f"{writer.num_docs:,}", tokens=f"{writer.num_tokens:,}", refresh=False)
            except BaseException as e:
                errors.append(e)
                stop.set()
                # Keep the encoder from blocking on a full queue.
                while encoded.get() is not _DONE:
                    pass

        bar = tqdm(
            total=total_bytes, unit="B", unit_scale=True, desc=f"tokenize {cfg.name}",
            disable=True if cfg.quiet else None, smoothing=0.1,
        )
        reader_t = threading.Thread(target=read, name="mixkit-read", daemon=True)
        writer_t = threading.Thread(target=write, name="mixkit-write", daemon=True)
        reader_t.start()
        writer_t.start()
        eos = self.tokinfo.eos_id if cfg.eos else None
        pool, workers = self._worker_pool(total_bytes)
        in_flight: deque = deque()
        try:
            while True:
                batch = batches.get()
                if batch is _DONE or errors or stop.is_set():
                    break
                if pool is None:
                    encoded.put((batch, self._encode_packed(batch.texts, eos)))
                    continue
                in_flight.append((batch, pool.submit(_worker_encode, batch.texts, eos, self.dtype.name)))
                while len(in_flight) > 2 * workers or (in_flight and in_flight[0][1].done()):
                    done, future = in_flight.popleft()
                    encoded.put((done, future.result()))
            while in_flight and not errors and not stop.is_set():
                done, future = in_flight.popleft()
                encoded.put((done, future.result()))
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
            stop.set()
            encoded.put(_DONE)
            writer_t.join()
            # Drain so the reader can see the stop flag and exit.
            while reader_t.is_alive():
                try:
                    batches.get(timeout=0.1)
                except queue.Empty:
                    pass
            reader_t.join()
            bar.close()
        if errors:
            raise errors[0]
        self._last_state = state

    def _within_limits(self, writer: StoreWriter, lengths: np.ndarray) -> int:
        """How many of a batch's documents fit under ``--max-docs`` and ``--max-tokens``.

        The store is the longest prefix of the documents with at most ``max_docs``
        documents and at most ``max_tokens`` tokens (EOS included): whole documents only.
        """
        keep = len(lengths)
        if self.cfg.max_docs is not None:
            keep = min(keep, self.cfg.max_docs - writer.num_docs)
        if self.cfg.max_tokens is not None:
            room = self.cfg.max_tokens - writer.num_tokens
            keep = min(keep, int(np.searchsorted(np.cumsum(lengths[:keep]), room, side="right")))
        return max(keep, 0)

    def _limit_reached(self, writer: StoreWriter) -> bool:
        cfg = self.cfg
        return (cfg.max_docs is not None and writer.num_docs >= cfg.max_docs) or (
            cfg.max_tokens is not None and writer.num_tokens >= cfg.max_tokens
        )

    def _worker_pool(self, total_bytes: int | None):
        """``(pool, workers)``: encoder processes, or ``(None, 1)`` to encode here (hf, one worker, a small input)."""
        workers = self.cfg.workers or len(os.sched_getaffinity(0))
        small = total_bytes is not None and total_bytes <= self.cfg.batch_bytes
        if not isinstance(self.encoder, FastEncoder) or workers < 2 or small:
            return None, 1
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        pool = ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_start, initargs=(self.encoder,)
        )
        return pool, workers

    def _encode_packed(self, texts: list[str], eos: int | None) -> tuple[np.ndarray, np.ndarray]:
        return pack(self.encoder.encode_batch(texts), eos, self.dtype)

    def _encode(self, texts: list[str], eos: int | None) -> list[np.ndarray]:
        """One array per text (EOS appended): the packed batch cut per document."""
        tokens, lengths = self._encode_packed(texts, eos)
        return np.split(tokens, np.cumsum(lengths)[:-1]) if len(texts) else []

    def _batches(self, position: tuple[int, int], docs_before: int = 0):
        """Yield batches of document texts from ``position`` on (whole batches, in order).

        With ``--max-docs`` reading stops at the document that reaches it (``docs_before``
        documents are already in the store), so a prefix of a long stream reads no further.
        """
        cfg = self.cfg
        start_src, start_rec = position
        docs_left = None if cfg.max_docs is None else cfg.max_docs - docs_before

        def new_batch(start: tuple[int, int]) -> _Batch:
            return _Batch([], [], 0, start, Counter(), 0, Counter(), start)

        batch = new_batch(position)
        for selected in self.selected:
            src = selected.index
            if src < start_src:
                continue
            consumed = 0
            for item in read_records(selected.source, lines=cfg.lines, split=cfg.split, part=selected.part):
                consumed += 1
                if src == start_src and consumed <= start_rec:
                    continue
                batch.per_source_records[src] += 1
                if isinstance(item, BadRecord):
                    text = None
                    bad: BadRecord | None = item
                else:
                    try:
                        text = cfg.text.text(item)
                        bad = None
                    except BadRecord as e:
                        bad = e
                if bad is not None:
                    if cfg.on_error == "raise":
                        raise MixkitError(f"{bad} (use --on-error skip to skip and count such records)")
                    batch.skipped[bad.reason] += 1
                    batch.skip_events.append((len(batch.texts), bad.reason))
                elif not text.strip():
                    batch.empty += 1
                    batch.empty_events.append(len(batch.texts))
                else:
                    try:
                        size = len(text.encode("utf-8"))
                    except UnicodeEncodeError as e:
                        origin = item.origin
                        detail = f"lone surrogate U+{ord(text[e.start]):04X} at character {e.start} (not encodable as UTF-8)"
                        if cfg.on_error == "raise":
                            raise MixkitError(f"{origin}: {detail} (use --on-error skip to skip and count such records)") from None
                        batch.skipped["lone surrogate"] += 1
                        batch.skip_events.append((len(batch.texts), "lone surrogate"))
                        size = None
                    if size is not None:
                        batch.texts.append(text)
                        batch.source_of.append(src)
                        batch.marks.append((src, consumed))
                        batch.nbytes += size
                batch.position = (src, consumed)
                if docs_left is not None and len(batch.texts) >= docs_left:
                    yield batch
                    return
                if batch.nbytes >= cfg.batch_bytes:
                    yield batch
                    if docs_left is not None:
                        docs_left -= len(batch.texts)
                    batch = new_batch(batch.position)
            batch.position = (src + 1, 0)
        yield batch

    def _checkpoint(self, writer: StoreWriter, position, state, job_hash: str) -> None:
        bin_bytes, docs = writer.flush()
        atomic.write_json(
            self.state_path,
            {
                "version": STATE_VERSION,
                "job": job_hash,
                "position": list(position),
                "bin_bytes": bin_bytes,
                "documents": docs,
                "skipped": dict(state["skipped"]),
                "empty": state["empty"],
                "per_source": {str(k): v for k, v in state["per_source"].items()},
            },
        )

    def _finish(self, writer, job, sources, per_source, resumed) -> dict[str, Any]:
        cfg = self.cfg
        state = self._last_state
        for s in sources:
            s.update(per_source[s["index"]])
        manifest = {
            "tokenizer": self.tokinfo.describe(),
            "encoder": self.encoder_choice.describe(),
            "eos": {"appended": cfg.eos, "id": self.tokinfo.eos_id if cfg.eos else None, "token": self.tokinfo.eos_token if cfg.eos else None},
            "text": cfg.text.describe(),
            "lines": cfg.lines,
            "sources": sources,
            "all_sources": job["all_sources"],
            "shard": {"index": cfg.shard_index, "count": cfg.num_shards},
            "skipped": {"empty": state["empty"], **dict(sorted(state["skipped"].items()))},
            "on_error": cfg.on_error,
            "mixkit_version": __version__,
        }
        if cfg.split is not None:
            manifest["split"] = cfg.split
        if cfg.max_docs is not None or cfg.max_tokens is not None:
            manifest["limit"] = {"max_docs": cfg.max_docs, "max_tokens": cfg.max_tokens, "reached": state["limit_reached"]}
        if writer.num_docs == 0:
            writer.abort()
            self.state_path.unlink(missing_ok=True)
            if cfg.num_shards > 1 and not any(s["records"] for s in sources):
                raise MixkitError(
                    f"shard {cfg.shard_index} of {cfg.num_shards} of '{cfg.name}' holds no records "
                    f"(fewer documents than shards, or one line longer than 1/{cfg.num_shards} of the bytes): use fewer shards"
                )
            raise MixkitError(f"no documents in the sources of '{cfg.name}' (all empty or skipped: {manifest['skipped']})")
        if cfg.holdout_docs:
            manifest = finish_with_holdout(writer, manifest, cfg.holdout_docs, cfg.holdout_seed, cfg.overwrite)
        else:
            manifest = writer.finish(manifest, overwrite=cfg.overwrite)
        self.state_path.unlink(missing_ok=True)
        manifest["resumed"] = resumed
        return manifest


def tokenize(cfg: TokenizeConfig) -> dict[str, Any]:
    """Tokenize ``cfg.sources`` into the store ``cfg.name``; return its manifest."""
    return Tokenization(cfg).run()
