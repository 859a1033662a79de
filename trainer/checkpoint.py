"""Checkpoints: everything needed to continue a run bit for bit, written atomically and checked before use.

``OUT/checkpoints/step_00000120/`` (named by ``trainer.run_dir``) holds the state after 120 optimizer steps::

    model.safetensors        the model's state_dict (safetensors: tensors only, no pickle)
    train_state.safetensors  (full checkpoints only) the optimizer's tensors ``optimizer/{param}/{key}``
                             and the RNG tensors ``rng/torch``, ``rng/numpy``, ``rng/cuda/{i}``; its
                             safetensors metadata ``state`` is the JSON of the rest: the optimizer's
                             param_groups, the LR scheduler's state_dict, the RNG scalars
    meta.json                {step, config (the whole TrainConfig), model_config, mix_fingerprint,
                              tokenizer_sha256, tokenizer (the stores' tokenizer description), weights_only,
                              format: 2, files: {file name: sha256 of its bytes}, meta_sha256}

``meta_sha256`` is the sha256 of meta.json's canonical JSON without that key (``json.dumps(...,
sort_keys=True, separators=(",", ":"))``), so an edited ``step`` is caught like a changed weight.
Every load checks meta.json and the sha256 of each file it reads before using a byte: a resume
(``--resume``) whose newest checkpoint is damaged falls back to the newest intact one, saying so in
one line; ``--from``, ``init_from`` and ``trainer export`` refuse a damaged checkpoint, naming the file.
Nothing is unpickled: the optimizer state is flattened into safetensors plus JSON. A state that
does not fit the model or optimizer (another shape, a missing tensor) is refused in one line.

Checkpoints of the older format (``state.pt``, a pickle, no checksums) are recognised and refused
with a message: they cannot be checked, and loading them would unpickle.

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
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from mixkit import atomic
from mixkit.error_lines import exception_detail
from mixkit.errors import MixkitError
from mixkit.integrity import canonical_sha256
from mixkit.store import sha256_file
from trainer.dcp_files import has_dcp_state, read_dcp_weights
from trainer.hf import from_hf
from trainer.run_dir import checkpoints_dir, step_dir

MODEL_FILE = "model.safetensors"
TRAIN_STATE_FILE = "train_state.safetensors"
META_FILE = "meta.json"
STATE_FILE = "state.pt"  # the older format's single pickle; recognised, never loaded
FORMAT = 2

# Config keys that define the run; a checkpoint made with other values cannot be resumed.
IDENTITY_KEYS = ("seed", "precision", "micro_batch", "grad_accum", "init_from", "init_revision")


class CheckpointDamaged(MixkitError):
    """A checkpoint whose meta.json or one of whose files does not match its recorded sha256."""


def is_checkpoint(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a complete checkpoint of ours (not a Hugging Face directory, not a half one);
    an FSDP run's sharded checkpoint (``trainer.distributed_checkpoint``) is one too."""
    p = Path(path)
    return (p / META_FILE).is_file() and ((p / MODEL_FILE).is_file() or (p / STATE_FILE).is_file() or has_dcp_state(p))


def _step_of(path: Path) -> int | None:
    try:
        return int(path.name.split("_")[1])
    except (IndexError, ValueError):
        return None


def list_checkpoints(out_dir: str | Path) -> list[Path]:
    """Complete checkpoints, oldest first (temporary ``.step_*`` directories are ignored)."""
    d = checkpoints_dir(out_dir)
    if not d.is_dir():
        return []
    found = [p for p in d.glob("step_*") if p.is_dir() and _step_of(p) is not None and is_checkpoint(p)]
    return sorted(found, key=lambda p: _step_of(p))


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


# -- checksums ------------------------------------------------------------------------------------


file_sha256 = sha256_file  # the sha256 recorded for each checkpoint file in meta.json


def meta_digest(meta: dict[str, Any]) -> str:
    """sha256 of meta.json's canonical JSON, ``meta_sha256`` left out."""
    return canonical_sha256({k: v for k, v in meta.items() if k != "meta_sha256"})


# -- the training state as safetensors + JSON -------------------------------------------------------


