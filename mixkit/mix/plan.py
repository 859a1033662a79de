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

      steps = 61035          # optional here; the command line wins
      [[phase]]
      start = 0
      weights = { c4 = 1.0 }
      [[phase]]
      start = 6000
      weights = { c4 = 0.8, code = 0.15, math = 0.05 }
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from mixkit.errors import MixkitError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

MAX_DATASETS = 32767  # dataset ids are int16, as in Megatron's BlendedDataset


@dataclass(frozen=True)
class Phase:
    """From ``start_step`` on, draw samples with these (unnormalised, non-negative) weights."""

    start_step: int
    weights: dict[str, float]

    def __post_init__(self) -> None:
        if not isinstance(self.start_step, int) or isinstance(self.start_step, bool) or self.start_step < 0:
            raise MixkitError(f"phase start_step must be a non-negative integer, got {self.start_step!r}")
        if not self.weights:
            raise MixkitError(f"phase at step {self.start_step}: weights name no dataset")
        for name, w in self.weights.items():
            if not isinstance(w, (int, float)) or isinstance(w, bool) or not math.isfinite(w):
                raise MixkitError(f"phase at step {self.start_step}: weight of '{name}' must be a finite number, got {w!r}")
            if w < 0:
                raise MixkitError(f"phase at step {self.start_step}: weight of '{name}' is negative ({w})")
        if sum(self.weights.values()) <= 0:
            raise MixkitError(f"phase at step {self.start_step}: all weights are zero")

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

    def __post_init__(self) -> None:
        for fname in ("steps", "seq_len", "global_batch", "world_size"):
            v = getattr(self, fname)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise MixkitError(f"{fname} must be a positive integer, got {v!r}")
        if self.seq_len < 2:
            raise MixkitError(f"seq_len must be at least 2, got {self.seq_len}")
        if not isinstance(self.seed, int) or not 0 <= self.seed < 2**63:
            raise MixkitError(f"seed must be an integer in [0, 2**63), got {self.seed!r}")
        if self.global_batch % self.world_size:
            raise MixkitError(
                f"global_batch {self.global_batch} is not divisible by world_size {self.world_size}"
            )
        if not self.phases:
            raise MixkitError("the plan has no phases")
        if self.phases[0].start_step != 0:
            raise MixkitError(f"the first phase must start at step 0, not {self.phases[0].start_step}")
        for prev, cur in zip(self.phases, self.phases[1:]):
            if cur.start_step <= prev.start_step:
                raise MixkitError(
                    f"phases out of order: a phase starts at step {cur.start_step} after one at {prev.start_step} "
                    "(start steps must increase)"
                )
        if self.phases[-1].start_step >= self.steps:
            raise MixkitError(f"phase start step {self.phases[-1].start_step} must be below steps ({self.steps})")
        names = self.datasets
        if len(names) > MAX_DATASETS:
            raise MixkitError(f"a mix takes at most {MAX_DATASETS} datasets, got {len(names)}")

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
        }


def parse_weights(text: str, where: str) -> dict[str, float]:
    """``"c4=0.8,code=0.15"`` → ``{"c4": 0.8, "code": 0.15}``."""
    weights: dict[str, float] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or not name:
            raise MixkitError(f"{where}: expected NAME=WEIGHT, got '{part}'")
        try:
            w = float(value)
        except ValueError:
            raise MixkitError(f"{where}: weight of '{name}' is not a number: '{value.strip()}'") from None
        if name in weights:
            raise MixkitError(f"{where}: dataset '{name}' is named twice")
        weights[name] = w
    if not weights:
        raise MixkitError(f"{where}: no NAME=WEIGHT pairs")
    return weights


def parse_phase(text: str) -> Phase:
    """``"6000:c4=0.8,code=0.2"`` → ``Phase(6000, {...})``."""
    step, sep, rest = text.partition(":")
    if not sep:
        raise MixkitError(f"--phase '{text}': expected START_STEP:NAME=WEIGHT[,NAME=WEIGHT...]")
    try:
        start = int(step.strip())
    except ValueError:
        raise MixkitError(f"--phase '{text}': start step '{step.strip()}' is not an integer") from None
    return Phase(start, parse_weights(rest, f"--phase '{text}'"))


def simple_phases(base: str, add: str | None, ratio: float | None, start_step: int) -> list[Phase]:
    """The ``--base/--add/--ratio/--start-step`` form as phases."""
    if add is None:
        if ratio is not None:
            raise MixkitError("--ratio needs --add (the dataset mixed in at that ratio)")
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


def load_plan_file(path: str | os.PathLike) -> tuple[list[Phase], dict[str, Any]]:
    """Phases and optional run settings (steps, seq_len, global_batch, seed) from a TOML file."""
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except OSError as e:
        raise MixkitError(f"cannot read plan file {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise MixkitError(f"plan file {path}: invalid TOML ({e})") from None
    raw = doc.get("phase")
    if not isinstance(raw, list) or not raw:
        raise MixkitError(f"plan file {path}: needs [[phase]] tables with 'start' and 'weights'")
    phases = []
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict) or "start" not in entry or "weights" not in entry:
            raise MixkitError(f"plan file {path}: phase {i + 1} needs 'start' and 'weights'")
        if not isinstance(entry["weights"], dict):
            raise MixkitError(f"plan file {path}: phase {i + 1}: 'weights' must be a table NAME = WEIGHT")
        phases.append(Phase(entry["start"], dict(entry["weights"])))
    known = {"steps", "seq_len", "global_batch", "seed"}
    unknown = set(doc) - known - {"phase"}
    if unknown:
        raise MixkitError(f"plan file {path}: unknown keys {sorted(unknown)} (allowed: phase, {', '.join(sorted(known))})")
    return phases, {k: doc[k] for k in known if k in doc}
