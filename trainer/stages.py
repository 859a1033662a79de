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
checkpoint directory, or a Hugging Face GPT-NeoX directory for weights only), or from
``trainer train --from CHECKPOINT`` for the first stage. Continuing from a checkpoint
of step S keeps the optimizer state and the LR schedule, as the paper resumed Pythia
from its step-S checkpoint with the mixture; the new stage's mix must have the same
samples as the old one before S (``mixkit build-mix`` makes every variant's prefix
identical to the base run's), which is checked on the last batch before S.

``RUN/results.json`` (rewritten atomically after every stage and task) holds each
stage's steps and final loss, the evaluations after each pretrain/midtrain stage
(held-out loss, task validation losses before SFT), and per SFT task its validation
loss (answer tokens only) and held-out loss after finetuning. A finished stage or
task is not run again: rerunning the same command continues where it stopped.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mixkit.errors import MixkitError
from trainer import checkpoint as ckpt
from trainer.config import OptimConfig, TrainConfig, read_table
from trainer.sft import SFTConfig
from trainer.sft_data import TaskConfig

STAGE_KINDS = ("pretrain", "midtrain", "sft")
_TRAIN_KEYS = {"name", "kind", "mix", "until", "init", "micro_batch", "grad_accum", "eval_interval"}
_SFT_KEYS = {"name", "kind", "tasks", "init"} | {f.name for f in dataclasses.fields(SFTConfig)}


@dataclass
class StageConfig:
    name: str
    kind: str
    mix: str = ""
    until: int = 0
    init: str = ""
    micro_batch: int = 0
    grad_accum: int = 0
    eval_interval: int = 0
    tasks: list[str] = field(default_factory=list)
    sft: SFTConfig | None = None

    @classmethod
    def from_dict(cls, i: int, d: dict[str, Any]) -> StageConfig:
        where = f"stages[{i}]"
        kind = d.get("kind")
        if kind not in STAGE_KINDS:
            raise MixkitError(f"{where}.kind must be one of {', '.join(STAGE_KINDS)}, got {kind!r}")
        name = d.get("name", kind if kind != "sft" else "sft")
        if not isinstance(name, str) or not name or "/" in name:
            raise MixkitError(f"{where}.name must be a simple name, got {name!r}")
        known = _SFT_KEYS if kind == "sft" else _TRAIN_KEYS
        unknown = set(d) - known
        if unknown:
            raise MixkitError(f"unknown key '{where}.{sorted(unknown)[0]}' for a {kind} stage (known: {', '.join(sorted(known))})")
        if kind == "sft":
            tasks = d.get("tasks")
            if not tasks or not isinstance(tasks, list) or not all(isinstance(t, str) for t in tasks):
                raise MixkitError(f"{where}.tasks must list the task names to finetune on")
            sft_args = {k: v for k, v in d.items() if k not in ("name", "kind", "tasks", "init")}
            try:
                sft = SFTConfig(**sft_args)
            except TypeError as e:
                raise MixkitError(f"{where}: {e}") from None
            return cls(name=name, kind=kind, tasks=list(tasks), init=d.get("init", ""), sft=sft)
        if not d.get("mix"):
            raise MixkitError(f"{where}.mix is required for a {kind} stage")
        for key in ("until", "micro_batch", "grad_accum", "eval_interval"):
            if not isinstance(d.get(key, 0), int) or d.get(key, 0) < 0:
                raise MixkitError(f"{where}.{key} must be a non-negative integer, got {d.get(key)!r}")
        return cls(name=name, kind=kind, mix=d["mix"], until=d.get("until", 0), init=d.get("init", ""),
                   micro_batch=d.get("micro_batch", 0), grad_accum=d.get("grad_accum", 0),
                   eval_interval=d.get("eval_interval", 0))


@dataclass
class RunConfig:
    name: str
    out_dir: str
    stages: list[StageConfig]
    model: dict[str, Any] = field(default_factory=lambda: {"name": "pythia-70m"})
    optim: dict[str, Any] = field(default_factory=dict)
    tasks: dict[str, TaskConfig] = field(default_factory=dict)
    seed: int = 1234
    data_dir: str = ""
    tokenizer: str = ""
    device: str = "auto"
    precision: str = "auto"
    compile: bool = False
    micro_batch: int = 8
    checkpoint_interval: int = 1000
    keep_checkpoints: int = 2
    keep_steps: list[int] = field(default_factory=list)
    heldout: str = ""
    heldout_docs: int = 1000
    eval_batch: int = 8
    eval_seq_len: int = 0
    peak_flops: float = 0.0
    source: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not self.stages:
            raise MixkitError("stages: list at least one [[stages]] table")
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise MixkitError(f"stages: names must be unique, got {names}")
        for s in self.stages:
            for t in s.tasks:
                if t not in self.tasks:
                    raise MixkitError(f"stage '{s.name}' names task '{t}' but there is no [tasks.{t}] table")
        seen_sft = False
        for s in self.stages:
            if s.kind == "sft":
                seen_sft = True
            elif seen_sft:
                raise MixkitError(f"stage '{s.name}': pretrain/midtrain stages must come before the SFT stages")
        OptimConfig(**self.optim) if self.optim else OptimConfig()

    def train_config(self, stage: StageConfig, out_dir: Path, branch_from: str) -> TrainConfig:
        return TrainConfig(
            mix=stage.mix, out_dir=str(out_dir), model=dict(self.model), optim=OptimConfig(**self.optim),
            data_dir=self.data_dir, seed=self.seed, micro_batch=stage.micro_batch or self.micro_batch,
            grad_accum=stage.grad_accum, precision=self.precision, compile=self.compile, device=self.device,
            init_from=stage.init if stage.init and not ckpt.is_checkpoint(stage.init) else "",
            branch_from=branch_from, stop_step=stage.until, checkpoint_interval=self.checkpoint_interval,
            keep_checkpoints=self.keep_checkpoints, keep_steps=list(self.keep_steps),
            eval_interval=stage.eval_interval, peak_flops=self.peak_flops,
        )


_RUN_KEYS = {f.name for f in dataclasses.fields(RunConfig)} - {"source"}


def run_config_from_dict(table: dict[str, Any], base_dir: Path | None = None) -> RunConfig:
    unknown = set(table) - _RUN_KEYS
    if unknown:
        raise MixkitError(f"unknown config key '{sorted(unknown)[0]}' (known: {', '.join(sorted(_RUN_KEYS))})")
    for key in ("name", "out_dir"):
        if not isinstance(table.get(key), str) or not table.get(key):
            raise MixkitError(f"missing config key '{key}'")
    raw_stages = table.get("stages")
    if not isinstance(raw_stages, list) or not raw_stages:
        raise MixkitError("missing config key 'stages' (a list of [[stages]] tables)")
    stages = [StageConfig.from_dict(i, s) for i, s in enumerate(raw_stages)]
    tasks_raw = table.get("tasks", {})
    if not isinstance(tasks_raw, dict):
        raise MixkitError("tasks must be a table of [tasks.NAME] tables")
    tasks = {n: TaskConfig.from_dict(n, t, base_dir) for n, t in tasks_raw.items()}
    rest = {k: v for k, v in table.items() if k not in ("stages", "tasks")}
    return RunConfig(stages=stages, tasks=tasks, source=table, **rest)


def load_run_config(path: str | os.PathLike, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    return run_config_from_dict(read_table(path, overrides))


def run_stages(cfg: RunConfig, *, branch_from: str = "", log=print) -> dict[str, Any]:
    """Transitional alias of ``trainer.stage_runner.run_stages`` for callers not yet moved to it.

    It imports the runner inside the function because the runner imports this module; delete
    it once no caller imports ``run_stages`` from here.
    """
    from trainer.stage_runner import run_stages as run

    return run(cfg, branch_from=branch_from, log=log)
