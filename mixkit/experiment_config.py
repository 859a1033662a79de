"""The experiment config: the paper's design at a chosen scale, in one TOML file.

::

    name = "quickstart"
    seeds = [1234, 1235]        # the baseline runs with every seed; other variants with the first
    metric = "js"               # distance for the proximity advantage

    [corpora]                   # token stores to make: sources (globs; "@samples/" = bundled), preset
    c4 = { sources = ["@samples/c4.jsonl.gz"], preset = "c4", holdout_docs = 100 }
    code = { sources = ["@samples/code.jsonl.gz"], preset = "code" }

    [schedule]
    pretrain = "c4"             # the pretraining corpus (its NAME-holdout measures forgetting)
    steps = 120                 # total steps N; the LR schedule spans all of them
    start_step = 60             # S: where midtraining variants branch off the base run
    seq_len = 64
    global_batch = 8
    allow_repeat = true

    [variants]                  # the mixture from S on; "baseline" names the base-only variant
    baseline = "base"
    base = "c4:1"
    code20 = "c4:0.8,code:0.2"
    code100 = "code:1"

    [tasks.gsm8k]               # SFT tasks: trainer.sft_data.TaskConfig keys, plus the store
    train = "@samples/gsm8k_train.jsonl.gz"   # that stands for the task's distribution
    val = "@samples/gsm8k_test.jsonl.gz"
    target = "gsm8k"

    [model]                     # trainer model config
    [optim]                     # pretrain/midtrain optimizer
    [train]                     # micro_batch, device, precision, compile, checkpoint_interval, eval_batch,
                                # heldout_docs, eval_seq_len
    [sft]                       # trainer.sft.SFTConfig keys
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mixkit.errors import MixkitError
from mixkit.mixture import parse_mixture
from mixkit.presets import PRESETS
from mixkit.samples import SAMPLES_DIR
from mixkit.toml_file import read_toml

SAMPLES_PREFIX = "@samples/"
_TOP = {"name", "seeds", "metric", "corpora", "schedule", "variants", "tasks", "model", "optim", "train", "sft"}
_TRAIN = {"micro_batch", "device", "precision", "compile", "checkpoint_interval", "eval_batch", "heldout_docs",
          "eval_seq_len", "peak_flops"}


def resolve_source(text: str, base: Path | None) -> str:
    """``@samples/x`` → the bundled file; a relative path is relative to ``base``, or kept as
    written (relative to the working directory) when ``base`` is None, so manifests and
    reports do not record the machine's absolute paths."""
    if text.startswith(SAMPLES_PREFIX):
        return str(SAMPLES_DIR / text[len(SAMPLES_PREFIX):])
    p = Path(text)
    return str(p if p.is_absolute() or base is None else base / p)


@dataclass
class Corpus:
    name: str
    sources: list[str]
    preset: str
    holdout_docs: int = 0
    on_error: str = "raise"


@dataclass
class Schedule:
    pretrain: str
    steps: int
    start_step: int
    seq_len: int
    global_batch: int
    allow_repeat: bool = False
    mix_seed: int = 1234


@dataclass
class ExperimentConfig:
    name: str
    seeds: list[int]
    metric: str
    corpora: dict[str, Corpus]
    schedule: Schedule
    variants: dict[str, str]
    baseline: str
    tasks: dict[str, dict[str, Any]]
    model: dict[str, Any]
    optim: dict[str, Any]
    train: dict[str, Any]
    sft: dict[str, Any]
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def variant_names(self) -> list[str]:
        """The baseline first, then the others in config order."""
        return [self.baseline] + [v for v in self.variants if v != self.baseline]

    def task_target(self, task: str) -> str:
        return self.tasks[task].get("target", task)


