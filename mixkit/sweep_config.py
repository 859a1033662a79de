"""The sweep config: an experiment config whose ``[sweep]`` table replaces the variants by a grid.

::

    [sweep]
    datasets = ["code"]               # corpora mixed into the pretraining corpus from the start step on
    start_step = [0.1, 0.3, 0.5]      # fractions of schedule.steps (0 < f < 1), or absolute steps (integers ≥ 1)
    ratio = [0.1, 0.2, 0.4, 0.8]      # the added dataset's weight r (0 < r ≤ 1); the pretraining corpus gets 1 - r

Every (dataset, start step S, ratio r) is one midtraining variant with mix phases
``[0: pretrain=1, S: pretrain=1-r, dataset=r]``, named ``{dataset}{100 r}-at{S}`` (``code20-at36``).
The baseline ``base`` (the pretraining corpus alone to the end) runs with every seed, the grid
with the first seed. A fraction f becomes step ``max(1, round(f · steps))``.

The rest of the file is an experiment config (``mixkit.experiment_config``) without
``schedule.start_step`` (the sweep's start steps take its place) and without ``[variants]``
(the grid is the variants; a ``[variants]`` table may name only the baseline).
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mixkit.errors import MixkitError
from mixkit.experiment_config import ExperimentConfig, parse_experiment
from mixkit.toml_file import read_toml

BASELINE = "base"
_SWEEP_KEYS = {"datasets", "start_step", "ratio"}


@dataclass(frozen=True)
class GridPoint:
    """One midtraining variant of the sweep."""

    variant: str
    dataset: str
    start_step: int
    ratio: float
    mixture: str  # "c4:0.8,code:0.2"


@dataclass
class SweepConfig:
    """The experiment (its variants: the baseline and every grid point) and the grid's axes."""

    experiment: ExperimentConfig
    datasets: list[str]
    start_steps: list[int]  # resolved, ascending
    ratios: list[float]  # ascending
    start_spec: list[int | float] = field(default_factory=list)  # as written in the config

    def __post_init__(self) -> None:
        steps = self.experiment.schedule.steps
        if not self.datasets:
            raise MixkitError("sweep.datasets must name at least one corpus to mix in")
        if not self.start_steps or any(not 0 < s < steps for s in self.start_steps):
            raise MixkitError(f"sweep.start_step: every start step must be between 1 and steps - 1 = {steps - 1}, "
                              f"got {self.start_steps}")
        if not self.ratios or any(not 0 < r <= 1 for r in self.ratios):
            raise MixkitError(f"sweep.ratio: every ratio must be in (0, 1], got {self.ratios}")

    @property
    def name(self) -> str:
        return self.experiment.name

    @property
    def last_start(self) -> int:
        return self.start_steps[-1]

    @property
    def grid(self) -> list[GridPoint]:
        """Every grid point: by dataset, then start step, then ratio."""
        return [grid_point(self.experiment.schedule.pretrain, d, s, r)
                for d in self.datasets for s in self.start_steps for r in self.ratios]


def ratio_label(ratio: float) -> str:
    """0.2 -> "20", 0.125 -> "12.5": the percentage as written in variant names and plots."""
    return f"{round(100 * ratio, 6):g}"


def grid_point(pretrain: str, dataset: str, start_step: int, ratio: float) -> GridPoint:
    rest = round(1.0 - ratio, 10)
    mixture = f"{dataset}:1" if rest == 0 else f"{pretrain}:{rest:g},{dataset}:{ratio:g}"
    return GridPoint(f"{dataset}{ratio_label(ratio)}-at{start_step}", dataset, start_step, ratio, mixture)


