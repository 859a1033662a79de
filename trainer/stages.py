"""Stages: pretrain → midtrain → supervised finetuning in one run config, with evaluations.

A run config lists stages in order (``[[stages]]`` tables)::

    name = "code20"
    out_dir = "runs/code20"
    seed = 1234
    heldout = "c4-holdout"          # held-out pretraining documents: the forgetting measure
    heldout_docs = 1000
    [model]
    name = "pythia-14m"
    [optim]                         # pretrain/midtrain optimizer and schedule
    lr = 3e-4
    [[stages]]
    name = "pretrain"
    kind = "pretrain"
    mix = "base"                    # a mix from `mixkit build-mix`
    until = 6000                    # stop here; the LR schedule still spans the whole mix
    [[stages]]
    name = "midtrain"
    kind = "midtrain"
    mix = "code20"                  # continues model, optimizer, schedule and step from the stage before
    [[stages]]
    name = "sft"
    kind = "sft"
    tasks = ["gsm8k", "code"]       # each task finetuned separately from the last non-SFT stage
    lr = 1e-4
    epochs = 2
    [tasks.gsm8k]
    train = "gsm8k/train.jsonl"
    val = "gsm8k/test.jsonl"

A pretrain or midtrain stage starts from the stage before it, from ``init`` (a
checkpoint directory, or for weights only a Hugging Face GPT-NeoX folder or a hub id with
``init_revision``, e.g. ``"EleutherAI/pythia-70m"`` at ``"step100000"``), or from
``trainer train --from CHECKPOINT`` for the first stage. Continuing from a checkpoint
of step S keeps the optimizer state and the LR schedule, as the paper resumed Pythia
from its step-S checkpoint with the mixture; the new stage's mix must have the same
samples as the old one before S (``mixkit build-mix`` makes every variant's prefix
identical to the base run's), which is checked on the last batch before S.

Every table is built with ``mixkit.config.from_table`` and the whole config is checked at
load, before any work: an unknown key in any stage or task, a task a stage names but no
``[tasks.NAME]`` defines, an SFT ``seq_len`` above the model's ``max_seq_len``, are refused
in the first second with the file, table and key named (a stage's table is named
``stages.NAME``, as ``--set stages.NAME.key=value`` names it).

``RUN/results.json`` (rewritten atomically after every stage and task; layout in
``trainer.run_dir``) holds each stage's steps and final loss, the evaluations after each
pretrain/midtrain stage (held-out loss, task validation losses before SFT), and per SFT
task its validation loss (answer tokens only) and held-out loss after finetuning. A
finished stage or task is not run again: rerunning the same command continues where it
stopped. The runner is ``trainer.stage_runner.run_stages``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mixkit.config import Where, config_keys, from_table, invalid, where_of
from trainer import checkpoint as ckpt
from trainer.config import (
    Device,
    Parallelism,
    Precision,
    TrainConfig,
    read_table,
    require_non_negative,
    require_positive,
    require_steps,
    take_old_keep_name,
)
from trainer.model import ModelSpec
from trainer.optim import OptimConfig
from trainer.run_dir import SFT_DIR_PREFIX
from trainer.sft import SFTConfig
from trainer.sft_data import TaskConfig
from trainer.train_log import LoggingConfig

STAGE_KINDS = ("pretrain", "midtrain", "sft")


def _check_stage_name(name: str) -> None:
    if "/" in name or name.startswith((".", SFT_DIR_PREFIX)):
        raise invalid("name", f"must be a simple folder name (no '/', not starting with '.' or "
                              f"'{SFT_DIR_PREFIX}'), got {name!r}")


@dataclass
class TrainStageConfig:
    """A pretrain or midtrain stage: training on one mix into ``RUN/<name>/``."""

    kind: Literal["pretrain", "midtrain"]
    mix: str
    name: str = ""  # "" = the kind
    until: int = 0  # stop after this step (0 = the end of the mix); the LR schedule spans the whole mix
    init: str = ""  # a checkpoint to continue, or a Hugging Face folder or hub id to start from
    init_revision: str = ""  # the hub revision of init ("step100000"; "" = main)
    micro_batch: int = 0  # 0 = the run's
    grad_accum: int = 0  # 0 = derived
    eval_interval: int = 0  # steps between evaluations during the stage (0 = only at its end)

    def __post_init__(self) -> None:
        self.name = self.name or self.kind
        _check_stage_name(self.name)
        if not self.mix:
            raise invalid("mix", f"required for a {self.kind} stage")
        require_non_negative(self, "until", "micro_batch", "grad_accum", "eval_interval")


@dataclass
class SFTStageConfig:
    """An SFT stage: each task finetuned separately, from the last pretrain/midtrain stage (or
    ``init``). Its table holds ``name``, ``kind``, ``tasks``, ``init`` and the ``SFTConfig`` keys."""

    kind: Literal["sft"]
    tasks: list[str]
    name: str = ""  # "" = the kind
    init: str = ""
    sft: SFTConfig = field(default_factory=SFTConfig, metadata={"config": False})

    def __post_init__(self) -> None:
        self.name = self.name or self.kind
        _check_stage_name(self.name)
        if not self.tasks:
            raise invalid("tasks", "list the task names to finetune on")


StageConfig = TrainStageConfig | SFTStageConfig


def stage_from_table(table: Any, where: Where) -> StageConfig:
    """A stage from its ``[[stages]]`` table; ``kind`` chooses the class."""
    kind = table.get("kind") if isinstance(table, dict) else None
    if kind == "sft":
        own, sft = config_keys(SFTStageConfig), config_keys(SFTConfig)
        unknown = [k for k in table if k not in own and k not in sft]
        if unknown:
            raise where.error(str(unknown[0]), f"unknown key (known: {', '.join(sorted(own + sft))})")
        sft_cfg = from_table(SFTConfig, {k: v for k, v in table.items() if k in sft}, where)
        return from_table(SFTStageConfig, {k: v for k, v in table.items() if k in own}, where, sft=sft_cfg)
    if kind is None and isinstance(table, dict):
        raise where.error("kind", f"missing (required: one of {', '.join(STAGE_KINDS)})")
    if isinstance(table, dict) and kind not in STAGE_KINDS:
        raise where.error("kind", f"expected one of {', '.join(STAGE_KINDS)}, got {kind!r}")
    return from_table(TrainStageConfig, table, where)


@dataclass
class RunConfig:
    """A staged run (the module docstring): shared settings, the stages in order, the SFT tasks.

    ``stages`` and ``tasks`` are built by ``run_config_from_dict`` (a stage's class depends on
    its kind, a task's name is its table's key); ``source`` is the table as given, written to
    ``RUN/run.json``.
    """

    name: str
    out_dir: str
    model: ModelSpec = field(default_factory=ModelSpec)
    optim: OptimConfig = field(default_factory=OptimConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    seed: int = 1234
    data_dir: str = ""
    tokenizer: str = ""
    device: Device = "auto"
    precision: Precision = "auto"
    compile: bool = False
    parallelism: Parallelism = "ddp"  # of the pretrain/midtrain stages; SFT is data-parallel either way
    micro_batch: int = 8
    checkpoint_interval: int = 1000
    keep_last: int = 2
    keep_checkpoints: int = 0  # the old name of keep_last (0 = not given)
    keep_steps: list[int] = field(default_factory=list)
    heldout: str = ""  # a held-out token store: the forgetting measure
    heldout_docs: int = 1000
    eval_batch: int = 8
    eval_seq_len: int = 0  # 0 = the pretraining sequence length
    peak_flops: float = 0.0
    stages: list[StageConfig] = field(default_factory=list, metadata={"config": False})
    tasks: dict[str, TaskConfig] = field(default_factory=dict, metadata={"config": False})
    source: dict[str, Any] = field(default_factory=dict, repr=False, metadata={"config": False})

    def __post_init__(self) -> None:
        for key in ("name", "out_dir"):
            if not getattr(self, key):
                raise invalid(key, "must not be empty")
        take_old_keep_name(self)
        require_positive(self, "micro_batch", "checkpoint_interval", "keep_last", "heldout_docs", "eval_batch")
        require_non_negative(self, "seed", "eval_seq_len", "peak_flops")
        require_steps(self, "keep_steps")
        if not self.stages:
            raise invalid("stages", "list at least one [[stages]] table")
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise invalid("stages", f"stage names must be unique, got {names}")
        max_seq_len = self.model.build().max_seq_len
        if self.eval_seq_len > max_seq_len:
            raise invalid("eval_seq_len", f"{self.eval_seq_len} is above the model's max_seq_len {max_seq_len}")
        seen_sft = False
        for s in self.stages:
            if isinstance(s, TrainStageConfig):
                if seen_sft:
                    raise invalid(f"stages.{s.name}.kind", "pretrain/midtrain stages must come before the SFT stages")
                continue
            seen_sft = True
            for t in s.tasks:
                if t not in self.tasks:
                    raise invalid(f"stages.{s.name}.tasks", f"names task {t!r} but there is no [tasks.{t}] table")
            if s.sft.seq_len > max_seq_len:
                raise invalid(f"stages.{s.name}.seq_len",
                              f"{s.sft.seq_len} is above the model's max_seq_len {max_seq_len}")

    def train_config(self, stage: TrainStageConfig, out_dir: Path, branch_from: str) -> TrainConfig:
        return TrainConfig(
            mix=stage.mix, out_dir=str(out_dir), model=self.model, optim=self.optim,
            data_dir=self.data_dir, seed=self.seed, micro_batch=stage.micro_batch or self.micro_batch,
            grad_accum=stage.grad_accum, parallelism=self.parallelism, precision=self.precision, compile=self.compile, device=self.device,
            init_from=stage.init if stage.init and not ckpt.is_checkpoint(stage.init) else "",
            branch_from=branch_from, stop_step=stage.until, checkpoint_interval=self.checkpoint_interval,
            keep_last=self.keep_last, keep_steps=list(self.keep_steps),
            eval_interval=stage.eval_interval, peak_flops=self.peak_flops, logging=self.logging,
            init_revision=stage.init_revision if stage.init and not ckpt.is_checkpoint(stage.init) else "",
        )


def _stage_table_name(i: int, table: Any) -> str:
    """``stages.NAME`` (NAME the stage's name, or its kind), as ``--set stages.NAME.key`` names it."""
    name = table.get("name", table.get("kind")) if isinstance(table, dict) else None
    return f"stages.{name}" if isinstance(name, str) and name else f"stages[{i}]"


def run_config_from_dict(table: dict[str, Any], where: Where | None = None) -> RunConfig:
    """A ``RunConfig`` from its table (a TOML file's, or one the study layer builds), checked whole."""
    where = where or Where()
    raw_stages = table.get("stages")
    if not isinstance(raw_stages, list) or not raw_stages:
        raise where.error("stages", "missing (required): a list of [[stages]] tables")
    stages = [stage_from_table(s, where.sub(_stage_table_name(i, s))) for i, s in enumerate(raw_stages)]
    raw_tasks = table.get("tasks", {})
    if not isinstance(raw_tasks, dict):
        raise where.error("tasks", "expected a table of [tasks.NAME] tables")
    tasks = {str(n): from_table(TaskConfig, t, where.sub("tasks").sub(str(n)), name=str(n)) for n, t in raw_tasks.items()}
    rest = {k: v for k, v in table.items() if k not in ("stages", "tasks")}
    return from_table(RunConfig, rest, where, stages=stages, tasks=tasks, source=table)


def load_run_config(path: str | os.PathLike, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Read a staged run config, apply ``--set`` overrides, and check it whole."""
    return run_config_from_dict(read_table(path, overrides), where_of(path))
