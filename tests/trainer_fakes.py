"""A stand-in for ``mixkit.MixStream`` that follows its contract exactly, over a synthetic token array.

Row j of the whole run (j = step · global_batch + i) is ``tokens[o : o + seq_len + 1]`` with
``o = (j mod n_rows) · seq_len`` and ``n_rows = (len(tokens) − 1) // seq_len``; its source is
``j mod len(source_names)``. With ``n_rows == global_batch`` every step repeats the same batch.
"""

from __future__ import annotations

import hashlib
import time

import numpy as np


class FakeStream:
    def __init__(self, tokens: np.ndarray, *, seq_len: int, global_batch: int, num_steps: int, vocab_size: int,
                 source_names: tuple[str, ...] = ("web", "math"), seed: int = 0, delay_s: float = 0.0):
        self.tokens = np.asarray(tokens, dtype=np.int64)
        self.seq_len, self.global_batch, self.num_steps = seq_len, global_batch, num_steps
        self.vocab_size, self.seed, self.delay_s = vocab_size, seed, delay_s
        self.source_names = list(source_names)
        self.n_rows = (self.tokens.size - 1) // seq_len
        self.tokenizer_sha256 = hashlib.sha256(f"synthetic-vocab-{vocab_size}".encode()).hexdigest()
        self.eos_id = 0
        h = hashlib.sha256(self.tokens.tobytes())
        h.update(f"{seq_len}/{global_batch}/{num_steps}/{source_names}".encode())
        self.fingerprint = h.hexdigest()
        self.manifest = {"format": "fake-mix", "seq_len": seq_len, "global_batch": global_batch,
                         "num_steps": num_steps, "sources": self.source_names, "fingerprint": self.fingerprint}

    def _rows(self, step: int, rank: int, world_size: int) -> np.ndarray:
        local = self.global_batch // world_size
        return step * self.global_batch + rank * local + np.arange(local)

    def batch(self, step: int, rank: int = 0, world_size: int = 1) -> np.ndarray:
        if self.delay_s:
            time.sleep(self.delay_s)
        starts = (self._rows(step, rank, world_size) % self.n_rows) * self.seq_len
        return np.stack([self.tokens[o : o + self.seq_len + 1] for o in starts]).astype(np.int64)

    def sources(self, step: int, rank: int = 0, world_size: int = 1) -> np.ndarray:
        return self._rows(step, rank, world_size) % len(self.source_names)

    def tokens_seen(self, step: int) -> int:
        return step * self.global_batch * self.seq_len


def tiny_tokens(n: int, vocab: int, seed: int = 0) -> np.ndarray:
    """Learnable synthetic text: a noisy repeating pattern (so the loss can fall)."""
    rng = np.random.default_rng(seed)
    pattern = rng.integers(1, vocab, size=37)
    toks = np.resize(pattern, n)
    noise = rng.random(n) < 0.1
    toks[noise] = rng.integers(1, vocab, size=int(noise.sum()))
    return toks


def tiny_stream() -> FakeStream:
    """For the ``tiny`` model (vocab 512): seq 16, global batch 4, 400 steps."""
    return FakeStream(tiny_tokens(4000, 512), seq_len=16, global_batch=4, num_steps=400, vocab_size=512)


def slow_tiny_stream() -> FakeStream:
    """``tiny_stream`` taking 20 ms per batch read, so a test can kill a run in the middle."""
    s = tiny_stream()
    s.delay_s = 0.02
    return s
