"""The training run's configuration: a TOML file plus ``--set key=value`` overrides.

Layout (every key optional except ``mix`` and ``out_dir``)::

    mix = "midtrain-mix"        # mix name in the data dir, a mix directory path, or
                                # "python:package.module:function" returning a MixStream-like object
    data_dir = "mixkit-data"    # where mix names are looked up (default: $MIXKIT_DATA_DIR or ./mixkit-data)
    out_dir = "runs/midtrain"
    steps = 0                   # 0 = the stream's num_steps
    seed = 1234
    micro_batch = 8             # the most rows one forward pass takes on a rank (a memory bound)
    grad_accum = 0              # 0 = derived from the mix's global batch and the world size:
                                # per rank global_batch / world_size rows, in micro-batches of the
                                # largest divisor of that which is <= micro_batch
    parallelism = "ddp"         # ddp (replicated model) | fsdp (FSDP2: sharded model, gradients and
                                # AdamW state; checkpoints through torch.distributed.checkpoint)
    precision = "auto"          # auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16
    compile = false             # torch.compile the model
    device = "auto"             # auto | cpu | cuda
    tokenizer_sha256 = ""       # if set, the stream's tokenizer must have this hash
    init_from = ""              # weights to start from (midtraining): a Hugging Face GPT-NeoX folder
                                # (model.safetensors or pytorch_model.bin) or a hub id ("EleutherAI/pythia-70m")
    init_revision = ""          # the hub revision of init_from ("step100000"; "" = main)
    eval_mix = ""               # a second stream to report loss on
    eval_interval = 0           # steps between evaluations (0 = never)
    eval_batches = 4
    checkpoint_interval = 1000
    keep_last = 3               # the newest checkpoints kept while the run goes on (keep_checkpoints: the old name)
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

    [logging]                   # progress lines, TensorBoard, W&B (``trainer.train_log``)
    log_interval = 10
    tensorboard = true
    wandb = false

Checkpoints (``trainer.checkpoint``): while the run goes on, the newest ``keep_last`` and
those at ``keep_steps``. When the run stops, only what can still be used stays: the final
checkpoint and those at ``keep_steps``; the final one holds the weights only when the LR
schedule is over (``steps`` reached: nothing can continue it), else also the optimizer,
schedule and RNG state that continuing needs.

Every table is built with ``mixkit.config.from_table``: an unknown key, a value of the wrong
type or out of range is refused at load with one line naming the file, the table and the
key (``run.toml: [optim] lrr: unknown key (known: beta1, ...)``). The ``[model]`` table is a
``trainer.model.ModelSpec``, ``[optim]`` a ``trainer.optim.OptimConfig``, ``[logging]`` a
``trainer.train_log.LoggingConfig``.

``--set optim.lr=1e-3`` or ``--set model.n_layer=2``: the value is parsed as a TOML value
(so ``true``, ``3``, ``"x"``), falling back to a bare string. A staged run config also takes
``--set stages.NAME.key=value`` (NAME a stage's name) and ``--set tasks.NAME.key=value``.
"""

from __future__ import annotations

import copy
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Literal

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from mixkit.config import Where, from_table, invalid, to_table, where_of
from mixkit.errors import MixkitError
from mixkit.toml_file import read_toml
from trainer.model import ModelConfig, ModelSpec
from trainer.optim import OptimConfig
from trainer.train_log import LoggingConfig

Precision = Literal["auto", "fp32", "bf16"]
Parallelism = Literal["ddp", "fsdp"]
Device = Literal["auto", "cpu", "cuda"]


def require_positive(cfg: Any, *keys: str) -> None:
    """``raise invalid(key, ...)`` for the first of ``keys`` whose value is not > 0."""
    for key in keys:
        if not getattr(cfg, key) > 0:
            raise invalid(key, f"must be positive, got {getattr(cfg, key)!r}")


def require_non_negative(cfg: Any, *keys: str) -> None:
    """``raise invalid(key, ...)`` for the first of ``keys`` whose value is below 0."""
    for key in keys:
        if not getattr(cfg, key) >= 0:
            raise invalid(key, f"must be >= 0, got {getattr(cfg, key)!r}")


def require_steps(cfg: Any, key: str) -> None:
    """``key`` must list positive step numbers."""
    if not all(k > 0 for k in getattr(cfg, key)):
        raise invalid(key, f"must list positive step numbers, got {getattr(cfg, key)!r}")


