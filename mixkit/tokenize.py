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
back *in submission order*, so the store does not depend on the number of workers. Each
process holds one batch of texts and its ids (~``batch_bytes`` × 3), so memory is
bounded per worker. Inputs smaller than one batch are encoded in the main process
(starting processes costs more than it saves). Start-up is kept off the critical path:
the workers fork from a ``forkserver`` that imports this module in the background while
the main process loads the tokenizer (``_worker_context``), and under ``auto`` they
encode on speculation with the fast encoder while its self-test runs in a thread
(``start_auto_choice``); nothing is written before the verdict, and a refused fast
encoder means the same documents are encoded again with ``tokenizers``. At 64 cores the
one reader thread (read, decompress, parse JSON: ~100 MB/s) feeds ~60 encoders at
~2 MB/s each; beyond that, ``--num-shards`` splits the sources across independent jobs.

A checkpoint (``NAME.tokenize-state.json``) records the position in the sources
(source index, records consumed) and the durable length of the partial files. A run
killed at any moment and started again with the same command (or with ``--overwrite``)
resumes there; because encoding is a pure function of the text and batches never change
what is written, the result is byte-identical to an uninterrupted run, whatever
``--workers``. When every document is written the checkpoint says so (``"phase":
"finish"``) before anything is published, so a run killed while publishing (or while
splitting off ``--holdout-docs``, see ``mixkit.holdout``) is finished by the rerun
without reading the sources again. A checkpoint that does not match the partial files
is ignored and the job starts over; leftovers of a killed run that cannot be resumed are
removed, and a run that fails on bad input leaves nothing. A run whose store is already in
place, built from the same job (the manifest's ``job_sha256``: options, tokenizer and each
source's bytes, see ``job_sha256``), has nothing to do and says so; any difference keeps the
store and asks for ``--overwrite``.

One process writes a store at a time: the run holds the write lock of ``NAME`` (and of
``NAME-holdout``) from start to end (``mixkit.locks``); a second one is refused at once.

Provenance: a local file's sha256 and size in the manifest are those of the bytes the
readers actually took from it (``mixkit.readers.SourceDigest``), not of a separate pass;
its size and modification time are compared before and after reading, and a source that
changed while it was read is an error, with nothing published.

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
import stat
import sys
import threading
import time
from collections import Counter, deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
from tokenizers import Tokenizer
from tqdm import tqdm

from mixkit import __version__, atomic, encoders, locks
from mixkit.config import invalid
from mixkit.encoders import ENCODERS, EncoderChoice, FastEncoder, HFEncoder, Unsupported, load_encoder, settle_choice
from mixkit.error_lines import exception_detail
from mixkit.errors import MixkitError
from mixkit.holdout import check_holdout_count, finish_with_holdout, split_and_publish
from mixkit.names import check_new_name
from mixkit.presets import TextSpec
from mixkit.readers import (
    BadRecord,
    DatasetFolder,
    HubDataset,
    RemoteFile,
    Source,
    SourceDigest,
    digests_reads,
    expand_sources,
    hub_identity,
    read_records,
    remote_identity,
)
from mixkit.sharding import SourcePart, shard_parts
from mixkit.store import (
    DetachedOutput,
    StoreFiles,
    StoreWriter,
    TokenStore,
    dtype_for_vocab,
    resolve_data_dir,
    sha256_file,
)
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
        raise MixkitError(f"cannot read tokenizer {path}: {exception_detail(e)}") from None
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


def start_auto_choice(tok, info: TokenizerInfo) -> tuple[FastEncoder, Future] | None:
    """``auto``'s choice without waiting for it: the fast encoder now, and the choice itself
    (an ``EncoderChoice``) as a future while the self-test runs in a thread.

    Why: the self-test is most of a second of start-up on one core, while the encoder
    processes could already be encoding. ``Tokenization`` encodes on speculation with the
    fast encoder and waits for the verdict before it writes anything; if the fast encoder
    is refused, the speculative work is dropped and the run goes on with ``tokenizers``
    from where it started. None when the choice is already known in this process (see
    ``choose_encoder``) or the tokenizer file is not one the fast encoder supports (then
    ``choose_encoder`` decides at once).
    """
    key = (str(info.path.resolve()), info.sha256, "auto")
    if key in _CHOICES:
        return None
    hf = HFEncoder(tok)
    try:
        fast = FastEncoder.from_file(info.path)
    except Unsupported:
        return None
    verdict: Future = Future()

    def decide() -> None:
        try:
            choice = settle_choice(info.path, "auto", hf, fast, encoders.self_test(fast, hf))
            _CHOICES[key] = choice
            verdict.set_result(choice)
        except BaseException as e:  # handed to whoever waits for the verdict
            verdict.set_exception(e)

    threading.Thread(target=decide, name="mixkit-self-test", daemon=True).start()
    return fast, verdict


def _workers(cfg: TokenizeConfig) -> int:
    """Encoder processes a run uses: ``--workers``, else every core this process may run on."""
    return cfg.workers or len(os.sched_getaffinity(0))


class _EncoderRefused(Exception):
    """The fast encoder used on speculation was refused by its self-test: encode again."""


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


def _worker_context():
    """How encoder processes start: forked from a server that has imported this module.

    A ``spawn``-ed process pays the interpreter start and the imports (~0.35 s of CPU
    each) before it encodes anything; with ``forkserver`` the server pays them once, in
    the background while the main process loads and self-tests the encoder
    (``_start_worker_server``), and each worker is a fork of it that only unpickles the
    encoder. Never a plain ``fork`` of this process: it has threads (reader, writer,
    ``tokenizers``' pool). Where there is no ``forkserver`` (Windows), ``spawn``.
    """
    import multiprocessing

    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return context


def _start_worker_server() -> None:
    """Start the ``forkserver`` (a no-op where there is none or it already runs)."""
    context = _worker_context()
    if context.get_start_method() == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()


def _worker_start(encoder: FastEncoder) -> None:
    global _WORKER_ENCODER
    _WORKER_ENCODER = encoder


def _worker_encode(texts: list[str], eos: int | None, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    return pack(_WORKER_ENCODER.encode_batch(texts), eos, np.dtype(dtype))


def describe_source(index: int, source: Source, split: str | None = None) -> dict[str, Any]:
    """Identity of a source for the manifest and the resume check.

    A local file: its sha256 (a run takes it from the bytes it reads instead, see ``source_entry``).
    A folder: the size and mtime of each file (and the split).
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
    return {"index": index, "path": str(path), "bytes": path.stat().st_size, "sha256": sha256_file(path)}


IDENTITY_KEYS = ("bytes", "sha256", "size_mtime", "ukey", "dataset", "config", "split", "revision", "mtime_ns")
# What identifies a source: for resuming a job, a local file by size and modification time (its
# sha256 is known only once it has been read); in a manifest, by its sha256, except in a shard
# that read a later part of it (size and modification time, see ``Tokenization._read_digest``).


def _identity(src: dict[str, Any]) -> dict[str, Any]:
    """A source entry as a job names it: its path, its identity keys and, in a shard, which part."""
    return {"path": src["path"], **{k: src[k] for k in IDENTITY_KEYS if k in src},
            **({"shard_part": src["shard_part"]} if "shard_part" in src else {})}


def job_sha256(job: dict[str, Any], sources: list[dict[str, Any]]) -> str:
    """The manifest's ``job_sha256``: sha256 of the canonical JSON of the job description with
    each source named by its identity as the manifest records it (a local file by the sha256
    and size of its bytes, a later shard part of one by size and modification time, other
    sources as ``describe_source`` gives them). A rerun recomputes it from the sources as they
    are now (``Tokenization._already_built``): equal means the same bytes would be tokenized
    with the same options, so the store in place is the one the run would write."""
    return hashlib.sha256(json.dumps({**job, "sources": [_identity(s) for s in sources]}, sort_keys=True).encode()).hexdigest()


def source_entry(index: int, source: Source, split: str | None = None) -> dict[str, Any]:
    """``describe_source`` without reading the file: a local file is its size and modification
    time here; its sha256 is taken while it is tokenized (module docstring)."""
    if isinstance(source, Path) and not source.is_dir():
        st = source.stat()
        if not stat.S_ISREG(st.st_mode):
            return {"index": index, "path": str(source)}  # a pipe: its bytes are counted as they are read
        return {"index": index, "path": str(source), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}
    return describe_source(index, source, split)


def source_changed(entry: dict[str, Any], source: Source, split: str | None) -> str | None:
    """How ``source`` differs now from its ``source_entry`` taken before reading (None: unchanged)."""
    if isinstance(source, (HubDataset, RemoteFile)):
        return None
    now = source_entry(entry["index"], source, split)
    if isinstance(source, Path) and not source.is_dir():
        if "mtime_ns" not in entry or (now.get("bytes"), now.get("mtime_ns")) == (entry["bytes"], entry["mtime_ns"]):
            return None
        return f"size {entry['bytes']} -> {now['bytes']} bytes" if now["bytes"] != entry["bytes"] else "modified in place"
    return None if now.get("size_mtime") == entry.get("size_mtime") else "its files changed"


def _changed_error(path: str, how: str) -> MixkitError:
    return MixkitError(f"{path}: changed while it was read ({how}); nothing was published, run again once the source is final")


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
    digests: dict[int, dict[str, Any]] = field(default_factory=dict)  # {"sha256", "bytes"} of each source read to its end here

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
        if cfg.encoder != "hf" and _workers(cfg) >= 2:
            _start_worker_server()  # imports in the background while the encoder is loaded and self-tested
        self.tok, self.tokinfo = load_tokenizer(cfg.tokenizer, cfg.workers)
        self._verdict: Future | None = None  # the automatic choice, while the encoder in use is a speculation
        speculation = start_auto_choice(self.tok, self.tokinfo) if cfg.encoder == "auto" and _workers(cfg) >= 2 else None
        if speculation is not None:
            self.encoder, self._verdict = speculation
            self.encoder_choice: EncoderChoice | None = None
        else:
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
            "sources": [_identity(s) for s in sources],
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
        with locks.write_locks([(f.lock, f"store '{f.name}'") for f in outputs]):
            return self._run_locked(outputs)

    def _already_built(self, outputs: list[StoreFiles], job: dict[str, Any], sources: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The manifest of ``NAME`` when every output is in place, records this very job
        (``job_sha256``, the local sources hashed again now: identity by bytes, not by mtime)
        and opens checked; else None. Without ``--overwrite`` such a rerun has nothing to do."""
        if self.cfg.overwrite or not all(f.exists() for f in outputs):
            return None
        found = [f.published_manifest() for f in outputs]
        if not all(m and isinstance(m.get("job_sha256"), str) for m in found):
            return None  # written before stores recorded their job: only --overwrite replaces it
        now = []
        for entry, selected in zip(sources, self.selected):
            entry = dict(entry)
            if "mtime_ns" in entry and (selected.part is None or selected.part.start == 0):
                # a regular local file the run would hash whole (module docstring: provenance)
                del entry["mtime_ns"]
                entry["sha256"] = sha256_file(selected.source)
            now.append(entry)
        expected = job_sha256(job, now)
        if any(m["job_sha256"] != expected for m in found):
            return None
        if len(found) == 2 and found[0].get("holdout_fingerprint") != found[1].get("fingerprint"):
            return None  # NAME and NAME-holdout are not the two halves of one split
        try:
            for f in outputs:
                TokenStore.open(f.name, self.data_dir)
        except MixkitError:
            return None
        return {**found[0], "already_built": True}

    def _refuse_existing(self, outputs: list[StoreFiles]) -> None:
        for files in outputs:
            if files.exists() and not self.cfg.overwrite:
                raise MixkitError(f"store '{files.name}' already exists in {self.data_dir} (use --overwrite to replace it)")

    def _run_locked(self, outputs: list[StoreFiles]) -> dict[str, Any]:
        cfg = self.cfg
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for files in outputs:
            locks.remove_orphans(self.data_dir, files.name)
        sources = [source_entry(p.index, p.source, cfg.split) for p in self.selected]
        for entry, p in zip(sources, self.selected):
            if p.part is not None:
                entry["shard_part"] = p.part.describe()
        self._entries = sources
        job = self.job_description(sources)
        job_hash = hashlib.sha256(json.dumps(job, sort_keys=True).encode()).hexdigest()
        state = self._load_state(job_hash)
        if state is not None and state.get("phase") == "finish":
            # The killed run had written every document and may have published some outputs.
            try:
                manifest = self._finish_again(state, job, sources)
            except MixkitError:
                self._remove_leftovers(outputs)
                raise
            if manifest is not None:
                return manifest
            state = None
        if state is None:
            self._remove_leftovers(outputs)
        built = self._already_built(outputs, job, sources)
        if built is not None:
            self._remove_leftovers(outputs)  # a checkpoint of this job would only write the same bytes again
            return built
        self._refuse_existing(outputs)  # a resumable checkpoint stays for a rerun with --overwrite
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
            try:
                self._pipeline(writer, position, skipped, empty, per_source, job_hash, sources)
            except _EncoderRefused:
                # Nothing was written: the same documents again, with the encoder chosen.
                self._pipeline(writer, position, skipped, empty, per_source, job_hash, sources)
            return self._finish(writer, job, sources, per_source, resumed, job_hash)
        except MixkitError:
            # Bad input: nothing half-written is left (a fixed input is a new job anyway).
            writer.abort()
            self._remove_leftovers(outputs)
            raise
        except BaseException:
            # Interrupted: the partial files and the last checkpoint stay to resume from.
            writer.close()
            raise

    def _remove_leftovers(self, outputs: list[StoreFiles]) -> None:
        """Remove what a run of these outputs keeps while it works (partial files, the checkpoint,
        temporaries): called holding their locks, when none of it can be resumed."""
        for files in outputs:
            for path in files.partials():
                path.unlink(missing_ok=True)
            locks.remove_orphans(self.data_dir, files.name)
        self.state_path.unlink(missing_ok=True)

    def _load_state(self, job_hash: str) -> dict[str, Any] | None:
        """The checkpoint of this job when the partial files still hold what it says, else None."""
        if not self.state_path.exists():
            return None
        try:
            state = json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION or state.get("job") != job_hash:
            return None
        if state.get("phase") == "finish":
            return state  # _finish_again sees what is left
        if not self._partial_holds(self.files.bin_partial, self.files.lengths_partial, state, exact=False):
            return None
        return state

    def _partial_holds(self, bin_path: Path, lengths_path: Path, state: dict[str, Any], exact: bool) -> bool:
        """Whether ``bin_path``/``lengths_path`` begin with (``exact``: are) the checkpoint's documents."""
        try:
            nbytes, ndocs = int(state["bin_bytes"]), int(state["documents"])
            bin_size, lengths_size = bin_path.stat().st_size, lengths_path.stat().st_size
        except (OSError, KeyError, TypeError, ValueError):
            return False
        if bin_size < nbytes or lengths_size < 4 * ndocs or (exact and (bin_size, lengths_size) != (nbytes, 4 * ndocs)):
            return False
        lengths = np.fromfile(lengths_path, dtype="<i4", count=ndocs).astype(np.int64)
        return int(lengths.sum()) * self.dtype.itemsize == nbytes

    def _finish_again(self, state: dict[str, Any], job: dict[str, Any], sources: list[dict[str, Any]]) -> dict[str, Any] | None:
        """Finish the publishing a killed run of this job had begun (its checkpoint says every
        document was written); None when what it left cannot be finished (then start over)."""
        cfg = self.cfg
        files = self.files
        per_source = {int(k): v for k, v in state["per_source"].items()}
        self._last_state = {"skipped": Counter(state["skipped"]), "empty": state["empty"], "per_source": per_source,
                            "limit_reached": state.get("limit_reached", False)}
        manifest = self._manifest(job, sources, per_source)
        if cfg.holdout_docs and self._partial_holds(files.detached_bin, files.detached_lengths, state, exact=True):
            full = DetachedOutput(files.detached_bin, files.detached_lengths, self.dtype)
            published = split_and_publish(full, files, self.dtype, manifest, cfg.holdout_docs, cfg.holdout_seed, cfg.overwrite)
        elif self._partial_holds(files.bin_partial, files.lengths_partial, state, exact=True):
            writer = StoreWriter(self.prefix, self.dtype, resume_from=(state["bin_bytes"], state["documents"]))
            if cfg.holdout_docs:
                published = finish_with_holdout(writer, manifest, cfg.holdout_docs, cfg.holdout_seed, cfg.overwrite)
            else:
                published = self._publish(writer, manifest)
        else:
            # Nothing left to publish: finished if the outputs in place are the ones this job wrote.
            found = [f.published_manifest() for f in ([files, files.holdout] if cfg.holdout_docs else [files])]
            if not all(m and m.get("sources") == manifest["sources"] and m.get("documents") is not None for m in found):
                return None
            if not cfg.holdout_docs and found[0]["bin_bytes"] != state["bin_bytes"]:
                return None
            published = found[0]
        for path in files.partials() + files.holdout.partials():
            path.unlink(missing_ok=True)
        self.state_path.unlink(missing_ok=True)
        published["resumed"] = True
        return published

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
                    for src, digest in batch.digests.items():
                        per_source[src].update(digest)
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

        def hand_over(batch: _Batch, future) -> None:
            # Nothing reaches the writer before the encoder is settled (start_auto_choice).
            if not self._settle():
                raise _EncoderRefused
            encoded.put((batch, future.result()))

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
                    hand_over(*in_flight.popleft())
            while in_flight and not errors and not stop.is_set():
                hand_over(*in_flight.popleft())
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
        for entry, selected in zip(sources, self.selected):
            how = source_changed(entry, selected.source, cfg.split)
            if how is not None:
                raise _changed_error(entry["path"], how)
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
        workers = _workers(self.cfg)
        small = total_bytes is not None and total_bytes <= self.cfg.batch_bytes
        if not isinstance(self.encoder, FastEncoder) or workers < 2 or small:
            self._settle()  # encoded here, one batch at a time: no speculation
            return None, 1
        from concurrent.futures import ProcessPoolExecutor

        pool = ProcessPoolExecutor(workers, mp_context=_worker_context(), initializer=_worker_start, initargs=(self.encoder,))
        return pool, workers

    def _settle(self) -> bool:
        """Wait for a pending automatic choice and switch to it; False when it is not the
        encoder that was in use (the speculation failed), True otherwise."""
        if self._verdict is None:
            return True
        choice = self._verdict.result()
        self._verdict = None
        self.encoder_choice = choice
        kept = choice.encoder is self.encoder
        self.encoder = choice.encoder
        return kept

    def _encode_packed(self, texts: list[str], eos: int | None) -> tuple[np.ndarray, np.ndarray]:
        self._settle()
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
        entries = {e["index"]: e for e in self._entries}
        for selected in self.selected:
            src = selected.index
            if src < start_src:
                continue
            consumed = 0
            # a whole local file is hashed as it is read; a shard's part of one is not (see _read_digest)
            digest = SourceDigest() if selected.part is None and digests_reads(selected.source) else None
            for item in read_records(selected.source, lines=cfg.lines, split=cfg.split, part=selected.part, digest=digest):
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
            read = self._read_digest(entries[src], selected, digest)
            if read is not None:
                batch.digests[src] = read
            batch.position = (src + 1, 0)
        yield batch

    def _read_digest(self, entry: dict[str, Any], selected: SourcePart, digest: SourceDigest | None) -> dict[str, Any] | None:
        """``{"sha256", "bytes"}`` of a local file just read to its end, checked against its size and
        modification time before reading; None for other sources. Parquet files, read out of order
        by row group, are hashed after reading (the unchanged size and time vouch for the same bytes).

        A shard's part of a file: the shard that reads its first part hashes the whole file (the
        identity ``mixkit merge`` keeps); later parts keep size and modification time, so a file is
        not read once per shard (see ``mixkit.sharding``)."""
        source = selected.source
        if not isinstance(source, Path) or source.is_dir():
            return None
        how = source_changed(entry, source, self.cfg.split)
        if digest is not None and "bytes" in entry and digest.bytes != entry["bytes"]:
            how = f"{entry['bytes']} bytes before reading, {digest.bytes} read"
        if how is not None:
            raise _changed_error(entry["path"], how)
        if digest is not None:
            return {"sha256": digest.hexdigest(), "bytes": digest.bytes}
        if selected.part is not None and selected.part.start > 0:
            return None
        return {"sha256": sha256_file(source), "bytes": entry.get("bytes", source.stat().st_size)}

    def _checkpoint(self, writer: StoreWriter, position, state, job_hash: str, phase: str = "tokenize") -> None:
        """Make the partial files durable and record where they end: ``phase`` "tokenize" (resume
        reading at ``position``) or "finish" (every document written; publishing may have begun)."""
        bin_bytes, docs = writer.flush()
        atomic.write_json(
            self.state_path,
            {
                "version": STATE_VERSION,
                "job": job_hash,
                "phase": phase,
                "position": list(position),
                "bin_bytes": bin_bytes,
                "documents": docs,
                "skipped": dict(state["skipped"]),
                "empty": state["empty"],
                "per_source": {str(k): v for k, v in state["per_source"].items()},
                "limit_reached": bool(state.get("limit_reached", False)),
            },
        )

    def _manifest(self, job: dict[str, Any], sources: list[dict[str, Any]], per_source: dict[int, Any]) -> dict[str, Any]:
        """The store's manifest (without what ``StoreWriter.finish`` adds) from the run's tallies."""
        self._settle()  # which encoder ran: known before anything was written, unless nothing was
        cfg = self.cfg
        state = self._last_state
        entries = []
        for s, selected in zip(sources, self.selected):
            read = per_source[s["index"]]
            if "sha256" not in read and state.get("limit_reached"):
                # --max-docs/--max-tokens stopped before this file's end (or before it): its identity is
                # still the whole file's, hashed now (unchanged since reading, by size and time)
                read = {**read, **(self._read_digest(s, selected, None) or {})}
            # size and time were the identity while reading; a file read (or whose first part was) has its sha256
            entry = {k: v for k, v in s.items() if k != "mtime_ns" or "sha256" not in read}
            entry.update(read)
            entries.append(entry)
        manifest = {
            "tokenizer": self.tokinfo.describe(),
            "encoder": self.encoder_choice.describe(),
            "eos": {"appended": cfg.eos, "id": self.tokinfo.eos_id if cfg.eos else None, "token": self.tokinfo.eos_token if cfg.eos else None},
            "text": cfg.text.describe(),
            "lines": cfg.lines,
            "sources": entries,
            "all_sources": job["all_sources"],
            "shard": {"index": cfg.shard_index, "count": cfg.num_shards},
            "skipped": {"empty": state["empty"], **dict(sorted(state["skipped"].items()))},
            "on_error": cfg.on_error,
            "job_sha256": job_sha256(job, entries),
            "mixkit_version": __version__,
        }
        if cfg.split is not None:
            manifest["split"] = cfg.split
        if cfg.max_docs is not None or cfg.max_tokens is not None:
            manifest["limit"] = {"max_docs": cfg.max_docs, "max_tokens": cfg.max_tokens, "reached": state["limit_reached"]}
        return manifest

    def _publish(self, writer: StoreWriter, manifest: dict[str, Any]) -> dict[str, Any]:
        """``writer.finish``; a store already in place with the same content (an interrupted run of
        this job published it) is replaced by the same bytes rather than refused."""
        files = writer.files
        overwrite = self.cfg.overwrite
        if not overwrite and files.exists() and writer.matches_published():
            overwrite = True
        return writer.finish(manifest, overwrite=overwrite)

    def _finish(self, writer, job, sources, per_source, resumed, job_hash: str) -> dict[str, Any]:
        cfg = self.cfg
        state = self._last_state
        manifest = self._manifest(job, sources, per_source)
        if writer.num_docs == 0:
            if cfg.num_shards > 1 and not any(s.get("records") for s in manifest["sources"]):
                raise MixkitError(
                    f"shard {cfg.shard_index} of {cfg.num_shards} of '{cfg.name}' holds no records "
                    f"(fewer documents than shards, or one line longer than 1/{cfg.num_shards} of the bytes): use fewer shards"
                )
            raise MixkitError(f"no documents in the sources of '{cfg.name}' (all empty or skipped: {manifest['skipped']})")
        if cfg.holdout_docs:
            check_holdout_count(writer.num_docs, cfg.holdout_docs)
        self._checkpoint(writer, (len(self.all_sources), 0), state, job_hash, phase="finish")
        if cfg.holdout_docs:
            manifest = finish_with_holdout(writer, manifest, cfg.holdout_docs, cfg.holdout_seed, cfg.overwrite)
        else:
            manifest = self._publish(writer, manifest)
        for path in self.files.partials() + self.files.holdout.partials():
            path.unlink(missing_ok=True)
        self.state_path.unlink(missing_ok=True)
        manifest["resumed"] = resumed
        return manifest


def tokenize(cfg: TokenizeConfig) -> dict[str, Any]:
    """Tokenize ``cfg.sources`` into the store ``cfg.name``; return its manifest."""
    return Tokenization(cfg).run()
