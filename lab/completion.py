"""Which runs of a study have finished, and pruning the checkpoints nothing needs any more.

A run that finished writes a completion record ``OUT/finished/NAME.json`` holding its key::

    key(base run)    = content_key({run table without its folders, mixes: {name: fingerprint}})
    key(variant run) = content_key({run table without its folders, mixes: {...}, branch: key(base run)})

where the run table is what ``StudyRunner.run_table`` hands the trainer (model, optimizer,
stages with their mixes and SFT settings, seed, tasks, tokenizer, kept steps) and a mix's
fingerprint covers its plan and its stores. A variant's key includes its base run's, so a
changed base run makes every variant of its seed stale too.

A run is finished when its record holds the key its inputs have now and the sha256 of the
``results.json`` its folder holds now (a lost or rewritten run folder is trained again). A base run counts as
finished only while its branch points exist or every variant run of its seed is finished
as well: with pruned checkpoints, a variant that must run again needs its branch point,
and the base run is then trained again from step 0 (deterministically: the same weights
at every step).

``prune_checkpoints = true`` (a study's top-level key): once every run of a seed has
finished, the checkpoints of that seed's runs are deleted (the base run's branch points,
with their optimizer state, and the variants' final weights). The report needs only the
metrics and results files; a rerun of the finished study skips every run by its record.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from mixkit import atomic
from mixkit.store import sha256_file
from trainer.run_dir import checkpoints_dir, content_key, results_path

FINISHED_DIR = "finished"
UNKEYED = ("out_dir", "data_dir")  # where a run lives does not change what it computes


def record_path(out: Path, run: str) -> Path:
    return Path(out) / FINISHED_DIR / f"{run}.json"


def run_key(table: dict[str, Any], mixes: dict[str, str], branch: str | None = None) -> str:
    """The key of a run: its trainer table without its folders, the fingerprints of the mixes it
    reads and (for a variant) the key of the base run it branches from."""
    body: dict[str, Any] = {"run": {k: v for k, v in table.items() if k not in UNKEYED}, "mixes": mixes}
    if branch is not None:
        body["branch"] = branch
    return content_key(body)


def _results_sha256(run_dir: Path) -> str | None:
    path = results_path(run_dir)
    return sha256_file(path) if path.is_file() else None


def is_recorded(out: Path, run: str, run_dir: Path, key: str) -> bool:
    """Whether ``run`` finished with inputs of this ``key`` and its ``results.json`` is the one it wrote then."""
    try:
        record = json.loads(record_path(out, run).read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(record, dict) or record.get("key") != key:
        return False
    return record.get("results_sha256") is not None and record.get("results_sha256") == _results_sha256(run_dir)


def write_record(out: Path, run: str, run_dir: Path, key: str) -> None:
    path = record_path(out, run)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_json(path, {"run": run, "key": key, "results_sha256": _results_sha256(run_dir)})


def prune_checkpoints(stage_dirs: list[Path]) -> int:
    """Delete the checkpoint folders of these stage folders; return how many checkpoints were removed."""
    removed = 0
    for stage in stage_dirs:
        d = checkpoints_dir(stage)
        if d.is_dir():
            removed += sum(1 for p in d.iterdir() if p.is_dir())
            shutil.rmtree(d)
    return removed
