"""Text → token ids: the Hugging Face ``tokenizers`` encoder and a faster one with the same ids.

``mixkit tokenize`` spends almost all its time here, so there are two encoders behind
one interface (``encode_batch(texts) -> list[list[int]]``, special-token strings in the
text encoded as plain text, nothing added before or after):

``HFEncoder``
    ``tokenizers``' ``Tokenizer.encode_batch_fast``: the reference, and the encoder for
    any tokenizer.

``FastEncoder``
    The same pipeline that ``tokenizers`` runs for a byte-level BPE tokenizer, rebuilt
    from the tokenizer file, with the BPE itself done by ``tiktoken``::

        text ──NFC──▶ split on the added tokens ──▶ GPT-2 split regex ──▶ byte-level BPE
                      (longest first, before          (tiktoken, the GIL released)
                       pre-tokenization)

    ``tokenizers`` applies the normalizer to the text, then cuts out the *normalized*
    added tokens (GPT-NeoX-20B has 23 of them, the runs of 2–24 spaces: leftmost,
    longest match first) and only then pre-tokenizes and merges what lies between them.
    ``FastEncoder`` does the same (NFC: see ``tokenizers_nfc``) and one regex of
    the added tokens sorted longest first (at a given start a regex alternation takes
    the first alternative that matches, so longest first is leftmost-longest). BPE
    ranks are the vocabulary's byte strings (each entry mapped back through GPT-2's
    byte↔unicode table) with rank = token id. ``tiktoken`` merges the adjacent pair whose
    concatenation has the lowest rank while ``tokenizers`` merges the pair with the
    lowest merge index; the two agree when the merge results' ids increase with the
    merge index (checked at load) and on every text the self-test and the parity tests
    try, which is what ``load_encoder`` demands before it uses it.

Choosing (``load_encoder(path, "auto")``): ``FastEncoder.from_file`` refuses any
pipeline it does not reproduce (``Unsupported``: not byte-level BPE, another normalizer
or pre-tokenizer, a post-processor that is not ``ByteLevel``, truncation or padding set,
an added token with ``lstrip``/``rstrip``/``single_word``), and ``self_test`` encodes a
built-in probe set with both encoders (whitespace runs of every length, every added and
special token, mixed scripts, emoji, combining marks, digits, code, most of the Basic
Multilingual Plane in letter/digit/space contexts, and texts with lone surrogates, which
both must refuse). Any difference and ``tokenizers`` is used, with a one-line note.

Long documents are encoded in pieces (``encoding_pieces``): a text of more than
``MAX_PIECE_CHARS`` characters is cut where the pipeline cuts anyway, so its ids equal
those of the whole text while the encoder's working memory stays that of one piece
(one 47 MB document encoded whole peaked at 4.5 GB). The cut is before a single space that follows a
non-space character and precedes an ASCII letter: GPT-2's pattern starts a pre-token
there (`` ?\\p{L}+``) and ends the previous one, NFC never composes across a space, and
no BPE merge crosses a pre-token. It is used only where that holds: a byte-level
pipeline ``FastEncoder`` reproduces (``fast_spec``) whose added tokens are all
whitespace or hold no space (GPT-NeoX-20B's space runs qualify); other tokenizers
encode long texts whole.

Lone surrogates (``"\\ud800"`` from a JSON escape) cannot be encoded as UTF-8: both
encoders raise ``MixkitError`` for them (``tokenize`` skips or reports such records first).
"""

from __future__ import annotations

import json
import os
import re
import sys
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mixkit.error_lines import exception_detail
from mixkit.errors import MixkitError

ENCODERS = ("auto", "fast", "hf")


