"""Checkpoints: everything needed to continue a run bit for bit, written atomically.

``OUT/checkpoints/step_00000120/`` (named by ``trainer.run_dir``) holds the state after 120 optimizer steps::

    state.pt    torch.save of {model, optimizer, scheduler, rng: {torch, numpy, python, cuda}}
                (``{model}`` only in a weights-only checkpoint)
    meta.json   {step, config (the whole TrainConfig), model_config, mix_fingerprint,
                 tokenizer_sha256, tokenizer (the stores' tokenizer description), weights_only}

The directory is built under a temporary name and renamed into place (``atomic_dir``), so a
run killed while saving leaves the previous checkpoints intact and no half checkpoint. Only
the newest ``keep`` (and those at ``keep_steps``) are kept. The data position needs no
saving: batches are read from the mix stream by step.

A checkpoint at the end of the LR schedule is written weights-only (``full = False``):
nothing can continue training it, and the optimizer state would triple its size.

An FSDP run writes its checkpoints through ``torch.distributed.checkpoint`` instead
(``dcp/`` in place of ``state.pt``; ``trainer.distributed_checkpoint``); ``is_checkpoint``
and ``load_weights`` take both.

Resuming refuses a checkpoint whose model, optimizer, schedule, seed, precision or mix
differ from the current config (they would not continue the same run).
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mixkit import atomic
from mixkit.errors import MixkitError
from trainer.dcp_files import has_dcp_state, read_dcp_weights
from trainer.hf import from_hf
from trainer.run_dir import checkpoints_dir, step_dir

STATE_FILE = "state.pt"
META_FILE = "meta.json"

# Config keys that define the run; a checkpoint made with other values cannot be resumed.
IDENTITY_KEYS = ("seed", "precision", "micro_batch", "grad_accum", "init_from", "init_revision")


def is_checkpoint(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a complete checkpoint of ours (not a Hugging Face directory, not a half one);
    an FSDP run's sharded checkpoint (``trainer.distributed_checkpoint``) is one too."""
    return (Path(path) / META_FILE).exists() and ((Path(path) / STATE_FILE).exists() or has_dcp_state(path))


def list_checkpoints(out_dir: str | Path) -> list[Path]:
    """Complete checkpoints, oldest first (temporary ``.step_*`` directories are ignored)."""
    d = checkpoints_dir(out_dir)
    if not d.is_dir():
        return []
    found = [p for p in d.glob("step_*") if p.is_dir() and is_checkpoint(p)]
    return sorted(found, key=lambda p: int(p.name.split("_")[1]))


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    found = list_checkpoints(out_dir)
    return found[-1] if found else None


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    out_dir: str | Path,
    step: int,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    meta: dict[str, Any],
    keep: int,
    keep_steps: list[int] | tuple[int, ...] = (),
    full: bool = True,
) -> Path:
    """Write ``step_{step}`` atomically, then delete all but the newest ``keep`` checkpoints.

    Checkpoints at ``keep_steps`` are never deleted: they are the branch points that
    midtraining variants start from. ``full = False`` writes the model weights only.
    """
    path = step_dir(out_dir, step)
    state: dict[str, Any] = {"model": model.state_dict()}
    if full:
        state.update(optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(), rng=rng_state())
    with atomic.atomic_dir(path, overwrite=True) as tmp:
        with open(tmp / STATE_FILE, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        atomic.write_json(tmp / META_FILE, {**meta, "step": step, "weights_only": not full})
    for old in list_checkpoints(out_dir)[:-keep]:
        if int(old.name.split("_")[1]) not in keep_steps:
            shutil.rmtree(old, ignore_errors=True)
    return path


def is_weights_only(meta: dict[str, Any]) -> bool:
    """Whether a checkpoint (by its ``meta.json``) holds the model weights only."""
    return bool(meta.get("weights_only", False))


def read_meta(path: Path) -> dict[str, Any]:
    try:
        return json.loads((path / META_FILE).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise MixkitError(f"{path}: unreadable checkpoint metadata ({e})") from None


def _check_model_and_optim(meta: dict[str, Any], current: dict[str, Any], what: str) -> None:
    """Model and optimizer configs must be equal; ``what`` starts the message naming the first difference."""
    old_optim, new_optim = meta["config"]["optim"], current["config"]["optim"]
    if meta["model_config"] != current["model_config"]:
        diff = [k for k in current["model_config"] if meta["model_config"].get(k) != current["model_config"][k]]
        raise MixkitError(f"{what}: another model config (model.{diff[0]} differs)")
    if old_optim != new_optim:
        diff = [k for k in new_optim if old_optim.get(k) != new_optim[k]]
        raise MixkitError(f"{what}: another optimizer or schedule config (optim.{diff[0]} differs)")


def check_compatible(meta: dict[str, Any], current: dict[str, Any], path: Path) -> None:
    """Refuse to resume from a checkpoint of another run, naming the first differing key."""
    old_cfg, new_cfg = meta["config"], current["config"]
    _check_model_and_optim(meta, current, f"checkpoint {path} was made with")
    for key in IDENTITY_KEYS + ("steps",):
        if key in old_cfg and old_cfg.get(key) != new_cfg.get(key):
            raise MixkitError(f"checkpoint {path} was made with {key} = {old_cfg.get(key)!r}, the config says {new_cfg.get(key)!r}")
    if meta["mix_fingerprint"] != current["mix_fingerprint"]:
        raise MixkitError(f"checkpoint {path} was trained on another mix (fingerprint {meta['mix_fingerprint'][:12]}, "
                          f"the config's mix has {current['mix_fingerprint'][:12]})")


def check_branchable(meta: dict[str, Any], current: dict[str, Any], path: Path) -> None:
    """A checkpoint of another run may be continued on another mix if model, optimizer and schedule agree."""
    _check_model_and_optim(meta, current, f"cannot continue from {path}")
    if is_weights_only(meta):
        raise MixkitError(f"cannot continue from {path}: it holds the weights only (the end of its run's LR "
                          f"schedule); use it as init_from to start a new schedule from its weights")
    if meta.get("total_steps") != current.get("total_steps"):
        raise MixkitError(f"cannot continue from {path}: its LR schedule spans {meta.get('total_steps')} steps, "
                          f"this run's spans {current.get('total_steps')} (build the mixes with the same --steps)")


def load_state(path: Path, device: torch.device) -> dict[str, Any]:
    try:
        with open(path / STATE_FILE, "rb") as f:
            return torch.load(f, map_location=device, weights_only=False)
    except (OSError, RuntimeError, EOFError) as e:
        raise MixkitError(f"{path}: unreadable checkpoint state ({e})") from None


def load_weights(model: torch.nn.Module, path: str | os.PathLike) -> None:
    """Model weights (only) from a checkpoint of ours (sharded ones too) or a Hugging Face GPT-NeoX directory."""
    if (Path(path) / META_FILE).exists() and has_dcp_state(path):
        read_dcp_weights(model, path)
        return
    if is_checkpoint(path):
        state = load_state(Path(path), torch.device("cpu"))
        model.load_state_dict(state["model"])
        return
    model.load_state_dict(from_hf(path).state_dict())