def _need(table: dict[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in table:
        raise MixkitError(f"missing config key '{where}{key}'")
    value = table[key]
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise MixkitError(f"{where}{key} must be an integer, got {value!r}")
    if not isinstance(value, kind):
        raise MixkitError(f"{where}{key} must be {kind.__name__}, got {value!r}")
    return value


def parse_experiment(table: dict[str, Any], base: Path | None = None) -> ExperimentConfig:
    unknown = set(table) - _TOP
    if unknown:
        raise MixkitError(f"unknown config key '{sorted(unknown)[0]}' (known: {', '.join(sorted(_TOP))})")
    name = _need(table, "name", str, "")
    seeds = table.get("seeds", [1234, 1235])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds) or len(set(seeds)) != len(seeds):
        raise MixkitError(f"seeds must be a list of distinct integers, got {seeds!r}")

    corpora = {}
    for cname, c in _need(table, "corpora", dict, "").items():
        where = f"corpora.{cname}."
        sources = c.get("sources")
        if isinstance(sources, str):
            sources = [sources]
        if not sources or not all(isinstance(s, str) for s in sources):
            raise MixkitError(f"{where}sources must list files or globs")
        preset = _need(c, "preset", str, where)
        if preset not in PRESETS:
            raise MixkitError(f"{where}preset: unknown {preset!r} (known: {', '.join(PRESETS)})")
        unknown = set(c) - {"sources", "preset", "holdout_docs", "on_error"}
        if unknown:
            raise MixkitError(f"unknown config key '{where}{sorted(unknown)[0]}'")
        corpora[cname] = Corpus(cname, [resolve_source(s, base) for s in sources], preset, int(c.get("holdout_docs", 0)),
                                c.get("on_error", "raise"))

    s = _need(table, "schedule", dict, "")
    unknown = set(s) - {"pretrain", "steps", "start_step", "seq_len", "global_batch", "allow_repeat", "mix_seed"}
    if unknown:
        raise MixkitError(f"unknown config key 'schedule.{sorted(unknown)[0]}'")
    schedule = Schedule(_need(s, "pretrain", str, "schedule."), _need(s, "steps", int, "schedule."),
                        _need(s, "start_step", int, "schedule."), _need(s, "seq_len", int, "schedule."),
                        _need(s, "global_batch", int, "schedule."), bool(s.get("allow_repeat", False)),
                        int(s.get("mix_seed", 1234)))
    if schedule.pretrain not in corpora:
        raise MixkitError(f"schedule.pretrain names '{schedule.pretrain}', which is not in [corpora]")
    if not corpora[schedule.pretrain].holdout_docs:
        raise MixkitError(f"corpora.{schedule.pretrain}.holdout_docs: the pretraining corpus must hold out documents "
                          f"to measure forgetting")
    if not 0 < schedule.start_step < schedule.steps:
        raise MixkitError(f"schedule.start_step must be between 1 and steps - 1, got {schedule.start_step}")

    variants = dict(_need(table, "variants", dict, ""))
    baseline = variants.pop("baseline", None)
    if baseline is None or baseline not in variants:
        raise MixkitError("variants.baseline must name one of the variants (the base-only run)")
    for vname, expr in variants.items():
        if not isinstance(expr, str):
            raise MixkitError(f"variants.{vname} must be a mixture like \"c4:0.8,code:0.2\"")
        for store, _ in parse_mixture(expr) if ":" in expr else [(expr, 1.0)]:
            if store not in corpora:
                raise MixkitError(f"variants.{vname} mixes '{store}', which is not in [corpora]")

    tasks = _need(table, "tasks", dict, "")
    if not tasks:
        raise MixkitError("tasks: configure at least one [tasks.NAME]")
    resolved_tasks = {}
    for tname, t in tasks.items():
        t = dict(t)
        target = t.get("target", tname)
        if target not in corpora:
            raise MixkitError(f"tasks.{tname}.target names '{target}', which is not in [corpora]")
        for key in ("train", "val"):
            if key in t:
                items = [t[key]] if isinstance(t[key], str) else t[key]
                t[key] = [resolve_source(x, base) for x in items]
        resolved_tasks[tname] = t

    train = dict(table.get("train", {}))
    unknown = set(train) - _TRAIN
    if unknown:
        raise MixkitError(f"unknown config key 'train.{sorted(unknown)[0]}' (known: {', '.join(sorted(_TRAIN))})")
    metric = table.get("metric", "js")
    from mixkit.distance import METRIC_NAMES

    if metric not in METRIC_NAMES:
        raise MixkitError(f"metric must be one of {', '.join(METRIC_NAMES)}, got {metric!r}")
    return ExperimentConfig(name=name, seeds=seeds, metric=metric, corpora=corpora, schedule=schedule,
                            variants=variants, baseline=baseline, tasks=resolved_tasks,
                            model=dict(table.get("model", {"name": "tiny"})), optim=dict(table.get("optim", {})),
                            train=train, sft=dict(table.get("sft", {})), raw=table)


def load_experiment(path: str | os.PathLike, base: Path | None = None) -> ExperimentConfig:
    return parse_experiment(read_toml(path, "experiment config"), base)