def tokenizers_nfc(text: str) -> str:
    """NFC as ``tokenizers`` computes it (its own normalizer, its own Unicode tables).

    Python's ``unicodedata`` may know a newer Unicode: a character the other tables lack is a
    starter there, never reordered, while Python sorts it among the combining marks
    (U+0300 U+07FD: Python puts U+07FD, class 220, first). Unicode's stability rules make a
    text that Python finds already in NFC (``unicodedata.is_normalized``, a fast check) one
    that the older tables leave alone too, so only the texts Python would change are
    normalized here, by ``tokenizers`` itself.
    """
    global _TOKENIZERS_NFC
    if _TOKENIZERS_NFC is None:
        from tokenizers.normalizers import NFC

        _TOKENIZERS_NFC = NFC()
    return _TOKENIZERS_NFC.normalize_str(text)


_TOKENIZERS_NFC: Any = None  # built on first use: most texts never need it
MAX_PIECE_CHARS = 1 << 20  # longer texts are encoded in pieces (module docstring)
_CUT = re.compile(r"(?<=\S) (?=[A-Za-z])")  # where a piece may end: before " word" after a non-space

# The split pattern of ``tokenizers.pre_tokenizers.ByteLevel(use_regex=True)`` (GPT-2's).
GPT2_SPLIT = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


class Unsupported(Exception):
    """The tokenizer's pipeline is not one ``FastEncoder`` reproduces; the message says why."""


def lone_surrogate_error(index: int) -> MixkitError:
    return MixkitError(f"text {index} of the batch contains a lone surrogate (not encodable as UTF-8)")


def _check_encodable(texts: list[str]) -> None:
    for i, text in enumerate(texts):
        if not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise lone_surrogate_error(i) from None


# -- long texts -----------------------------------------------------------------------------------


def encoding_pieces(text: str, max_chars: int | None = None) -> list[str]:
    """``text`` cut into pieces of at most ``max_chars`` characters (``MAX_PIECE_CHARS``) at the
    cut points of the module docstring, each piece as long as it can be; a stretch with no
    cut point stays whole (so a piece may be longer). ``"".join(pieces) == text``."""
    limit = MAX_PIECE_CHARS if max_chars is None else max_chars
    pieces: list[str] = []
    start = 0
    while len(text) - start > limit:
        cut = -1
        end = start + limit
        for lo in (end - 4096, start + limit // 2):  # the last cut point, looked for near the end first
            for m in _CUT.finditer(text, max(start + 1, lo), end):
                cut = m.start()
            if cut >= 0:
                break
        if cut < 0:
            m = _CUT.search(text, start + limit)
            if m is None:
                break
            cut = m.start()
        pieces.append(text[start:cut])
        start = cut
    pieces.append(text[start:])
    return pieces


def added_tokens_allow_cuts(contents: list[str]) -> bool:
    """Whether no added token can span a cut point: each is all whitespace or holds no space."""
    return all(not c.strip() or " " not in c for c in contents)


def encode_in_pieces(encode_whole: Any, texts: list[str], max_chars: int | None = None) -> list[list[int]]:
    """``encode_whole(texts)`` (a batch encoder), with every text longer than ``max_chars``
    encoded piece by piece (``encoding_pieces``) and its ids joined."""
    limit = MAX_PIECE_CHARS if max_chars is None else max_chars
    short = [i for i, t in enumerate(texts) if len(t) <= limit]
    out: list[list[int] | None] = [None] * len(texts)
    for i, ids in zip(short, encode_whole([texts[i] for i in short]) if short else []):
        out[i] = ids
    for i, text in enumerate(texts):
        if out[i] is None:
            ids: list[int] = []
            try:
                for piece in encoding_pieces(text, limit):
                    ids += encode_whole([piece])[0]
            except MixkitError:
                raise lone_surrogate_error(i) from None
            out[i] = ids
    return out  # type: ignore[return-value]


# -- the reference ------------------------------------------------------------------------------


class _BatchEncoder:
    """``encode_batch`` of both encoders: ``encode_whole``, with texts longer than
    ``MAX_PIECE_CHARS`` encoded in pieces when the encoder is ``cuttable``."""

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        if any(len(t) > MAX_PIECE_CHARS for t in texts) and self.cuttable:
            return encode_in_pieces(self.encode_whole, texts)
        return self.encode_whole(texts)


class HFEncoder(_BatchEncoder):
    """``tokenizers``' ``encode_batch_fast`` with special-token strings kept as plain text."""

    name = "hf"

    def __init__(self, tokenizer: Any):
        import tokenizers

        self.tokenizer = tokenizer
        tokenizer.encode_special_tokens = True
        self.library = f"tokenizers {tokenizers.__version__}"

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> HFEncoder:
        from tokenizers import Tokenizer

        try:
            return cls(Tokenizer.from_file(str(path)))
        except Exception as e:
            raise MixkitError(f"cannot read tokenizer {path}: {exception_detail(e)}") from None

    @property
    def cuttable(self) -> bool:
        """Whether long texts may be encoded in pieces (module docstring); decided on first need."""
        if not hasattr(self, "_cuttable"):
            data = json.loads(self.tokenizer.to_str())
            try:
                fast_spec(data)
                self._cuttable = added_tokens_allow_cuts([t["content"] for t in data.get("added_tokens") or []])
            except Unsupported:
                self._cuttable = False
        return self._cuttable

    def encode_whole(self, texts: list[str]) -> list[list[int]]:
        """``encode_batch`` without cutting long texts."""
        try:
            encodings = self.tokenizer.encode_batch_fast(texts, add_special_tokens=False)
        except TypeError:
            # ``tokenizers`` cannot take a str with a lone surrogate; name the text instead.
            _check_encodable(texts)
            raise
        return [e.ids for e in encodings]


# -- the fast one -------------------------------------------------------------------------------


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte → printable character table (what byte-level BPE vocabularies are written in)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars)))


