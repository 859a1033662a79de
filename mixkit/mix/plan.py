"""What a mix is: phases of dataset weights over a run of training steps.

A plan is a list of phases, each ``(start_step, {dataset: weight})``; phase ``p``
covers steps ``[start_p, start_{p+1})`` (the last one runs to ``steps``), i.e. the
global samples ``[start_p * global_batch, end_p * global_batch)``. Weights within a
phase are normalised (``w / sum(w)``, as Megatron does); a dataset may appear in any
phase, and its stream continues across phases where it left off.

Three ways to write one (all give a ``MixPlan``):

* ``--base c4 --add code --ratio 0.2 --start-step 6000``: ``0:c4=1`` then
  ``6000:c4=0.8,code=0.2`` (``--start-step 0`` mixes from the start, no ``--add`` is
  the base-only baseline);
* ``--phase "0:c4=1" --phase "6000:c4=0.8,code=0.15,math=0.05"``;
* ``--plan plan.toml`` with the same phases::

      steps = 61035          # optional here, as seq_len, global_batch, seed, shuffle; the command line wins
      [[phase]]
      start = 0
      weights = { c4 = 1.0 }
      [[phase]]
      start = 6000
      weights = { c4 = 0.8, code = 0.15, math = 0.05 }

``plan_from_options`` takes any of the three with the run settings (what ``mixkit
build-mix`` does); a phase's weights are a mixture (``mixkit.mixture``: ``=`` or ``:``,
a bare name weighs 1). Configs follow ``mixkit.config``: ``MixPlan`` and ``Phase``
check themselves whole when made, and a plan file is read with ``from_table``, so its
errors name the file, the table and the key. Each default is written once, in
``MixPlan``.

``shuffle`` chooses how each dataset's samples are ordered (the blending is the same):
``"mixkit"`` (the default) shuffles every epoch of a dataset on its own, seeded from
``(seed, dataset name, epoch)``, so a dataset's stream does not depend on the plan and a
longer or later-phase mix reads the same stream further; ``"megatron"`` builds the
indices exactly as megatron.core's ``GPTDataset`` does (``RandomState(seed)`` per dataset,
the sample count it is built for deciding its epochs), so the mix equals Megatron's
``GPTDataset`` (one dataset) or ``BlendedDataset`` (several) sample for sample
(``mixkit.mix.indices``). Megatron has no phases, so ``"megatron"`` takes a one-phase plan.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np

from mixkit.config import ConfigError, from_table, invalid, where_of
from mixkit.errors import MixkitError, OptionError
from mixkit.mixture import Mixture
from mixkit.toml_file import read_toml

MAX_DATASETS = 32767  # dataset ids are int16, as in Megatron's BlendedDataset
Shuffle = Literal["mixkit", "megatron"]
SHUFFLES: tuple[str, ...] = get_args(Shuffle)  # how each dataset's samples are ordered (module docstring)


@dataclass(frozen=True)
class Phase:
    """From ``start_step`` on, draw samples with these (unnormalised, non-negative) weights."""

    start_step: int
    weights: dict[str, float]

    def __post_init__(self) -> None:
        if not isinstance(self.start_step, int) or isinstance(self.start_step, bool) or self.start_step < 0:
            raise invalid("start_step", f"must be a non-negative integer, got {self.start_step!r}")
        Mixture.parse(self.weights, where=f"phase at step {self.start_step}")

    def normalized(self) -> dict[str, float]:
        """Positive weights divided by their sum (zero-weight datasets dropped: never drawn).

        Computed as Megatron does, ``w / numpy.sum(w)`` in float64, so the blending sees
        bit-identical weights (ties between equal weights stay ties).
        """
        positive = {k: v for k, v in self.weights.items() if v > 0}
        w = np.array(list(positive.values()), dtype=np.float64)
        return dict(zip(positive, (w / w.sum()).tolist()))


@dataclass(frozen=True)
class MixPlan:
    """The whole recipe of a mix; ``build_mix`` turns it into index arrays."""

    phases: list[Phase]
    steps: int
    seq_len: int = 2048
    global_batch: int = 1024
    seed: int = 1234
    allow_repeat: bool = False
    world_size: int = 1
    shuffle: Shuffle = "mixkit"

    def __post_init__(self) -> None:
        for fname in ("steps", "seq_len", "global_batch", "world_size"):
            v = getattr(self, fname)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise invalid(fname, f"must be a positive integer, got {v!r}")
        if self.seq_len < 2:
            raise invalid("seq_len", f"must be at least 2, got {self.seq_len}")
        if not isinstance(self.seed, int) or not 0 <= self.seed < 2**63:
            raise invalid("seed", f"must be an integer in [0, 2**63), got {self.seed!r}")
        if self.global_batch % self.world_size:
            raise invalid("global_batch", f"{self.global_batch} is not divisible by world_size {self.world_size}")
        if not self.phases:
            raise invalid("phases", "the plan has no phases")
        if self.phases[0].start_step != 0:
            raise invalid("phases", f"the first phase must start at step 0, not {self.phases[0].start_step}")
        for prev, cur in zip(self.phases, self.phases[1:]):
            if cur.start_step <= prev.start_step:
                raise invalid(
                    "phases",
                    f"out of order: a phase starts at step {cur.start_step} after one at {prev.start_step} "
                    "(start steps must increase)",
                )
        if self.phases[-1].start_step >= self.steps:
            raise invalid("phases", f"phase start step {self.phases[-1].start_step} must be below steps ({self.steps})")
        if self.shuffle not in SHUFFLES:
            raise invalid("shuffle", f"expected 'mixkit' or 'megatron', got {self.shuffle!r}")
        if self.shuffle == "megatron" and len(self.phases) > 1:
            raise invalid(
                "shuffle",
                f"'megatron' takes a one-phase plan (Megatron's datasets have no phases), got {len(self.phases)} phases",
            )
        if self.shuffle == "megatron" and self.seed >= 2**32:
            raise invalid("seed", f"shuffle 'megatron' seeds numpy's RandomState, which takes seeds below 2**32, got {self.seed}")
        names = self.datasets
        if len(names) > MAX_DATASETS:
            raise invalid("phases", f"a mix takes at most {MAX_DATASETS} datasets, got {len(names)}")

    @property
    def datasets(self) -> list[str]:
        """Every dataset drawn from in some phase, in order of first appearance."""
        seen: dict[str, None] = {}
        for p in self.phases:
            for k in p.normalized():
                seen.setdefault(k, None)
        return list(seen)

    def phase_bounds(self) -> list[tuple[int, int]]:
        """``(start_step, end_step)`` of each phase."""
        starts = [p.start_step for p in self.phases]
        return list(zip(starts, starts[1:] + [self.steps]))

    def to_json(self) -> dict[str, Any]:
        return {
            "phases": [
                {"start_step": p.start_step, "end_step": end, "weights": dict(p.weights)}
                for p, (_, end) in zip(self.phases, self.phase_bounds())
            ],
            "steps": self.steps,
            "seq_len": self.seq_len,
            "global_batch": self.global_batch,
            "seed": self.seed,
            "allow_repeat": self.allow_repeat,
            "shuffle": self.shuffle,
        }


def make_plan(phases: list[Phase], *, steps: int | None, **settings: Any) -> MixPlan:
    """A ``MixPlan`` of ``phases`` and the run ``settings`` given; a setting that is None is not
    given (``MixPlan``'s default applies), except ``steps``, which is required."""
    if steps is None:
        raise MixkitError("--steps is required (or 'steps' in the plan file)")
    return MixPlan(phases=phases, steps=steps, **{k: v for k, v in settings.items() if v is not None})


def parse_phase(text: str) -> Phase:
    """``"6000:c4=0.8,code=0.2"`` → ``Phase(6000, {...})`` (the weights: a ``Mixture``)."""
    where = f"--phase '{text}'"
    step, sep, rest = text.partition(":")
    if not sep:
        raise MixkitError(f"{where}: expected START_STEP:NAME=WEIGHT[,NAME=WEIGHT...]")
    try:
        start = int(step.strip())
    except ValueError:
        raise MixkitError(f"{where}: start step '{step.strip()}' is not an integer") from None
    weights = Mixture.parse(rest, where=where).weights
    try:
        return Phase(start, weights)
    except MixkitError as e:
        raise MixkitError(f"{where}: {e.message}") from None


def simple_phases(base: str, add: str | None, ratio: float | None, start_step: int) -> list[Phase]:
    """The ``--base/--add/--ratio/--start-step`` form as phases."""
    if add is None:
        if ratio is not None:
            raise OptionError("--ratio needs --add (the dataset mixed in at that ratio)")
        return [Phase(0, {base: 1.0})]
    if ratio is None:
        raise MixkitError("--add needs --ratio (the share of the added dataset from --start-step on)")
    if not (0.0 <= ratio <= 1.0) or not math.isfinite(ratio):
        raise MixkitError(f"--ratio must be in [0, 1], got {ratio}")
    if add == base:
        raise MixkitError(f"--add '{add}' is the same dataset as --base")
    if start_step < 0:
        raise MixkitError(f"--start-step must be non-negative, got {start_step}")
    mixed = Phase(start_step, {base: 1.0 - ratio, add: ratio})
    return [mixed] if start_step == 0 else [Phase(0, {base: 1.0}), mixed]


@dataclass(frozen=True)
class PlanPhase:
    """A ``[[phase]]`` table of a plan file: ``start`` (a step) and ``weights`` (``{dataset = weight}``)."""

    start: int
    weights: dict[str, int | float]  # kept as written: they are recorded in mix.json

    def __post_init__(self) -> None:
        if self.start < 0:
            raise invalid("start", f"must be a non-negative integer, got {self.start}")
        self.phase()  # the weights' checks; from_table names this table in their errors

    def phase(self) -> Phase:
        return Phase(self.start, dict(self.weights))


@dataclass(frozen=True)
class PlanFile:
    """A plan file (module docstring): ``[[phase]]`` tables and run settings (None: not in the file)."""

    phase: list[PlanPhase]
    steps: int | None = None
    seq_len: int | None = None
    global_batch: int | None = None
    seed: int | None = None
    shuffle: Shuffle | None = None

    def __post_init__(self) -> None:
        if not self.phase:
            raise invalid("phase", "needs [[phase]] tables with 'start' and 'weights'")


def load_plan_file(path: str | os.PathLike, **overrides: Any) -> MixPlan:
    """The plan in the TOML file ``path``, checked whole; ``overrides`` (``steps``, ``seq_len``,
    ``global_batch``, ``seed``, ``shuffle``, ``allow_repeat``, ``world_size``) that are not None
    win over the file's settings. Every error names the file."""
    plan_file = from_table(PlanFile, read_toml(path, "plan file"), where_of(path))
    settings = {k: getattr(plan_file, k) for k in ("steps", "seq_len", "global_batch", "seed", "shuffle")}
    settings.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return make_plan([p.phase() for p in plan_file.phase], **settings)
    except MixkitError as e:
        raise ConfigError(f"{path}: {e.message}") from None


def plan_from_options(
    *,
    base: str | None = None,
    add: str | None = None,
    ratio: float | None = None,
    start_step: int | None = None,
    phases: list[str] | tuple[str, ...] = (),
    plan_file: str | os.PathLike | None = None,
    steps: int | None = None,
    seq_len: int | None = None,
    global_batch: int | None = None,
    seed: int | None = None,
    allow_repeat: bool = False,
    world_size: int | None = None,
    shuffle: str | None = None,
) -> MixPlan:
    """The plan of ``mixkit build-mix``: exactly one of the three forms (``base`` with ``add``,
    ``ratio``, ``start_step``; ``phases`` as ``--phase`` texts; a ``plan_file``) and the run
    settings; a setting that is None is not given (the plan file's, else ``MixPlan``'s default)."""
    if sum([base is not None, bool(phases), plan_file is not None]) != 1:
        raise OptionError("give exactly one of --base (with --add/--ratio), --phase, or --plan")
    if base is None and (add is not None or ratio is not None):
        raise OptionError("--add and --ratio go with --base")
    if start_step is not None and add is None:
        raise OptionError("--start-step needs --add (the dataset that joins at that step); "
                          "without it the mix would be --base alone from step 0")
    settings = dict(steps=steps, seq_len=seq_len, global_batch=global_batch, seed=seed,
                    allow_repeat=allow_repeat, world_size=world_size, shuffle=shuffle)
    if plan_file is not None:
        return load_plan_file(plan_file, **settings)
    if base is not None:
        start_step = start_step or 0
        plan_phases = simple_phases(base, add, ratio, start_step)
        if steps is not None and start_step >= steps:
            raise MixkitError(f"--start-step {start_step} must be below --steps {steps}")
    else:
        plan_phases = [parse_phase(p) for p in phases]
    return make_plan(plan_phases, **settings)