def _flatten_train_state(optimizer: torch.optim.Optimizer | None, scheduler: Any,
                         rng: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The optimizer, scheduler and RNG state as (tensors, JSON): the layout in the module docstring.
    ``optimizer`` None: the schedule and RNG only (an FSDP checkpoint keeps its optimizer in DCP's shards)."""
    opt = optimizer.state_dict() if optimizer is not None else {"state": {}, "param_groups": []}
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for param, entry in opt["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer/{param}/{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(param), {})[key] = value
    tensors["rng/torch"] = rng["torch"]
    name, keys, pos, has_gauss, cached = rng["numpy"]
    tensors["rng/numpy"] = torch.from_numpy(np.asarray(keys, dtype=np.int64))
    for i, t in enumerate(rng.get("cuda", [])):
        tensors[f"rng/cuda/{i}"] = t.cpu()
    version, mt, gauss = rng["python"]
    state = {"optimizer": {"param_groups": opt["param_groups"], "scalars": scalars},
             "scheduler": scheduler.state_dict(),
             "rng": {"numpy": [name, int(pos), int(has_gauss), float(cached)], "python": [version, list(mt), gauss],
                     "cuda": len(rng.get("cuda", []))}}
    return tensors, state


def _unflatten_train_state(tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> dict[str, Any]:
    """Inverse of ``_flatten_train_state``: ``{optimizer, scheduler, rng}`` as ``state_dict``s take them."""
    opt_state: dict[int, dict[str, Any]] = {}
    for name, t in tensors.items():
        if name.startswith("optimizer/"):
            _, param, key = name.split("/", 2)
            opt_state.setdefault(int(param), {})[key] = t
    for param, entry in state["optimizer"]["scalars"].items():
        opt_state.setdefault(int(param), {}).update(entry)
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in state["optimizer"]["param_groups"]]
    name, pos, has_gauss, cached = state["rng"]["numpy"]
    version, mt, gauss = state["rng"]["python"]
    rng: dict[str, Any] = {
        "torch": tensors["rng/torch"],
        "numpy": (name, tensors["rng/numpy"].numpy().astype(np.uint32), pos, has_gauss, cached),
        "python": (version, tuple(mt), gauss),
    }
    if state["rng"]["cuda"]:
        rng["cuda"] = [tensors[f"rng/cuda/{i}"] for i in range(state["rng"]["cuda"])]
    return {"optimizer": {"state": opt_state, "param_groups": groups}, "scheduler": state["scheduler"], "rng": rng}


def _write_safetensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> str:
    """Write ``tensors`` (durably) and return the sha256 of the file.

    safetensors reports a failed write (a full disk) as ``SafetensorError: ... Os { code: 28, ... }``;
    it is raised again as the ``OSError`` it was, naming the file.
    """
    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)
    except SafetensorError as e:
        code = re.search(r"Os \{ code: (\d+)", str(e))
        if code is None:
            raise
        raise OSError(int(code.group(1)), os.strerror(int(code.group(1))), str(path)) from e
    with open(path, "rb+") as f:
        os.fchmod(f.fileno(), atomic.file_mode())  # safetensors writes 0600 whatever the umask
        os.fsync(f.fileno())
    return file_sha256(path)


def write_schedule_state(path: Path, scheduler: Any) -> str:
    """The LR schedule and RNG state alone, as ``train_state.safetensors`` lays them out (no optimizer);
    returns the file's sha256. What an FSDP checkpoint keeps beside DCP's shards."""
    tensors, state = _flatten_train_state(None, scheduler, rng_state())
    return _write_safetensors(path, tensors, {"state": json.dumps(state)})


def read_schedule_state(path: Path) -> dict[str, Any]:
    """``{scheduler, rng}`` from ``write_schedule_state``'s file, refused in one line when it is not one."""
    tensors, metadata = _read_safetensors(path)
    try:
        unflat = _unflatten_train_state(tensors, json.loads(metadata["state"]))
    except (KeyError, ValueError, TypeError, IndexError, AttributeError) as e:
        raise MixkitError(f"{path}: not a schedule state of ours ({type(e).__name__}: {e})") from None
    return {"scheduler": unflat["scheduler"], "rng": unflat["rng"]}


def write_meta(folder: Path, meta: dict[str, Any]) -> None:
    """``folder/meta.json`` with its own ``meta_sha256`` (``meta["files"]``: each file's sha256)."""
    record = {k: v for k, v in meta.items() if k != "meta_sha256"}
    atomic.write_json(folder / META_FILE, {**record, "meta_sha256": meta_digest(record)})


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
    with atomic.atomic_dir(path, overwrite=True) as tmp:
        files = {MODEL_FILE: _write_safetensors(tmp / MODEL_FILE, model.state_dict())}
        if full:
            tensors, state = _flatten_train_state(optimizer, scheduler, rng_state())
            files[TRAIN_STATE_FILE] = _write_safetensors(tmp / TRAIN_STATE_FILE, tensors,
                                                         {"state": json.dumps(state, sort_keys=True)})
        write_meta(tmp, {**meta, "step": step, "weights_only": not full, "format": FORMAT, "files": files})
    # Newer checkpoints than this one exist only when a resume passed over damaged ones: they are
    # not counted (the run replaces each when it gets there).
    for old in [p for p in list_checkpoints(out_dir) if _step_of(p) <= step][:-keep]:
        if _step_of(old) not in keep_steps:
            shutil.rmtree(old, ignore_errors=True)
    return path


def is_weights_only(meta: dict[str, Any]) -> bool:
    """Whether a checkpoint (by its ``meta.json``) holds the model weights only."""
    return bool(meta.get("weights_only", False))


def _is_legacy(path: Path) -> bool:
    return not (path / MODEL_FILE).exists() and (path / STATE_FILE).exists()


def read_meta(path: Path) -> dict[str, Any]:
    """``meta.json`` of a checkpoint, checked against its ``meta_sha256`` (an older-format one unchecked)."""
    path = Path(path)
    try:
        meta = json.loads((path / META_FILE).read_text(encoding="utf-8"))
    except OSError as e:
        raise MixkitError(f"{path / META_FILE}: unreadable ({e.strerror})") from None
    except (ValueError, RecursionError) as e:  # not UTF-8, not JSON
        raise CheckpointDamaged(f"{path / META_FILE}: damaged (not readable JSON: {str(e).splitlines()[0]})") from None
    if not isinstance(meta, dict):
        raise CheckpointDamaged(f"{path / META_FILE}: damaged (not a JSON object)")
    if "files" in meta or "meta_sha256" in meta or not _is_legacy(path):
        if meta.get("meta_sha256") != meta_digest(meta):
            raise CheckpointDamaged(f"{path / META_FILE}: damaged or edited (its content does not match its meta_sha256)")
        if _step_of(path) is not None and meta.get("step") != _step_of(path):
            raise CheckpointDamaged(f"{path / META_FILE}: says step {meta.get('step')!r}, the folder is {path.name}")
    return meta


def _refuse_legacy(path: Path) -> None:
    if _is_legacy(path):
        raise MixkitError(f"{path}: a checkpoint of the older format ({STATE_FILE}, a pickle without checksums), "
                          f"which this version does not load; train it again, or export it with the version that wrote it")


def verify_checkpoint(path: str | os.PathLike, *, weights_only: bool = False) -> dict[str, Any]:
    """Check meta.json and the sha256 of every file a load reads (the model's only with ``weights_only``).

    Returns the verified meta; raises ``CheckpointDamaged`` naming the first damaged file.
    """
    path = Path(path)
    _refuse_legacy(path)
    meta = read_meta(path)
    files = meta.get("files")
    if not isinstance(files, dict):
        raise CheckpointDamaged(f"{path / META_FILE}: damaged (no file checksums)")
    for key, kind in (("step", int), ("model_config", dict), ("config", dict)):
        if not isinstance(meta.get(key), kind):
            raise CheckpointDamaged(f"{path / META_FILE}: damaged (no {key!r})")
    if meta.get("format") == "dcp":  # an FSDP run's: every shard file and the schedule state (trainer.distributed_checkpoint)
        needed = sorted(files)
    else:
        needed = [MODEL_FILE] if weights_only or is_weights_only(meta) else [MODEL_FILE, TRAIN_STATE_FILE]
    for name in needed:
        if name not in files:
            raise CheckpointDamaged(f"{path / META_FILE}: damaged (no sha256 of {name})")
        f = path / name
        if not f.is_file():
            raise CheckpointDamaged(f"{f}: missing")
        if file_sha256(f) != files[name]:
            raise CheckpointDamaged(f"{f}: damaged (its sha256 differs from the one in {META_FILE})")
    return meta


def latest_intact_checkpoint(out_dir: str | Path, say: Any = None) -> Path | None:
    """The newest checkpoint of ``out_dir`` that verifies, for ``--resume``.

    Damaged newer ones are passed over with one line through ``say`` (default: stderr); when
    checkpoints exist but none is intact, or one is of the older format, it refuses.
    """
    say = say or (lambda line: print(line, file=sys.stderr, flush=True))
    found = list_checkpoints(out_dir)
    damaged: list[CheckpointDamaged] = []
    for path in reversed(found):
        try:
            verify_checkpoint(path)
        except CheckpointDamaged as e:
            damaged.append(e)
            continue
        if damaged:
            skipped = ", ".join(str(e.message) for e in damaged)
            say(f"warning: {skipped}; resuming from the previous intact checkpoint {path.name}")
        return path
    if damaged:
        raise MixkitError(f"no intact checkpoint to resume from in {checkpoints_dir(out_dir)}: "
                          f"{damaged[0].message} (remove the damaged checkpoints to start over)")
    return None


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


def _read_safetensors(path: Path, device: torch.device | str = "cpu") -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise MixkitError(f"{path}: not a readable safetensors file ({exception_detail(e)})") from None


def _load_train_state(path: Path, device: torch.device) -> dict[str, Any]:
    tensors, metadata = _read_safetensors(path / TRAIN_STATE_FILE, device)
    try:
        state = json.loads(metadata["state"])
        unflat = _unflatten_train_state({k: v.cpu() if k.startswith("rng/") else v for k, v in tensors.items()}, state)
    except (KeyError, ValueError, TypeError, IndexError, AttributeError) as e:
        raise MixkitError(f"{path / TRAIN_STATE_FILE}: not a training state of ours ({type(e).__name__}: {e})") from None
    return unflat


def load_state(path: Path, device: torch.device, *, verify: bool = True) -> dict[str, Any]:
    """``{model}`` (weights-only) or ``{model, optimizer, scheduler, rng}``, each as its ``load_state_dict`` takes it.

    The files are checked against meta.json first (``verify = False`` when the caller just did).
    """
    path = Path(path)
    _refuse_legacy(path)
    meta = verify_checkpoint(path) if verify else read_meta(path)
    model, _ = _read_safetensors(path / MODEL_FILE, device)
    state: dict[str, Any] = {"model": model}
    if not is_weights_only(meta):
        state.update(_load_train_state(path, device))
    return state


def load_model_state(model: torch.nn.Module, weights: dict[str, torch.Tensor], source: str | os.PathLike) -> None:
    """``model.load_state_dict(weights)``, refused in one line naming ``source`` when they do not fit."""
    own = model.state_dict()
    missing = [k for k in own if k not in weights]
    extra = [k for k in weights if k not in own]
    if missing or extra:
        what = f"lacks {missing[0]}" if missing else f"has {extra[0]}, which the model does not"
        raise MixkitError(f"{source}: does not fit the model ({what}; "
                          f"{len(missing)} tensors missing, {len(extra)} unexpected)")
    for k, t in own.items():
        if tuple(weights[k].shape) != tuple(t.shape):
            shape = lambda s: "x".join(map(str, s)) or "scalar"  # noqa: E731
            raise MixkitError(f"{source}: does not fit the model ({k} is {shape(weights[k].shape)} there, "
                              f"{shape(t.shape)} in the model: another model config)")
    try:
        model.load_state_dict(weights)
    except (RuntimeError, ValueError, TypeError) as e:
        raise MixkitError(f"{source}: does not fit the model ({str(e).splitlines()[0]})") from None


def load_training_state(optimizer: torch.optim.Optimizer, scheduler: Any, state: dict[str, Any],
                        source: str | os.PathLike) -> None:
    """Optimizer, scheduler and RNG state from ``load_state``, refused in one line when they do not fit."""
    try:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
    except (KeyError, RuntimeError, ValueError, TypeError, IndexError) as e:
        raise MixkitError(f"{source}: its optimizer state does not fit this optimizer "
                          f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None


def load_weights(model: torch.nn.Module, path: str | os.PathLike, *, verify: bool = True) -> None:
    """Model weights (only) from a checkpoint of ours (verified first, unless the caller just did with
    ``verify_checkpoint``) or a Hugging Face GPT-NeoX directory."""
    if (Path(path) / META_FILE).exists() and has_dcp_state(path):
        if verify:
            verify_checkpoint(path, weights_only=True)
        read_dcp_weights(model, path)
        return
    if is_checkpoint(path):
        path = Path(path)
        _refuse_legacy(path)
        if verify:
            verify_checkpoint(path, weights_only=True)
        weights, _ = _read_safetensors(path / MODEL_FILE)
        load_model_state(model, weights, path / MODEL_FILE)
        return
    model.load_state_dict(from_hf(path).state_dict())
