"""Loading a study's results: ``experiment.json`` and the run directories it names.

``mixkit experiment`` and ``mixkit sweep`` write ``OUT/experiment.json`` (the spec: tasks,
baseline, variants with their mixtures and per-seed run directories, proximity, distance
matrix, scale, and for a sweep its grid) and one run directory per (variant, seed), owned
by ``trainer.run_dir``. A run that is missing or unfinished is kept, without results, so
a report can be written at any point of a study.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mixkit.errors import MixkitError
from mixkit.mixture import Mixture
from trainer.run_dir import read_json_object, read_results, results_path

EXPERIMENT_FILE = "experiment.json"
REPORT_FILE = "report.md"
PLOTS_DIR = "plots"


@dataclass(frozen=True)
class Run:
    """One seed of one variant: where it is and what it has written (results None: not there yet)."""

    variant: str
    seed: str
    rel_path: str
    path: Path
    results: dict[str, Any] | None
    status: str  # "finished", or why there are no results


@dataclass
class StudyResults:
    """An experiment's (or sweep's) ``experiment.json`` and the results of every run it names."""

    spec: dict[str, Any]
    dir: Path
    tasks: list[str]
    baseline: str
    mixtures: dict[str, dict[str, float]]  # variant -> normalised weights
    runs: dict[str, list[Run]]  # variant -> its seeds' runs; the baseline first, then experiment.json's order


def family(name: str) -> str:
    """A dataset or task name's family: its first alphanumeric word, lower case (``code-python`` -> ``code``)."""
    words = re.findall(r"[a-z0-9]+", name.lower())
    return words[0] if words else ""


def load_results(experiment_dir: str | Path) -> StudyResults:
    """Read ``experiment.json`` and the results of every run it names (missing runs are kept, without results)."""
    d = Path(experiment_dir)
    f = d / EXPERIMENT_FILE
    if not f.is_file():
        raise MixkitError(f"{d}: no {EXPERIMENT_FILE} (not an experiment directory)")
    spec = read_json_object(f)
    tasks = spec.get("tasks")
    if not isinstance(tasks, list) or not all(isinstance(t, str) for t in tasks):
        raise MixkitError(f"{f}: 'tasks' must be a list of task names")
    variants = spec.get("variants")
    if not isinstance(variants, dict) or not variants:
        raise MixkitError(f"{f}: 'variants' must be a non-empty object of variant -> {{mixture, runs}}")
    baseline = spec.get("baseline")
    if baseline not in variants:
        raise MixkitError(f"{f}: baseline {baseline!r} is not among the variants ({', '.join(variants)})")
    mixtures: dict[str, dict[str, float]] = {}
    runs: dict[str, list[Run]] = {}
    for name in [baseline, *(v for v in variants if v != baseline)]:  # the baseline first, then the file's order
        v = variants[name]
        if not isinstance(v, dict):
            raise MixkitError(f"{f}: variant '{name}' must be an object with 'mixture' and 'runs'")
        mixtures[name] = _shares(v.get("mixture"), f, name)
        seeds = v.get("runs") or {}
        if not isinstance(seeds, dict):
            raise MixkitError(f"{f}: variant '{name}': 'runs' must map seed -> run directory")
        runs[name] = [_load_run(d, name, str(seed), str(rel)) for seed, rel in seeds.items()]
    return StudyResults(spec=spec, dir=d, tasks=list(tasks), baseline=baseline, mixtures=mixtures, runs=runs)


def _load_run(exp_dir: Path, variant: str, seed: str, rel: str) -> Run:
    path = exp_dir / rel
    if not path.is_dir():
        return Run(variant, seed, rel, path, None, "not started (no run directory)")
    if not results_path(path).is_file():
        return Run(variant, seed, rel, path, None, "unfinished (no results.json yet)")
    try:
        results = read_results(path)
    except MixkitError as e:
        return Run(variant, seed, rel, path, None, f"unreadable results.json ({e.message})")
    return Run(variant, seed, rel, path, results, "finished")



def _shares(mixture: Any, f: Path, variant: str) -> dict[str, float]:
    """A variant's mixture as shares summing to 1 (empty when experiment.json has none)."""
    if mixture in (None, "", {}):
        return {}
    try:
        return Mixture.parse(mixture).shares
    except MixkitError as e:
        raise MixkitError(f"{f}: variant '{variant}': {e.message}") from None
