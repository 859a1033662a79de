"""``mixkit train-tokenizer``: a small byte-level BPE trained on the corpora it will encode.

Why: with GPT-NeoX's 50k vocabulary the output layer dominates the compute of a model
small enough for a CPU (d_model 128, 4 layers: 12.9 M parameters in the input embedding
and the output head against 0.8 M in the layers), so an hour of CPU gives each run too
few tokens to learn much more than token frequencies. A 4–8 k vocabulary trained on the
pretraining corpus makes the same hour worth five to ten times the tokens.

The tokenizer is built like GPT-NeoX-20B's, only smaller:

    normalizer      NFC
    pre-tokenizer   ByteLevel (GPT-2's split regex, add_prefix_space=False), bytes → 256 symbols
    model           BPE learned by ``tokenizers``' ``BpeTrainer``, initial alphabet = all 256 bytes
    decoder         ByteLevel (inverse of the byte → symbol map)
    ids             0 = ``<|endoftext|>``, 1.. = extra special tokens in the order given,
                    then the 256 byte symbols (sorted by code point), then the merges in order

Every byte is in the vocabulary, so any text encodes without an unknown token, and
``decode(encode(text)) == NFC(text)``.

Documents come from the same readers and presets as ``mixkit tokenize`` (``TextSpec``),
streamed into ``Tokenizer.train_from_iterator``: memory holds the trainer's word counts
(one entry per distinct pre-token) and one batch of documents, not the corpus.

``max_docs``: a uniform random sample of that many documents, without replacement,
drawn with ``numpy.random.default_rng(seed)`` from the documents the sources hold (a
first pass counts them; the second feeds the chosen ones in corpus order). Not a
prefix, so a source list sorted by dataset is sampled evenly. Fewer documents than
``max_docs`` means all of them.

Deterministic: the trainer picks each merge by (pair count, then the smaller pair of
ids); the counts are sums, so they do not depend on the order or the threads that
counted them, and every id is assigned in a fixed order (specials as given, the byte
alphabet sorted by code point, merges in the order made). The one known source of
run-to-run differences in ``BpeTrainer``, ids of continuing-subword tokens assigned
while iterating a hash map, does not arise: this BPE has no continuing-subword prefix.
The JSON lists the vocabulary by id. The same sources, options and seed give a
byte-identical file, with one thread or several (tested).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mixkit import atomic
from mixkit.errors import MixkitError
from mixkit.presets import TextSpec
from mixkit.readers import BadRecord, expand_sources, read_records
from mixkit.store import sha256_file

EOS_TOKEN = "<|endoftext|>"
BYTE_ALPHABET_SIZE = 256


@dataclass
class TrainedTokenizer:
    """What ``train_tokenizer`` wrote: the file, its identity, and what it was trained on."""

    path: Path
    sha256: str
    vocab_size: int  # as trained: below the requested size when the corpus runs out of pairs
    requested_vocab_size: int
    special_tokens: list[str]
    documents: int  # documents the BPE was trained on
    bytes: int  # their UTF-8 bytes
    skipped: dict[str, int] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {
            "file": self.path.name, "sha256": self.sha256, "vocab_size": self.vocab_size,
            "requested_vocab_size": self.requested_vocab_size, "special_tokens": self.special_tokens,
            "documents": self.documents, "bytes": self.bytes,
        }


def _special_tokens(extra: Sequence[str]) -> list[str]:
    """``<|endoftext|>`` first (id 0), then the extra tokens in order, without repeats."""
    tokens = [EOS_TOKEN]
    for tok in extra:
        if not isinstance(tok, str) or not tok:
            raise MixkitError(f"special tokens must be non-empty strings, got {tok!r}")
        if tok not in tokens:
            tokens.append(tok)
    return tokens


def _check_writable(out: Path, overwrite: bool) -> None:
    """Fail before training (which may take long) when ``out`` cannot be written."""
    if out.is_dir():
        raise MixkitError(f"--out {out} is a directory; give a file name such as {out / 'tokenizer.json'}")
    if out.exists() and not overwrite:
        raise MixkitError(f"--out {out} already exists (use --overwrite to replace it)")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        probe = out.parent / f".{out.name}.probe.tmp"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise MixkitError(f"--out {out}: cannot write there ({e.strerror or e})") from None


class _Documents:
    """The documents of the sources, as ``mixkit tokenize`` sees them, counting what it skips."""

    def __init__(self, sources: Sequence[str], text: TextSpec, lines: bool, on_error: str):
        if on_error not in ("raise", "skip"):
            raise MixkitError(f"on_error: expected 'raise' or 'skip', got {on_error!r}")
        self.paths = expand_sources(list(sources))
        self.text = text
        self.lines = lines
        self.on_error = on_error

    def __iter__(self) -> Iterator[str]:
        """Non-empty document texts in corpus order; sets ``self.skipped`` when exhausted."""
        skipped: Counter = Counter()
        for path in self.paths:
            for item in read_records(path, lines=self.lines):
                try:
                    if isinstance(item, BadRecord):
                        raise item
                    doc = self.text.text(item)
                except BadRecord as bad:
                    if self.on_error == "raise":
                        raise MixkitError(f"{bad} (use --on-error skip to skip and count such records)") from None
                    skipped[bad.reason] += 1
                    continue
                if not doc.strip():
                    skipped["empty"] += 1
                    continue
                yield doc
        self.skipped = dict(sorted(skipped.items()))


def _sample(docs: _Documents, max_docs: int | None, seed: int) -> Iterator[str]:
    """All documents, or ``max_docs`` of them drawn uniformly without replacement (two passes)."""
    if max_docs is None:
        yield from docs
        return
    total = sum(1 for _ in docs)
    if total <= max_docs:
        yield from docs
        return
    chosen = np.sort(np.random.default_rng(seed).choice(total, size=max_docs, replace=False))
    next_pick = 0
    for i, doc in enumerate(docs):
        if i == chosen[next_pick]:
            yield doc
            next_pick += 1
            if next_pick == max_docs:
                return


def build_tokenizer():
    """An untrained byte-level BPE tokenizer with GPT-NeoX's normalizer, pre-tokenizer and decoder."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=True)
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=True)
    return tok