def resolve_start_steps(values: Any, steps: int) -> list[int]:
    """Fractions (0 < f < 1) of ``steps`` -> ``max(1, round(f · steps))``; integers ≥ 1 stay; ascending, distinct."""
    if not isinstance(values, list) or not values:
        raise MixkitError(f"sweep.start_step must be a non-empty list, got {values!r}")
    out: dict[int, Any] = {}
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise MixkitError(f"sweep.start_step: {v!r} is neither a fraction of the steps nor a step")
        if isinstance(v, float):
            if not 0 < v < 1:
                raise MixkitError(f"sweep.start_step: {v!r}: a fraction must be between 0 and 1 (exclusive); "
                                  f"write absolute steps as integers")
            step = max(1, round(v * steps))
        else:
            step = v
        if not 0 < step < steps:
            raise MixkitError(f"sweep.start_step: {v!r} is step {step}, outside 1..{steps - 1} (schedule.steps = {steps})")
        if step in out:
            raise MixkitError(f"sweep.start_step: {out[step]!r} and {v!r} are both step {step}")
        out[step] = v
    return sorted(out)


def parse_sweep(table: dict[str, Any], base: Path | None = None) -> SweepConfig:
    table = copy.deepcopy(table)
    sweep = table.pop("sweep", None)
    if not isinstance(sweep, dict):
        raise MixkitError("missing config table [sweep] (datasets, start_step, ratio)")
    unknown = set(sweep) - _SWEEP_KEYS
    if unknown:
        raise MixkitError(f"unknown config key 'sweep.{sorted(unknown)[0]}' (known: {', '.join(sorted(_SWEEP_KEYS))})")
    for key in sorted(_SWEEP_KEYS):
        if key not in sweep:
            raise MixkitError(f"missing config key 'sweep.{key}'")
    schedule = table.get("schedule")
    if not isinstance(schedule, dict):
        raise MixkitError("missing config key 'schedule'")
    if "start_step" in schedule:
        raise MixkitError("schedule.start_step: a sweep config gives its start steps in sweep.start_step instead")
    steps = schedule.get("steps")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
        raise MixkitError(f"schedule.steps must be an integer ≥ 2, got {steps!r}")
    start_steps = resolve_start_steps(sweep["start_step"], steps)
    pretrain = schedule.get("pretrain")
    variants = table.get("variants", {"baseline": BASELINE, BASELINE: f"{pretrain}:1"})
    if not isinstance(variants, dict) or set(variants) - {"baseline", variants.get("baseline")}:
        raise MixkitError("variants: a sweep config's [variants] may only name the baseline (the grid is the variants)")

    ratios = sweep["ratio"]
    if (not isinstance(ratios, list) or not ratios
            or any(isinstance(r, bool) or not isinstance(r, (int, float)) for r in ratios)):
        raise MixkitError(f"sweep.ratio must be a non-empty list of numbers, got {ratios!r}")
    if len(set(ratios)) != len(ratios):
        raise MixkitError(f"sweep.ratio: values must be distinct, got {ratios}")
    datasets = sweep["datasets"]
    if isinstance(datasets, str):
        datasets = [datasets]
    if not isinstance(datasets, list) or not all(isinstance(d, str) for d in datasets) or len(set(datasets)) != len(datasets):
        raise MixkitError(f"sweep.datasets must list distinct corpus names, got {datasets!r}")
    corpora = table.get("corpora") or {}
    for d in datasets:
        if d not in corpora:
            raise MixkitError(f"sweep.datasets names '{d}', which is not in [corpora]")
        if d == pretrain:
            raise MixkitError(f"sweep.datasets: '{d}' is the pretraining corpus; name the data to mix into it")

    table["schedule"] = dict(schedule, start_step=start_steps[-1])
    baseline = variants.get("baseline", BASELINE)
    table["variants"] = {"baseline": baseline, baseline: variants.get(baseline, f"{pretrain}:1")}
    exp = parse_experiment(table, base)
    cfg = SweepConfig(exp, list(datasets), start_steps, sorted(float(r) for r in ratios), list(sweep["start_step"]))
    grid = {p.variant: p.mixture for p in cfg.grid}
    if baseline in grid:
        raise MixkitError(f"variants.baseline '{baseline}' clashes with a grid variant's name")
    cfg.experiment = replace(exp, variants={baseline: exp.variants[baseline], **grid})
    return cfg


def load_sweep(path: str | os.PathLike, base: Path | None = None) -> SweepConfig:
    return parse_sweep(read_toml(path, "sweep config"), base)