def _utf8_impossible() -> set[int]:
    """Bytes that never occur in valid UTF-8, so a vocabulary may leave them out."""
    return {0xC0, 0xC1, *range(0xF5, 0x100)}


@dataclass(frozen=True)
class FastSpec:
    """What a ``FastEncoder`` needs, derived from a tokenizer file (picklable, for worker processes)."""

    ranks: dict[bytes, int]
    added: dict[str, int]  # normalized content → id, for the non-special added tokens
    normalize_nfc: bool


def fast_spec(tokenizer_json: dict[str, Any]) -> FastSpec:
    """Derive ranks and added tokens from a ``tokenizers`` JSON, or raise ``Unsupported``."""
    t = tokenizer_json
    if t.get("truncation") is not None or t.get("padding") is not None:
        raise Unsupported("truncation or padding is set")
    model = t.get("model") or {}
    if model.get("type") != "BPE":
        raise Unsupported(f"model is {model.get('type')}, not BPE")
    for key in ("dropout", "continuing_subword_prefix", "end_of_word_suffix"):
        if model.get(key):
            raise Unsupported(f"BPE option {key}={model[key]!r}")
    if model.get("byte_fallback") or model.get("ignore_merges"):
        raise Unsupported("BPE byte_fallback/ignore_merges")
    normalizer = t.get("normalizer")
    if normalizer is not None and normalizer.get("type") == "Sequence" and len(normalizer.get("normalizers", [])) == 1:
        normalizer = normalizer["normalizers"][0]
    if normalizer is not None and normalizer.get("type") != "NFC":
        raise Unsupported(f"normalizer {normalizer.get('type')} (only none or NFC)")
    pre = t.get("pre_tokenizer")
    if pre is not None and pre.get("type") == "Sequence" and len(pre.get("pretokenizers", [])) == 1:
        pre = pre["pretokenizers"][0]
    if pre is None or pre.get("type") != "ByteLevel" or pre.get("add_prefix_space") or not pre.get("use_regex", True):
        raise Unsupported("pre-tokenizer is not ByteLevel(add_prefix_space=false, use_regex=true)")
    post = t.get("post_processor")
    if post is not None and post.get("type") != "ByteLevel":
        raise Unsupported(f"post-processor {post.get('type')}")

    byte_of = {c: b for b, c in bytes_to_unicode().items()}
    vocab: dict[str, int] = model.get("vocab") or {}
    merges = model.get("merges") or []
    ranks: dict[bytes, int] = {}
    last_id = -1
    for m in merges:
        a, b = m.split(" ", 1) if isinstance(m, str) else m
        merged = a + b
        if merged not in vocab or a not in vocab or b not in vocab:
            raise Unsupported(f"merge {a!r} {b!r} uses a token outside the vocabulary")
        token_id = vocab[merged]
        if token_id <= last_id:
            raise Unsupported("merge results' ids do not increase with the merge order")
        last_id = token_id
        try:
            ranks[bytes(byte_of[c] for c in merged)] = token_id
        except KeyError:
            raise Unsupported(f"vocabulary entry {merged!r} is not byte-level") from None
    first_merge_id = min(ranks.values(), default=len(vocab))
    for b, c in bytes_to_unicode().items():
        if c in vocab:
            if vocab[c] >= first_merge_id:
                raise Unsupported("a single-byte token's id lies among the merges' ids")
            ranks[bytes([b])] = vocab[c]
        elif b not in _utf8_impossible():
            raise Unsupported(f"byte 0x{b:02x} has no token")

    added: dict[str, int] = {}
    for tok in t.get("added_tokens") or []:
        if tok.get("special"):
            # Kept as plain text (encode_special_tokens); only safe when matched on raw text.
            if tok.get("normalized"):
                raise Unsupported(f"special token {tok['content']!r} is matched after normalization")
            continue
        if tok.get("lstrip") or tok.get("rstrip") or tok.get("single_word") or not tok.get("normalized", True):
            raise Unsupported(f"added token {tok['content']!r} has lstrip/rstrip/single_word or is not normalized")
        content = tokenizers_nfc(tok["content"]) if normalizer is not None else tok["content"]
        if content:
            added[content] = tok["id"]
    return FastSpec(ranks=ranks, added=added, normalize_nfc=normalizer is not None)


