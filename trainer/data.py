"""Mix stream → tensors.

A mix stream (``mixkit.MixStream``, from ``mixkit build-mix``) returns, for a step, the rank's
contiguous slice of the global batch as int64 rows of ``seq_len + 1`` tokens. Inputs are
``row[:-1]`` and targets ``row[1:]``. Because the stream is addressed by step, the data
position of a run *is* its step: resuming needs nothing else.

The trainer takes a stream object directly, a mix name (``DATA_DIR/mixes/NAME``), a mix
directory path, or ``python:package.module:function``, a callable returning any object that
follows the MixStream contract (custom data sources, tests).
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass
from typing import Any

import torch

from mixkit.errors import MixkitError
from mixkit.mix.stream import MixStream
from trainer.model import ModelConfig

STREAM_ATTRS = ("batch", "sources", "num_steps", "seq_len", "global_batch", "source_names", "fingerprint", "vocab_size", "tokenizer_sha256")


def open_stream(spec: Any, data_dir: str | None = None) -> Any:
    """A MixStream-like object from an object, a mix name/path, or ``python:module:function``."""
    if not isinstance(spec, str):
        stream = spec
    elif spec.startswith("python:"):
        target = spec[len("python:") :]
        module_name, _, attr = target.partition(":")
        if not module_name or not attr:
            raise MixkitError(f"mix {spec!r}: expected python:package.module:function")
        if os.getcwd() not in sys.path:  # like `python -m`: modules of the working directory import
            sys.path.insert(0, os.getcwd())
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as e:
            raise MixkitError(f"mix {spec!r}: cannot import ({e})") from None
        stream = factory()
    else:
        stream = MixStream.open(spec, data_dir=data_dir)
    missing = [a for a in STREAM_ATTRS if not hasattr(stream, a)]
    if missing:
        raise MixkitError(f"mix {spec!r} does not follow the MixStream contract (no {', '.join(missing)})")
    return stream


def check_stream(stream: Any, model_cfg: ModelConfig, tokenizer_sha256: str = "") -> None:
    """The stream's tokens must be ids the model has, made by the tokenizer the config names."""
    if int(stream.vocab_size) > model_cfg.vocab_size:
        raise MixkitError(
            f"the mix's tokenizer has {stream.vocab_size} ids but model.vocab_size is {model_cfg.vocab_size} "
            f"(the model's vocabulary must cover the tokenizer's)"
        )
    top = getattr(stream, "max_token_id", None)
    if top is not None and int(top) >= model_cfg.vocab_size:
        raise MixkitError(
            f"the mix's stores hold token id {top}, outside model.vocab_size {model_cfg.vocab_size} "
            "(the model would index past its embedding)"
        )
    if tokenizer_sha256 and stream.tokenizer_sha256 != tokenizer_sha256:
        raise MixkitError(
            f"the mix was tokenized with tokenizer sha256 {stream.tokenizer_sha256[:12]}…, "
            f"the config's tokenizer_sha256 is {tokenizer_sha256[:12]}…"
        )
    if int(stream.seq_len) > model_cfg.max_seq_len:
        raise MixkitError(f"the mix's seq_len {stream.seq_len} exceeds model.max_seq_len {model_cfg.max_seq_len}")


@dataclass
class MicroBatch:
    inputs: torch.Tensor  # (micro_batch, seq_len) int64
    targets: torch.Tensor  # (micro_batch, seq_len) int64
    sources: torch.Tensor  # (micro_batch,) int64 index into stream.source_names


def micro_batches(stream: Any, step: int, rank: int, world_size: int, grad_accum: int, device: torch.device) -> list[MicroBatch]:
    """This rank's rows of ``step``, split into ``grad_accum`` equal micro-batches on ``device``."""
    rows = torch.from_numpy(stream.batch(step, rank, world_size))
    srcs = torch.from_numpy(stream.sources(step, rank, world_size).astype("int64", copy=False))
    pin = device.type == "cuda"
    if pin:
        rows, srcs = rows.pin_memory(), srcs.pin_memory()
    rows, srcs = rows.to(device, non_blocking=pin), srcs.to(device, non_blocking=pin)
    size = rows.shape[0] // grad_accum
    out = []
    for i in range(grad_accum):
        chunk = rows[i * size : (i + 1) * size]
        out.append(MicroBatch(chunk[:, :-1].contiguous(), chunk[:, 1:].contiguous(), srcs[i * size : (i + 1) * size]))
    return out


def plan_accumulation(global_batch: int, world_size: int, micro_batch: int, grad_accum: int) -> int:
    """The number of micro-batches per rank and step.

    Each rank takes ``local = global_batch / world_size`` rows of every step. With
    ``grad_accum = 0`` (derived) ``micro_batch`` is the most rows one forward pass takes:
    the micro-batch is the largest divisor of ``local`` that is ``<= micro_batch`` and
    ``grad_accum = local / micro``; so ``micro_batch = 8`` runs a global batch of 8 as 1 × 8
    rows on one process and 1 × 4 rows on each of two. A ``grad_accum`` given must satisfy
    ``micro_batch × grad_accum × world_size = global_batch`` exactly.
    """
    if global_batch % world_size:
        raise MixkitError(
            f"the mix's global batch {global_batch} does not split over {world_size} processes "
            f"({global_batch} / {world_size} = {global_batch / world_size:g} rows each): launch a world size "
            f"that divides {global_batch}, or build the mix with a --global-batch that {world_size} divides"
        )
    local = global_batch // world_size
    if grad_accum == 0:
        micro = max(d for d in range(1, min(micro_batch, local) + 1) if local % d == 0)
        return local // micro
    if micro_batch * grad_accum * world_size != global_batch:
        raise MixkitError(
            f"micro_batch {micro_batch} × grad_accum {grad_accum} × world size {world_size} = "
            f"{micro_batch * grad_accum * world_size}, but the mix's global batch is {global_batch} "
            f"(set grad_accum = 0 to derive it: {local} rows per process)"
        )
    return grad_accum
