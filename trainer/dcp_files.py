"""Where an FSDP run's checkpoint keeps its shards, and reading its weights in one process.

``trainer.distributed_checkpoint`` writes a checkpoint's state through
``torch.distributed.checkpoint`` into ``step_N/dcp/`` (DCP's ``.metadata`` index and one
``__R_0.distcp`` file per rank R). This module is what ``trainer.checkpoint`` needs to
recognise such a checkpoint and load its weights (``trainer export``, evaluations, SFT,
``init_from``) without the distributed machinery: DCP reads every rank's slices into whole
tensors in a single process, whatever world size wrote them.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.api import CheckpointException

from mixkit.errors import MixkitError

DCP_DIR = "dcp"


def has_dcp_state(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds a complete DCP state (its index is written last)."""
    return (Path(path) / DCP_DIR / ".metadata").exists()


@contextlib.contextmanager
def single_process_dcp() -> Iterator[None]:
    """DCP's notice that it runs without a process group, hushed: that is the intent here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        yield


@contextlib.contextmanager
def reading(path: str | os.PathLike) -> Iterator[None]:
    """DCP's failures to read a checkpoint as one clear error naming it."""
    try:
        with single_process_dcp():
            yield
    except (OSError, RuntimeError, ValueError, CheckpointException) as e:
        raise MixkitError(f"{path}: unreadable sharded checkpoint ({str(e).splitlines()[0]})") from None


def read_dcp_weights(model: torch.nn.Module, path: str | os.PathLike) -> None:
    """The weights of a DCP checkpoint into an unsharded model, in this process alone."""
    state = model.state_dict()
    with reading(path):
        dcp.load({"model": state}, checkpoint_id=Path(path) / DCP_DIR, no_dist=True)
    model.load_state_dict(state)