class FastEncoder(_BatchEncoder):
    """NFC, the added-token split, then ``tiktoken`` BPE; see the module docstring."""

    name = "fast"

    def __init__(self, spec: FastSpec, num_threads: int = 1):
        import tiktoken

        self.spec = spec
        self.library = f"tiktoken {tiktoken.__version__}"
        encoding = tiktoken.Encoding("mixkit-bpe", pat_str=GPT2_SPLIT, mergeable_ranks=spec.ranks, special_tokens={})
        self._bpe = encoding._core_bpe.encode_ordinary  # releases the GIL while it runs
        self._added = spec.added
        self._added_re = (
            re.compile("|".join(re.escape(c) for c in sorted(spec.added, key=len, reverse=True))) if spec.added else None
        )
        self.num_threads = max(1, num_threads)
        self._pool = ThreadPoolExecutor(self.num_threads, thread_name_prefix="mixkit-bpe") if self.num_threads > 1 else None

    @classmethod
    def from_file(cls, path: str | os.PathLike, num_threads: int = 1) -> FastEncoder:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise MixkitError(f"cannot read tokenizer {path}: {e}") from None
        return cls(fast_spec(data), num_threads)

    def __getstate__(self) -> dict[str, Any]:
        return {"spec": self.spec, "num_threads": self.num_threads}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["spec"], state["num_threads"])

    def encode(self, text: str) -> list[int]:
        if not text.isascii():  # ASCII is always NFC and always encodable
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise lone_surrogate_error(0) from None
            if self.spec.normalize_nfc and not unicodedata.is_normalized("NFC", text):
                text = tokenizers_nfc(text)
        if self._added_re is None:
            return self._bpe(text)
        bpe, added = self._bpe, self._added
        out: list[int] = []
        pos = 0
        for m in self._added_re.finditer(text):
            start = m.start()
            if start > pos:
                out += bpe(text[pos:start])
            out.append(added[m.group()])
            pos = m.end()
        if pos == 0:
            return bpe(text)
        if pos < len(text):
            out += bpe(text[pos:])
        return out

    def _encode_all(self, texts: list[str], offset: int = 0) -> list[list[int]]:
        encode = self.encode
        out = []
        for i, text in enumerate(texts):
            try:
                out.append(encode(text))
            except MixkitError:
                raise lone_surrogate_error(offset + i) from None
        return out

    @property
    def cuttable(self) -> bool:
        """Whether long texts may be encoded in pieces (module docstring): a pipeline this
        encoder reproduces, so it depends on the added tokens only."""
        return added_tokens_allow_cuts(list(self._added))

    def encode_whole(self, texts: list[str]) -> list[list[int]]:
        """``encode_batch`` without cutting long texts."""
        if self._pool is None or len(texts) < 2 * self.num_threads:
            return self._encode_all(texts)
        k = self.num_threads
        bounds = [len(texts) * j // k for j in range(k + 1)]
        parts = self._pool.map(lambda j: self._encode_all(texts[bounds[j] : bounds[j + 1]], bounds[j]), range(k))
        return [ids for part in parts for ids in part]


# -- the self-test and the choice -----------------------------------------------------------------


def probe_texts(added: list[str] | None = None, special: list[str] | None = None) -> list[str]:
    """The built-in probe set: texts where a pipeline that differs would show it."""
    out: list[str] = []
    for ws in (" ", "\t", "\n", "\r\n", "\u00a0", "\u3000", " \n", "\n "):
        for n in range(1, 61):
            run = ws * n
            out += [f"a{run}b", f"{run}x", f"x{run}", run, f"x{run}\n", f"def f():\n{run}return {n}"]
    out += ["  \n  ", " \n\n  a", "a \t b", "\t\t  \n", "x  ", "x   \n   y", " " * 25 + "z", " " * 49 + "z", "\u2028a\u2029", "\x0b\x0c\x1c\x85"]
    for token in (added or []) + (special or []):
        out += [token, f"x{token}y", token + token, f" {token} ", f"\n{token}a"]
    out += [
        "Hello, world! It's a test: we'll see; they've done it, I'd say, you're right, I'm sure. DON'T 'S",
        "Ελληνικά Русский текст العربية עברית हिन्दी ไทย 中文字符 日本語のテキスト 한국어 텍스트",
        "emoji 🎉👍🏽 👨‍👩‍👧‍👦 🇫🇷🇯🇵 ❤️ ✓ ☃",
        "e\u0301 A\u030a \u212b \u2126 o\u0308\u0304 \u1100\u1161\u11a8 Å ﬁ ﬀ ẛ̣ \u0344 \u0958 \u2adc",
        "12345678901234567890 3.14159 -42 1e-9 ٣٤٥ ½ ① ⅷ 𝟘𝟙",
        "def f(x):\n    return x**2  # square\n\n\tif x != 0 {\n\t\ty += 1;\n\t}\n",
        "<|endoftext|> <|padding|> <|endoftext|><|endoftext|> [CLS] </s> <s>",
        "https://example.com/a?b=c&d=e#f user@example.org 10:30pm $5.00 (a) [b] {c}",
        "\x00\x01\x7f\u200b\u200c\u200d\ufeff\ufffd\ue000\U000f0000",
    ]
    # Most of the BMP (dense uniform blocks sampled), emoji and mathematical letters, in
    # contexts that expose a letter/digit/space class or a composition that differs.
    big = {(0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xAC00, 0xD7A3), (0xE000, 0xF8FF), (0xA000, 0xA4CF)}

    def wanted(cp: int) -> bool:
        if 0xD800 <= cp <= 0xDFFF:
            return False
        for lo, hi in big:
            if lo <= cp <= hi:
                return cp % 61 == 0
        if cp > 0xFFFF and not (0x1F000 <= cp <= 0x1FAFF or 0x1D400 <= cp <= 0x1D7FF):
            return cp % 31 == 0 and unicodedata.category(chr(cp)) != "Cn"
        return True

    chars = [chr(cp) for cp in range(0x20, 0x30000) if wanted(cp)]
    for i in range(0, len(chars), 256):
        out.append("".join(f"a{c}b {c}1{c}{c} " for c in chars[i : i + 256]))
    return out


def self_test(fast: FastEncoder, hf: HFEncoder, texts: list[str] | None = None) -> str | None:
    """Encode the probe set with both; ``None`` if every id agrees, else a short description."""
    tok = hf.tokenizer
    specials = [t.content for t in tok.get_added_tokens_decoder().values() if t.special]
    texts = probe_texts(sorted(fast.spec.added), specials) if texts is None else texts
    ours, theirs = fast.encode_batch(texts), hf.encode_batch(texts)
    for i, (a, b) in enumerate(zip(ours, theirs)):
        if a != b:
            return f"probe text {i} ({texts[i][:30]!r}...) encodes differently"
    # tiktoken emits a whole vocabulary entry without merging when a piece equals one,
    # which is only the same as tokenizers' BPE if merging each entry gives itself back.
    model = tok.model
    unicode_of = bytes_to_unicode()
    for piece, token_id in fast.spec.ranks.items():
        got = model.tokenize("".join(unicode_of[b] for b in piece))
        if len(got) != 1 or got[0].id != token_id:
            return f"BPE of the vocabulary entry {piece!r} is not the entry itself"
    for bad in ("a\ud800b", "\udfff"):
        for encoder in (fast, hf):
            try:
                encoder.encode_batch(["ok", bad])
            except MixkitError:
                continue
            return f"{encoder.name} accepted a lone surrogate"
    return None


@dataclass
class EncoderChoice:
    encoder: HFEncoder | FastEncoder
    note: str | None  # why the fast encoder was not used, when it was asked for or automatic

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.encoder.name, "library": self.encoder.library}
        if self.note:
            d["note"] = self.note
        return d