def take_old_keep_name(cfg: Any) -> None:
    """``keep_checkpoints`` (the old name) given: it is ``keep_last``."""
    if cfg.keep_checkpoints < 0:
        raise invalid("keep_checkpoints", f"must be positive, got {cfg.keep_checkpoints}")
    if cfg.keep_checkpoints:
        cfg.keep_last, cfg.keep_checkpoints = cfg.keep_checkpoints, 0


@dataclass
class TrainConfig:
    """A single-mix training run (``trainer train`` without ``[[stages]]``; one stage of a staged run)."""

    mix: str
    out_dir: str
    model: ModelSpec = field(default_factory=ModelSpec)
    optim: OptimConfig = field(default_factory=OptimConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    data_dir: str = ""
    steps: int = 0
    seed: int = 1234
    micro_batch: int = 8
    grad_accum: int = 0
    parallelism: Parallelism = "ddp"
    precision: Precision = "auto"
    compile: bool = False
    device: Device = "auto"
    tokenizer_sha256: str = ""
    init_from: str = ""
    init_revision: str = ""
    eval_mix: str = ""
    eval_interval: int = 0
    eval_batches: int = 4
    checkpoint_interval: int = 1000
    keep_last: int = 3
    keep_checkpoints: int = 0  # the old name of keep_last (0 = not given)
    peak_flops: float = 0.0
    keep_steps: list[int] = field(default_factory=list)
    stop_step: int = 0
    branch_from: str = ""

    def __post_init__(self) -> None:
        if not self.mix:
            raise invalid("mix", "must name a mix (from `mixkit build-mix`)")
        if not self.out_dir:
            raise invalid("out_dir", "must be a directory path")
        require_steps(self, "keep_steps")
        take_old_keep_name(self)
        require_non_negative(self, "steps", "grad_accum", "eval_interval", "seed", "stop_step", "peak_flops")
        require_positive(self, "micro_batch", "eval_batches", "checkpoint_interval", "keep_last")

    def model_config(self) -> ModelConfig:
        return self.model.build()

    def to_dict(self) -> dict[str, Any]:
        """The config as plain data (written into every checkpoint's ``meta.json``)."""
        return to_table(self)

    def resolved_data_dir(self) -> str | None:
        return self.data_dir or None


def parse_value(text: str) -> Any:
    """A ``--set`` value: TOML syntax when it parses (numbers, booleans, quoted strings), else the bare text."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(table: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key=value`` / ``section.key=value`` / ``stages.NAME.key=value`` strings to a raw
    config table (a copy). In a list of tables (``[[stages]]``) NAME selects the table whose
    ``name`` (or, without one, ``kind``) it is."""
    out = copy.deepcopy(table)
    for item in overrides:
        if "=" not in item:
            raise MixkitError(f"--set expects key=value, got {item!r}")
        key, text = item.split("=", 1)
        key = key.strip()
        parts = key.split(".")
        if not all(parts):
            raise MixkitError(f"--set key {key!r} must be `key`, `section.key` or `stages.NAME.key`")
        node: Any = out
        for depth, part in enumerate(parts[:-1]):
            if isinstance(node, dict):
                node = node.setdefault(part, {})
            elif isinstance(node, list):
                node = next((t for t in node if isinstance(t, dict) and t.get("name", t.get("kind")) == part), None)
                if node is None:
                    raise MixkitError(f"--set {key}: no table named {part!r} in '{'.'.join(parts[:depth])}'")
            if not isinstance(node, dict | list):
                raise MixkitError(f"--set {key}: '{'.'.join(parts[: depth + 1])}' is not a table")
        if not isinstance(node, dict):
            raise MixkitError(f"--set {key}: '{'.'.join(parts[:-1])}' is a list; name one of its tables")
        node[parts[-1]] = parse_value(text.strip())
    return out


def config_from_dict(table: dict[str, Any], where: Where | None = None) -> TrainConfig:
    """A ``TrainConfig`` from its table, every key checked (``where`` locates errors)."""
    return from_table(TrainConfig, table, where)


def load_config(path: str | os.PathLike | None, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Read a TOML config (or start empty when ``path`` is None) and apply ``--set`` overrides."""
    return config_from_dict(read_table(path, overrides), where_of(path))


def read_table(path: str | os.PathLike | None, overrides: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """The raw TOML table of a config file (empty when ``path`` is None) with ``--set`` applied."""
    table = read_toml(path) if path is not None else {}
    return apply_overrides(table, list(overrides))
