"""The training run's configuration: a TOML file plus ``--set key=value`` overrides.

Layout (every key optional except ``mix`` and ``out_dir``)::

    mix = "midtrain-mix"        # mix name in the data dir, a mix directory path, or
                                # "python:package.module:function" returning a MixStream-like object
    data_dir = "mixkit-data"    # where mix names are looked up (default: $MIXKIT_DATA_DIR or ./mixkit-data)
    out_dir = "runs/midtrain"
    steps = 0                   # 0 = the stream's num_steps
    seed = 1234
    micro_batch = 8             # rows per forward pass on each rank
    grad_accum = 0              # 0 = derived: global_batch / (world_size · micro_batch)
    precision = "auto"          # auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16
    compile = false             # torch.compile the model
    device = "auto"             # auto | cpu | cuda
    tokenizer_sha256 = ""       # if set, the stream's tokenizer must have this hash
    init_from = ""              # a Hugging Face GPT-NeoX directory to start from (midtraining)
    eval_mix = ""               # a second stream to report loss on
    eval_interval = 0           # steps between evaluations (0 = never)
    eval_batches = 4
    checkpoint_interval = 1000
    keep_checkpoints = 3
    keep_steps = []             # steps whose checkpoints are always written and kept (branch points)
    stop_step = 0               # stop after this step; the LR schedule still spans `steps` (0 = steps)
    branch_from = ""            # a checkpoint of another run to continue (model, optimizer, schedule, step)
    peak_flops = 0.0            # per device, for MFU; 0 = look up known CUDA GPUs

    [model]                     # a named config plus any ModelConfig field
    name = "pythia-70m"

    [optim]
    lr = 3e-4
    min_lr = 1e-6
    warmup = 0.1                # < 1: fraction of steps; >= 1: steps
    beta1 = 0.9
    beta2 = 0.95
    eps = 1e-8
    weight_decay = 0.1
    grad_clip = 1.0

``--set optim.lr=1e-3`` or ``--set model.n_layer=2``: the value is parsed as a TOML value
(so ``true``, ``3``, ``"x"``), falling back to a bare string.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
from dataclasses import dataclass, field, fields
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from mixkit.errors import MixkitError
from trainer.model import ModelConfig, model_config


def _check_type(key: str, value: Any, kind: type) -> Any:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, bool):
        raise MixkitError(f"{key} must be an integer, got {value!r}")
    if not isinstance(value, kind):
        raise MixkitError(f"{key} must be {kind.__name__}, got {value!r}")
    return value


@dataclass
class OptimConfig:
    """AdamW and the cosine-with-warmup schedule (GPT-NeoX / Pythia defaults, paper's LR range)."""

    lr: float = 3e-4
    min_lr: float = 1e-6
    warmup: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    weight_decay: float = 0.1
    grad_clip: float = 1.0

    def __post_init__(self) -> None:
        for f in fields(self):
            setattr(self, f.name, _check_type(f"optim.{f.name}", getattr(self, f.name), float))
            if not math.isfinite(getattr(self, f.name)):
                raise MixkitError(f"optim.{f.name} must be finite, got {getattr(self, f.name)!r}")
        if self.lr <= 0:
            raise MixkitError(f"optim.lr must be positive, got {self.lr}")
        if not 0 <= self.min_lr <= self.lr:
            raise MixkitError(f"optim.min_lr must be in [0, optim.lr], got {self.min_lr}")
        if self.warmup < 0:
            raise MixkitError(f"optim.warmup must be >= 0 (a fraction < 1 or a step count), got {self.warmup}")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise MixkitError(f"optim.{name} must be in [0, 1), got {getattr(self, name)}")
        for name in ("eps", "grad_clip"):
            if getattr(self, name) <= 0:
                raise MixkitError(f"optim.{name} must be positive, got {getattr(self, name)}")
        if self.weight_decay < 0:
            raise MixkitError(f"optim.weight_decay must be >= 0, got {self.weight_decay}")

    def warmup_steps(self, total_steps: int) -> int:
        return int(round(self.warmup * total_steps)) if self.warmup < 1 else int(self.warmup)


@dataclass
class TrainConfig:
    mix: str
    out_dir: str
    model: dict[str, Any] = field(default_factory=lambda: {"name": "pythia-70m"})
    optim: OptimConfig = field(default_factory=OptimConfig)
    data_dir: str = ""
    steps: int = 0
    seed: int = 1234
    micro_batch: int = 8
    grad_accum: int = 0
    precision: str = "auto"
    compile: bool = False
    device: str = "auto"
    tokenizer_sha256: str = ""
    init_from: str = ""
    eval_mix: str = ""
    eval_interval: int = 0
    eval_batches: int = 4
    checkpoint_interval: int = 1000
    keep_checkpoints: int = 3
    peak_flops: float = 0.0
    keep_steps: list[int] = field(default_factory=list)
    stop_step: int = 0
    branch_from: str = ""

    def __post_init__(self) -> None:
        types = {"mix": str, "out_dir": str, "data_dir": str, "precision": str, "device": str, "tokenizer_sha256": str,
                 "init_from": str, "eval_mix": str, "compile": bool, "peak_flops": float,
                 "steps": int, "seed": int, "micro_batch": int, "grad_accum": int, "eval_interval": int,
                 "eval_batches": int, "checkpoint_interval": int, "keep_checkpoints": int, "stop_step": int,
                 "branch_from": str, "keep_steps": list}
        for key, kind in types.items():
            setattr(self, key, _check_type(key, getattr(self, key), kind))
        if not self.mix:
            raise MixkitError("mix must name a mix (from `mixkit build-mix`)")
        if not self.out_dir:
            raise MixkitError("out_dir must be a directory path")
        if not all(isinstance(k, int) and not isinstance(k, bool) and k > 0 for k in self.keep_steps):
            raise MixkitError(f"keep_steps must list positive step numbers, got {self.keep_steps!r}")
        for key in ("steps", "grad_accum", "eval_interval", "seed", "stop_step"):
            if getattr(self, key) < 0:
                raise MixkitError(f"{key} must be >= 0, got {getattr(self, key)}")
        for key in ("micro_batch", "eval_batches", "checkpoint_interval", "keep_checkpoints"):
            if getattr(self, key) <= 0:
                raise MixkitError(f"{key} must be positive, got {getattr(self, key)}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise MixkitError(f"precision must be auto, fp32 or bf16, got {self.precision!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise MixkitError(f"device must be auto, cpu or cuda, got {self.device!r}")
        if self.peak_flops < 0:
            raise MixkitError(f"peak_flops must be >= 0, got {self.peak_flops}")
        if isinstance(self.optim, dict):
            self.optim = _build(OptimConfig, self.optim, "optim.")
        if not isinstance(self.model, dict):
            raise MixkitError("model must be a table with at least `name`")
        self.model = dict(self.model)
        self.model.setdefault("name", "pythia-70m")
        self.model_config()  # validates the name and every override

    def model_config(self) -> ModelConfig:
        overrides = {k: v for k, v in self.model.items() if k != "name"}
        if not isinstance(self.model["name"], str):
            raise MixkitError(f"model.name must be a string, got {self.model['name']!r}")
        return model_config(self.model["name"], **overrides)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def resolved_data_dir(self) -> str | None:
        return self.data_dir or None


def _build(cls: type, table: dict[str, Any], prefix: str) -> Any:
    if not isinstance(table, dict):
        raise MixkitError(f"{prefix.rstrip('.')} must be a table")
    known = {f.name for f in fields(cls)}
    for key in table:
        if key not in known:
            raise MixkitError(f"unknown config key '{prefix}{key}' (known: {', '.join(sorted(known))})")
    try:
        return cls(**table)
    except TypeError as e:  # a required field is absent
        missing = [f.name for f in fields(cls) if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and f.name not in table]
        if missing:
            raise MixkitError(f"missing config key '{prefix}{missing[0]}'") from None
        raise MixkitError(str(e)) from None


def parse_value(text: str) -> Any:
    """A ``--set`` value: TOML syntax when it parses (numbers, booleans, quoted strings), else the bare text."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(table: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key=value`` / ``section.key=value`` strings to a raw config table (a copy)."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in table.items()}
    for item in overrides:
        if "=" not in item:
            raise MixkitError(f"--set expects key=value, got {item!r}")
        key, text = item.split("=", 1)
        key = key.strip()
        parts = key.split(".")
        if len(parts) > 2 or not all(parts):
            raise MixkitError(f"--set key {key!r} must be `key` or `section.key`")
        value = parse_value(text.strip())
        if len(parts) == 1:
            out[key] = value
        else:
            section = out.setdefault(parts[0], {})
            if not isinstance(section, dict):
                raise MixkitError(f"--set {key}: '{parts[0]}' is not a table")
            section[parts[1]] = value
    return out


def config_from_dict(table: dict[str, Any]) -> TrainConfig:
    return _build(TrainConfig, table, "")


def load_config(path: str | os.PathLike | None, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Read a TOML config (or start empty when ``path`` is None) and apply ``--set`` overrides."""
    return config_from_dict(read_table(path, overrides))


def read_table(path: str | os.PathLike | None, overrides: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """The raw TOML table of a config file (empty when ``path`` is None) with ``--set`` applied."""
    from mixkit.toml_file import read_toml

    table = read_toml(path) if path is not None else {}
    return apply_overrides(table, list(overrides))