def load_encoder(path: str | os.PathLike, mode: str = "auto", *, hf: HFEncoder | None = None, quiet: bool = False) -> EncoderChoice:
    """The encoder ``mode`` asks for: ``hf``, ``fast`` (an error if it cannot be proven), or ``auto``.

    ``auto`` takes the fast encoder when ``fast_spec`` accepts the file and ``self_test``
    passes, else ``tokenizers``, printing one line that says why.
    """
    if mode not in ENCODERS:
        raise MixkitError(f"encoder: expected one of {', '.join(ENCODERS)}, got {mode!r}")
    hf = hf or HFEncoder.from_file(path)
    if mode == "hf":
        return EncoderChoice(hf, None)
    try:
        fast = FastEncoder.from_file(path)
        reason = self_test(fast, hf)
    except Unsupported as e:
        fast, reason = None, str(e)
    return settle_choice(path, mode, hf, fast, reason, quiet=quiet)


def settle_choice(
    path: str | os.PathLike, mode: str, hf: HFEncoder, fast: FastEncoder | None, reason: str | None, *, quiet: bool = False
) -> EncoderChoice:
    """The choice once the self-test is back: ``fast`` when ``reason`` is None, else ``hf``
    with a one-line note (``auto``) or an error (``fast``)."""
    if reason is None and fast is not None:
        return EncoderChoice(fast, None)
    note = f"fast encoder not used for {Path(path).name}: {reason}; using tokenizers"
    if mode == "fast":
        raise MixkitError(note.replace("; using tokenizers", " (use --encoder hf or auto)"))
    if not quiet:
        print(f"note: {note}", file=sys.stderr)
    return EncoderChoice(hf, note)
