"""Helpers shared by the tests: synthetic and real-text stores, reference constructions, CLI runners.

- ``random_docs``: random documents ending with EOS, as ``mixkit tokenize`` writes them.
- ``encode_store`` / ``bundled_store``: token stores made from real text with the GPT-NeoX
  tokenizer (documents rendered like ``mixkit tokenize --preset`` renders them, EOS id 0),
  so the counts/distance tests measure what users measure.
- ``reference_blend`` / ``ReferenceStream`` / ``reference_rows``: slow, obviously-correct
  constructions of a mix, for checking the fast paths in ``mixkit.mix``.
- ``run_cli`` / ``run_cli_fail`` / ``write_jsonl`` / ``outputs``: the ``mixkit`` command in-process.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from cli.mixkit_cli import main
from mixkit.mix.indices import epoch_seed
from mixkit.samples import DEFAULT_TOKENIZER, sample_path
from mixkit.store import TokenStore, write_store


def random_docs(rng: np.random.Generator, n_docs: int, vocab: int, max_len: int = 200, eos: int | None = 0) -> list[np.ndarray]:
    """Random documents, each ending with ``eos`` when given (as tokenize writes them)."""
    docs = []
    for _ in range(n_docs):
        n = int(rng.integers(1, max_len + 1))
        d = rng.integers(1 if eos == 0 else 0, vocab, size=n)
        if eos is not None:
            d[-1] = eos
        docs.append(d)
    return docs


# -- stores of real text -------------------------------------------------------------------------

RENDER: dict[str, Callable[[dict], str]] = {
    "c4": lambda r: r["text"],
    "gsm8k_train": lambda r: f"Question: {r['question']}\nAnswer: {r['answer']}",
    "math": lambda r: f"Problem: {r['problem']}\nSolution: {r['solution']}",
    "code": lambda r: r["text"],
}
STORE_NAMES = {"c4": "c4", "gsm8k_train": "gsm8k", "math": "math", "code": "code"}


def tokenizer_description(path: Path = DEFAULT_TOKENIZER) -> dict:
    return {"file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "vocab_size": 50277}


def read_jsonl(path: Path) -> Iterable[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def encode_store(prefix: Path, texts: list[str], tokenizer_path: Path = DEFAULT_TOKENIZER) -> TokenStore:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_path))
    docs = [np.append(np.asarray(e.ids, dtype=np.int64), 0) for e in tok.encode_batch(texts)]
    return write_store(prefix, docs, vocab_size=50277, tokenizer=tokenizer_description(tokenizer_path))


def bundled_store(data_dir: Path, sample: str) -> TokenStore:
    """The bundled ``sample`` rendered, tokenized and written as store ``STORE_NAMES[sample]``."""
    texts = [RENDER[sample](r) for r in read_jsonl(sample_path(sample))]
    return encode_store(data_dir / STORE_NAMES[sample], texts)


# -- reference constructions of a mix ---------------------------------------------------------------


def reference_blend(weights, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The blending rule as the issue states it, one sample at a time in plain Python floats."""
    counts = [0] * len(weights)
    ds = np.empty(size, dtype=np.int16)
    sn = np.empty(size, dtype=np.int64)
    for n in range(size):
        x = max(float(n), 1.0)
        errors = [float(w) * x - c for w, c in zip(weights, counts)]
        k = errors.index(max(errors))  # first maximum: ties to the lowest k
        ds[n], sn[n] = k, counts[k]
        counts[k] += 1
    return ds, sn


class ReferenceStream:
    """A dataset's sample stream built the long way: shuffle documents, concatenate, cut, shuffle samples."""

    def __init__(self, store: TokenStore, seed: int, seq_len: int):
        self.store, self.seed, self.seq_len = store, seed, seq_len
        self.per_epoch = (store.num_tokens - 1) // seq_len
        self._epochs: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def _epoch(self, e: int) -> tuple[np.ndarray, np.ndarray]:
        if e not in self._epochs:
            rs = np.random.RandomState(epoch_seed(self.seed, self.store.name, e))
            order = np.arange(self.store.num_docs, dtype=np.int32)
            rs.shuffle(order)
            tokens = np.concatenate([np.asarray(self.store[int(d)], dtype=np.int64) for d in order])
            shuffle = np.arange(self.per_epoch, dtype=np.uint32)
            rs.shuffle(shuffle)
            self._epochs[e] = (tokens, shuffle)
        return self._epochs[e]

    def window(self, e: int, j: int) -> np.ndarray:
        """Unshuffled sample ``j`` of epoch ``e``: tokens ``[j*L, j*L + L + 1)``."""
        tokens, _ = self._epoch(e)
        return tokens[j * self.seq_len : j * self.seq_len + self.seq_len + 1]

    def sample(self, m: int) -> np.ndarray:
        e, i = divmod(m, self.per_epoch)
        _, shuffle = self._epoch(e)
        return self.window(e, int(shuffle[i]))


def reference_rows(stores: dict[str, TokenStore], phases, steps: int, global_batch: int, seq_len: int, seed: int):
    """``(sources, samples)`` of every global sample of a mix, from ``phases = [(start_step, {name: w})]``.

    Source names are numbered in order of first appearance with a positive weight.
    """
    names: list[str] = []
    for _, weights in phases:
        for k, w in weights.items():
            if w > 0 and k not in names:
                names.append(k)
    streams = {k: ReferenceStream(stores[k], seed, seq_len) for k in names}
    used = dict.fromkeys(names, 0)
    sources, samples = [], []
    bounds = [p[0] for p in phases] + [steps]
    for (start, weights), end in zip(phases, bounds[1:]):
        active = [k for k in weights if weights[k] > 0]
        w = np.array([weights[k] for k in active], dtype=np.float64)
        w = w / w.sum()
        ds, sn = reference_blend(w, (end - start) * global_batch)
        for d, s in zip(ds, sn):
            name = active[int(d)]
            sources.append(names.index(name))
            samples.append(streams[name].sample(used[name] + int(s)))
        for k in active:
            used[k] += int(np.sum(ds == active.index(k)))
    return names, np.array(sources), np.array(samples)


# -- the command line ----------------------------------------------------------------------------------


def run_cli(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def run_cli_fail(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code != 0
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.output


def write_jsonl(path: Path, records, opener=open) -> Path:
    with opener(path, "wt", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path


def outputs(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir()) if d.exists() else []
