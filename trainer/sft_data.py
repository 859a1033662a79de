"""Supervised-finetuning task data: prompt/answer records → tokens with answer-only labels.

A task example is ``prompt + answer + EOS``, tokenized as two pieces so the boundary is
exact (the prompt's tokens never merge with the answer's). For a row ``x`` the model
reads ``x[:-1]`` and predicts ``x[1:]``; a target position carries a label only when
the token it predicts is part of the answer (its EOS included). Prompt targets are
``-100``, the ignore index of ``torch.nn.functional.cross_entropy``, so they give
neither loss nor gradient.

An example longer than ``seq_len + 1`` tokens loses tokens from the *start of the
prompt* (the answer, and the prompt text nearest to it, are what the loss is about);
an answer that alone exceeds the window is cut at its end. Both are counted and
reported, never silent.

Splits: when a task gives its own validation sources (GSM8K's test file) they are used;
otherwise a seeded permutation holds out ``val_size`` examples (or ``val_fraction``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mixkit.config import invalid
from mixkit.errors import MixkitError
from mixkit.presets import PRESETS, TextSpec, render_template
from mixkit.readers import BadRecord, expand_sources, read_records

IGNORE_INDEX = -100


@dataclass
class TaskConfig:
    """One SFT task (a ``[tasks.NAME]`` table): where its records are and how they become
    prompt/answer pairs. Build it with ``from_table(TaskConfig, table, where, name=NAME)``:
    the name comes from the table's key, and names the preset when none is given.

    ``train`` and ``val`` take a source or a list of sources (paths or globs); without
    ``val``, ``val_size`` examples (else ``val_fraction`` of them) are held out of ``train``.
    """

    name: str = field(metadata={"config": False})
    train: list[str] | str
    val: list[str] | str = field(default_factory=list)
    preset: str | None = None
    prompt: str | None = None
    answer: str | None = None
    val_size: int | None = None
    val_fraction: float = 0.1
    max_examples: int | None = None
    split_seed: int = 0  # the train/validation split is the task's, the same for every run (not the run's seed)

    def __post_init__(self) -> None:
        self.train = [self.train] if isinstance(self.train, str) else list(self.train)
        self.val = [self.val] if isinstance(self.val, str) else list(self.val)
        if not self.train:
            raise invalid("train", "give at least one source")
        if (self.prompt is None) != (self.answer is None):
            raise invalid("prompt" if self.prompt is None else "answer",
                          "give both prompt and answer templates, or neither")
        if self.prompt is not None and self.preset is not None:
            raise invalid("preset", "give a preset or prompt/answer templates, not both")
        if self.prompt is None and self.preset is None:
            if self.name not in PRESETS:
                raise invalid("preset", f"name one of {', '.join(PRESETS)}, or give prompt and answer templates")
            self.preset = self.name
        if self.preset is not None and self.preset not in PRESETS:
            raise invalid("preset", f"unknown {self.preset!r} (known: {', '.join(PRESETS)})")
        if not 0 < self.val_fraction < 1:
            raise invalid("val_fraction", f"must be in (0, 1), got {self.val_fraction}")
        for key in ("val_size", "max_examples"):
            if getattr(self, key) is not None and getattr(self, key) <= 0:
                raise invalid(key, f"must be positive, got {getattr(self, key)}")


@dataclass
class SFTSet:
    """Tokenized examples: ``tokens[i]`` is prompt+answer+EOS, answer starting at ``answer_start[i]``."""

    tokens: list[np.ndarray]
    answer_start: np.ndarray
    truncated_prompt: int = 0
    truncated_answer: int = 0

    def __len__(self) -> int:
        return len(self.tokens)

    def fingerprint(self) -> str:
        """sha256 over every example's tokens and answer start: which examples a loss was measured on."""
        h = hashlib.sha256()
        for t, a in zip(self.tokens, self.answer_start):
            h.update(np.int64(len(t)).tobytes() + np.int64(a).tobytes() + np.asarray(t, dtype=np.int64).tobytes())
        return h.hexdigest()


def read_pairs(sources: list[str], preset: str | None, prompt: str | None = None,
               answer: str | None = None) -> list[tuple[str, str]]:
    """(prompt, answer) per record: by a preset, or by two templates over the record's fields."""
    spec = TextSpec(preset=preset) if preset else None
    pairs = []
    for path in expand_sources(sources):
        for item in read_records(path):
            if isinstance(item, BadRecord):
                raise MixkitError(str(item))
            try:
                if spec is not None:
                    pairs.append(spec.prompt_answer(item))
                else:
                    pairs.append((render_template(prompt, item), render_template(answer, item)))
            except BadRecord as e:
                raise MixkitError(str(e)) from None
    return pairs