def train_tokenizer(
    sources: Sequence[str],
    vocab_size: int,
    out: str | os.PathLike,
    text: TextSpec | None = None,
    *,
    max_docs: int | None = None,
    seed: int = 0,
    special_tokens: Sequence[str] = (),
    lines: bool = False,
    on_error: str = "raise",
    overwrite: bool = False,
) -> TrainedTokenizer:
    """Train a byte-level BPE of ``vocab_size`` tokens on ``sources`` and write it to ``out``.

    ``vocab_size`` counts everything: the special tokens (``<|endoftext|>`` = id 0 plus
    ``special_tokens``), the 256 byte symbols and the merges, so it must be at least
    ``256 + len(specials)``. A corpus with fewer distinct pairs than merges asked for
    gives a smaller vocabulary (``TrainedTokenizer.vocab_size`` says which). ``text``,
    ``lines`` and ``on_error`` mean what they mean for ``mixkit tokenize``; ``max_docs``
    and ``seed`` sample documents (see the module docstring). The file is written
    atomically; an existing ``out`` is replaced only with ``overwrite``.
    """
    from tokenizers import pre_tokenizers, trainers

    text = text if text is not None else TextSpec()
    specials = _special_tokens(special_tokens)
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int):
        raise MixkitError(f"vocab size must be an integer, got {vocab_size!r}")
    smallest = BYTE_ALPHABET_SIZE + len(specials)
    if vocab_size < smallest:
        raise MixkitError(
            f"vocab size {vocab_size} is below the {BYTE_ALPHABET_SIZE} byte symbols + {len(specials)} special "
            f"token{'s' if len(specials) > 1 else ''}: use at least {smallest}"
        )
    if max_docs is not None and (isinstance(max_docs, bool) or not isinstance(max_docs, int) or max_docs < 1):
        raise MixkitError(f"max docs must be a positive integer, got {max_docs!r}")
    out = Path(out)
    _check_writable(out, overwrite)
    docs = _Documents(sources, text, lines, on_error)

    counted = {"documents": 0, "bytes": 0}

    def feed() -> Iterator[str]:
        for doc in _sample(docs, max_docs, seed):
            counted["documents"] += 1
            counted["bytes"] += len(doc.encode("utf-8", "surrogatepass"))
            yield doc

    tok = build_tokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # A reader's MixkitError raised inside ``feed`` comes out of the Rust trainer as itself.
    tok.train_from_iterator(feed(), trainer=trainer)
    if counted["documents"] == 0:
        where = ", ".join(str(p) for p in docs.paths)
        raise MixkitError(f"no documents to train a tokenizer on in {where} (all empty or skipped: {getattr(docs, 'skipped', {})})")
    if tok.token_to_id(EOS_TOKEN) != 0:  # a guard on the layout above, not a user error
        raise AssertionError(f"{EOS_TOKEN} got id {tok.token_to_id(EOS_TOKEN)}, expected 0")
    try:
        atomic.write_text(out, tok.to_str(pretty=True))
    except OSError as e:
        raise MixkitError(f"--out {out}: cannot write there ({e.strerror or e})") from None
    return TrainedTokenizer(
        path=out, sha256=sha256_file(out), vocab_size=tok.get_vocab_size(), requested_vocab_size=vocab_size,
        special_tokens=specials, documents=counted["documents"], bytes=counted["bytes"],
        skipped=getattr(docs, "skipped", {}),
    )
