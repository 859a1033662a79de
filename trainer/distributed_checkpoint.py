"""Checkpoints of FSDP runs through ``torch.distributed.checkpoint`` (DCP), loadable at any world size.

An FSDP rank holds only its shards of the weights and of AdamW's moments, so no rank can
write ``state.pt``; every rank writes its own shards instead, and the files name which
slice of which tensor they hold. The checkpoint folder (same name and ``meta.json`` as
``trainer.checkpoint``'s)::

    OUT/checkpoints/step_00000120/
        meta.json      as trainer.checkpoint writes it ("format": "dcp"; "files": the sha256 of
                       every file below, checked before any load)
        dcp/.metadata  DCP's index: every tensor's global shape and where each slice lies
        dcp/__R_0.distcp   rank R's shards of {"model": ..., "optimizer": ...}
                       (``model`` only in a weights-only checkpoint)
        schedule.safetensors  rank 0's LR schedule and RNG state (full checkpoints only; no pickle)

State dicts come from ``torch.distributed.checkpoint.state_dict.get_state_dict``: parameter
names as keys for the model and for the optimizer's state (not the positional ids of
``Optimizer.state_dict``), so a checkpoint saved by N ranks loads into M ranks, or into an
unsharded model in one process (``trainer.dcp_files.read_dcp_weights``, through
``trainer.checkpoint.load_weights``: ``trainer export``, evaluations, SFT, ``init_from``). Written under a temporary name and renamed into place by rank 0 after every
rank has written (a barrier), so a killed run leaves no half checkpoint under the real name.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
    set_state_dict,
)

from mixkit import atomic
from trainer import checkpoint as ckpt
from trainer.dcp_files import DCP_DIR, has_dcp_state, reading, single_process_dcp
from trainer.distributed import barrier, is_distributed
from trainer.run_dir import step_dir

EXTRA_FILE = "schedule.safetensors"


def is_dcp_checkpoint(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a complete DCP checkpoint (meta.json and DCP's index)."""
    return (Path(path) / ckpt.META_FILE).exists() and has_dcp_state(path)


def _is_rank0() -> bool:
    return not is_distributed() or torch.distributed.get_rank() == 0


def save_sharded_checkpoint(out_dir: str | Path, step: int, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                            scheduler: Any, meta: dict[str, Any], keep: int, keep_steps: list[int] | tuple[int, ...] = (),
                            full: bool = True) -> Path:
    """Every rank calls this together: write ``step_{step}`` (module docstring), then keep only the
    newest ``keep`` checkpoints and those at ``keep_steps`` (as ``trainer.checkpoint.save_checkpoint``)."""
    path = step_dir(out_dir, step)
    tmp = path.with_name(f".{path.name}.dcp.tmp")
    if _is_rank0():
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier()
    if full:
        model_state, optim_state = get_state_dict(model, optimizer)
        state: dict[str, Any] = {"model": model_state, "optimizer": optim_state}
    else:
        state = {"model": get_model_state_dict(model)}
    with single_process_dcp():
        dcp.save(state, checkpoint_id=tmp / DCP_DIR, no_dist=not is_distributed())
    barrier()
    if _is_rank0():
        files = {}
        if full:
            files[EXTRA_FILE] = ckpt.write_schedule_state(tmp / EXTRA_FILE, scheduler)
        for f in sorted((tmp / DCP_DIR).iterdir()):
            files[f"{DCP_DIR}/{f.name}"] = ckpt.file_sha256(f)
        ckpt.write_meta(tmp, {**meta, "step": step, "weights_only": not full, "format": "dcp", "files": files})
        atomic.publish_dir(tmp, path)
        for stale in ckpt.list_checkpoints(out_dir)[:-keep]:
            if int(stale.name.split("_")[1]) not in keep_steps:
                shutil.rmtree(stale, ignore_errors=True)
    barrier()
    return path


def load_training_state(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                        scheduler: Any) -> None:
    """Load a checkpoint into ``model`` (sharded or not) and, unless ``optimizer`` is None (a
    weights-only checkpoint), the optimizer, the schedule and the RNG state. Reads a DCP
    checkpoint at any world size, and a ``state.pt`` checkpoint into a sharded model (every
    rank reads the whole file and keeps its shards)."""
    if is_dcp_checkpoint(path):
        no_dist = not is_distributed()
        if optimizer is None:
            model_state = get_model_state_dict(model)
            with reading(path):
                dcp.load({"model": model_state}, checkpoint_id=path / DCP_DIR, no_dist=no_dist)
            set_model_state_dict(model, model_state)
            return
        model_state, optim_state = get_state_dict(model, optimizer)
        state = {"model": model_state, "optimizer": optim_state}
        with reading(path):
            dcp.load(state, checkpoint_id=path / DCP_DIR, no_dist=no_dist)
        set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])
        extra = ckpt.read_schedule_state(path / EXTRA_FILE)
    else:
        whole = ckpt.load_state(path, torch.device("cpu"))
        full = StateDictOptions(full_state_dict=True)
        set_model_state_dict(model, whole["model"], options=full)
        if optimizer is None:
            return
        set_optimizer_state_dict(model, optimizer, _named_optimizer_state(model, optimizer, whole["optimizer"]),
                                 options=full)
        extra = whole
    scheduler.load_state_dict(extra["scheduler"])
    ckpt.set_rng_state(extra["rng"])


def _named_optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                           state: dict[str, Any]) -> dict[str, Any]:
    """``Optimizer.state_dict()`` (parameters by position over the param groups) keyed by parameter
    name instead, the form ``set_optimizer_state_dict`` takes; ``optimizer`` must list the
    parameters in the order the saving optimizer did (both come from ``make_optimizer``)."""
    names = {id(p): n for n, p in model.named_parameters()}
    order = [names[id(p)] for group in optimizer.param_groups for p in group["params"]]
    return {"state": {order[i]: s for i, s in state["state"].items()},
            "param_groups": [{**g, "params": [order[i] for i in g["params"]]} for g in state["param_groups"]]}