def encode_pairs(pairs: list[tuple[str, str]], tokenizer: Any, eos_id: int, seq_len: int) -> SFTSet:
    """Tokenize pairs and fit each into ``seq_len + 1`` tokens (see the module docstring)."""
    prompts = tokenizer.encode_batch_fast([p for p, _ in pairs], add_special_tokens=False) if pairs else []
    answers = tokenizer.encode_batch_fast([a for _, a in pairs], add_special_tokens=False) if pairs else []
    window = seq_len + 1
    tokens, starts = [], []
    cut_prompt = cut_answer = 0
    for p, a in zip(prompts, answers):
        pid, aid = p.ids, a.ids + [eos_id]
        if len(aid) > window - 1:
            # Keep at least one prompt token so the first answer token has a context to be predicted from.
            aid = aid[: window - 1]
            cut_answer += 1
        room = window - len(aid)
        if len(pid) > room:
            pid = pid[len(pid) - room :]
            cut_prompt += 1
        if not pid:
            pid = [eos_id]  # an empty prompt: the document boundary is the context
        tokens.append(np.asarray(pid + aid, dtype=np.int64))
        starts.append(len(pid))
    return SFTSet(tokens, np.asarray(starts, dtype=np.int64), cut_prompt, cut_answer)


def split_indices(n: int, seed: int, val_size: int | None, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """A seeded split: the same ``(n, seed, size)`` always gives the same two index sets."""
    k = val_size if val_size is not None else max(1, int(round(n * val_fraction)))
    if not 0 < k < n:
        raise MixkitError(f"validation size {k} must be between 1 and {n - 1} for {n} examples")
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[k:]), np.sort(perm[:k])


def load_task(cfg: TaskConfig, tokenizer: Any, eos_id: int, seq_len: int) -> tuple[SFTSet, SFTSet]:
    """The task's train and validation sets, tokenized and fitted to ``seq_len``.

    Without a ``val`` source the split is drawn with the task's own ``split_seed``, never the
    run's: every run of a study (every seed, every variant) scores the same validation
    examples, so their losses differ only by what the runs learned.
    """
    train_pairs = read_pairs(cfg.train, cfg.preset, cfg.prompt, cfg.answer)
    if cfg.val:
        val_pairs = read_pairs(cfg.val, cfg.preset, cfg.prompt, cfg.answer)
    else:
        tr, va = split_indices(len(train_pairs), cfg.split_seed, cfg.val_size, cfg.val_fraction)
        train_pairs, val_pairs = [train_pairs[i] for i in tr], [train_pairs[i] for i in va]
    if cfg.max_examples is not None:
        train_pairs = train_pairs[: cfg.max_examples]
    if cfg.val_size is not None and cfg.val:
        val_pairs = val_pairs[: cfg.val_size]
    if not train_pairs or not val_pairs:
        raise MixkitError(f"task '{cfg.name}': empty train or validation set")
    return encode_pairs(train_pairs, tokenizer, eos_id, seq_len), encode_pairs(val_pairs, tokenizer, eos_id, seq_len)


def collate(data: SFTSet, indices: np.ndarray, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``indices`` as right-padded ``(inputs, labels)`` int64 arrays of one width.

    ``labels[b, t]`` is the token at ``t + 1`` when it is an answer token, else -100
    (prompt and padding). The width is the longest row in the batch, not ``seq_len``,
    so short tasks do not pay for padding.
    """
    rows = [data.tokens[i] for i in indices]
    width = max(len(r) for r in rows) - 1
    inputs = np.full((len(rows), width), pad_id, dtype=np.int64)
    labels = np.full((len(rows), width), IGNORE_INDEX, dtype=np.int64)
    for b, (i, r) in enumerate(zip(indices, rows)):
        n = len(r) - 1
        inputs[b, :n] = r[:-1]
        start = int(data.answer_start[i])
        # target position t predicts r[t + 1]; it is an answer token when t + 1 >= start
        labels[b, start - 1 : n] = r[start:]
    return inputs, labels


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The example order of one epoch: a fresh seeded permutation per epoch."""
    return np.random.default_rng([seed, epoch]).permutation(n)
