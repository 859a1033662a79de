"""``--launcher slurm``: a study's runs as Slurm jobs, ordered by dependencies, relaunchable.

The job graph of a study (``lab.plan``), one ``sbatch`` per box::

    prepare ──afterok──▶ pretrain-s{seed}  ──afterok──▶ branches-s{seed}  (job array:
    (tokenize, measure,   (one per seed: the            one task per variant run of that
     experiment.json,      base run to the last         seed, each midtraining from its
     mixes; no GPU)        start step)                  start step, then every SFT task)
                                                                   │
    report ◀──afterany── every job above (writes OUT/report.md from what finished, and fails,
                          naming them, when some run did not finish)

Every job runs ``python -m lab.worker`` on the study's config and output folder (a shared
file system), so a job does exactly what the same run does locally, with the runner's
caching. Jobs are plain ``sbatch`` scripts written to ``OUT/launch/scripts/`` (what they run
can be read before and after), with ``--kill-on-invalid-dep=yes`` so the dependants of a
failed job are cancelled instead of waiting forever; ``OUT/logs/slurm/`` holds their output.

Relaunching the same command resubmits only what is left. A run's job that succeeds
writes ``OUT/launch/done/RUN.json`` with the *run key*: a hash of the config file's tables
except ``[launcher]`` (which changes no result). At launch a run is

- finished when its marker holds the current key: no job, nothing depends on it;
- still queued or running when the job id recorded for it in ``OUT/launch/jobs.json`` is
  in ``squeue``: not resubmitted, and new jobs depend on that id;
- otherwise (never submitted, failed, cancelled, timed out, or the config changed)
  submitted; inside, the runner's content caching skips the stages and SFT tasks that
  finished before, so a resubmitted run continues from its last checkpoint.

``--dry-run`` prints the same graph (jobs, array tasks, dependencies, resources) and the
``sbatch`` commands, submitting and writing nothing.
"""

from __future__ import annotations

import getpass
import json
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from lab.config import LauncherConfig, StudyConfig
from lab.plan import base_run_name, plan_study
from mixkit import atomic
from mixkit.errors import MixkitError
from mixkit.toml_file import read_toml
from trainer.run_dir import content_key

LAUNCHERS = ("local", "slurm")
LAUNCH_DIR = "launch"
JOBS_FILE = "jobs.json"


@dataclass
class Job:
    """One ``sbatch`` submission: a single run (or step), or an array of runs (``runs``, one per task)."""

    key: str  # "prepare", "pretrain-s1234", "branches-s1234", "report"
    worker_args: list[str]  # after ``python -m lab.worker --config C --out O``; an array adds --run per task
    gpus: int
    runs: list[str] = field(default_factory=list)
    array: bool = False
    after_ok: list[str] = field(default_factory=list)  # job keys, or ids of jobs still queued from before
    after_any: list[str] = field(default_factory=list)
    job_id: str | None = None


def run_key(config_path: str | Path) -> str:
    """What a finished run's marker must hold: a hash of the config's tables but ``[launcher]``."""
    table = read_toml(config_path, "study config")
    table.pop("launcher", None)
    return content_key(table)


def done_marker(out: Path, run: str) -> Path:
    return out / LAUNCH_DIR / "done" / f"{run}.json"


def mark_done(out: Path, run: str, config_path: str | Path) -> None:
    """Record that ``run`` finished with this config (``python -m lab.worker --mark-done``)."""
    atomic.write_json(done_marker(out, run), {"run": run, "key": run_key(config_path)})


def finished_runs(cfg: StudyConfig, out: Path, config_path: str | Path) -> list[str]:
    """The planned runs whose marker holds the current run key."""
    key = run_key(config_path)
    done = []
    for run in plan_study(cfg).runs:
        try:
            if json.loads(done_marker(out, run.name).read_text()).get("key") == key:
                done.append(run.name)
        except (OSError, ValueError):
            continue
    return done


def queued_job_ids() -> set[str]:
    """Ids (``123``, and ``123_4`` per array task) of this user's jobs that Slurm still holds."""
    try:
        result = subprocess.run(["squeue", "--noheader", "--array", "--format=%i", f"--user={getpass.getuser()}"],
                                capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise MixkitError("squeue not found: --launcher slurm needs the Slurm commands on PATH") from None
    if result.returncode != 0:
        raise MixkitError(f"squeue failed: {result.stderr.strip().splitlines()[-1] if result.stderr.strip() else result.returncode}")
    ids = set()
    for line in result.stdout.split():
        ids.add(line)
        ids.add(line.split("_", 1)[0])
    return ids


class SlurmLauncher:
    """Builds, prints and submits the job graph of one study (module docstring)."""

    def __init__(self, cfg: StudyConfig, out: str | Path, config_path: str | Path, log=print,
                 overrides: dict[str, Any] | None = None, command: str = ""):
        self.cfg = cfg
        self.out = Path(out).resolve()
        self.config_path = Path(config_path).resolve()
        self.log = log
        self.settings: LauncherConfig = replace(cfg.launcher, **{k: v for k, v in (overrides or {}).items() if v is not None})
        self.plan = plan_study(cfg)
        self.launch_dir = self.out / LAUNCH_DIR
        self.python = self.settings.python or sys.executable
        self.workdir = Path.cwd()
        self.command = command  # recorded in experiment.json by the prepare job

    # -- what to submit ----------------------------------------------------------------------------

    def _recorded(self) -> dict[str, str]:
        try:
            return json.loads((self.launch_dir / JOBS_FILE).read_text()).get("runs", {})
        except (OSError, ValueError):
            return {}

    def graph(self, finished: set[str], queued: dict[str, str]) -> list[Job]:
        """The jobs to submit, given the runs already finished and those still queued (run → job id)."""
        gpus = self.settings.gpus_per_job
        jobs = [Job("prepare", ["--prepare"] + (["--command", self.command] if self.command else []), 0)]
        waiting_on: list[str] = []  # what the report waits for
        for seed in self.cfg.seeds:
            base = base_run_name(seed)
            base_dep: list[str] = []
            if base in queued:
                base_dep = [queued[base]]
            elif base not in finished:
                jobs.append(Job(base, ["--mark-done", "--run", base], gpus, [base], after_ok=["prepare"]))
                base_dep = [base]
            waiting_on += base_dep
            branches = [r.name for r in self.plan.variant_runs if r.seed == seed]
            waiting_on += [queued[r] for r in branches if r in queued]
            todo = [r for r in branches if r not in finished and r not in queued]
            if todo:
                key = f"branches-s{seed}"
                jobs.append(Job(key, ["--mark-done"], gpus, todo, array=True, after_ok=["prepare", *base_dep]))
                waiting_on.append(key)
        jobs.append(Job("report", ["--report"], 0, after_any=["prepare", *dict.fromkeys(waiting_on)]))
        return jobs

    def sbatch_options(self, job: Job) -> list[str]:
        s = self.settings
        logs = self.out / "logs" / "slurm"
        opts = [f"--job-name={self.cfg.name}-{job.key}", f"--chdir={self.workdir}",
                f"--output={logs}/{job.key}-{'%A_%a' if job.array else '%j'}.out", f"--time={s.time}"]
        if job.array:
            opts.append(f"--array=0-{len(job.runs) - 1}")
        for key in ("partition", "account", "mem"):
            if getattr(s, key) is not None:
                opts.append(f"--{key}={getattr(s, key)}")
        if s.cpus_per_job is not None:
            opts.append(f"--cpus-per-task={s.cpus_per_job}")
        if job.gpus:
            opts.append(f"--gres=gpu:{job.gpus}")
        return opts + list(s.sbatch_args)

    def script(self, job: Job) -> str:
        """The job's ``sbatch`` script (options that know no job ids are in its header)."""
        worker = [self.python, "-m", "lab.worker", "--config", str(self.config_path), "--out", str(self.out)]
        lines = ["#!/bin/bash", f"# {self.cfg.name}: {self.describe(job)}"]
        lines += [f"#SBATCH {opt}" for opt in self.sbatch_options(job)]
        lines += ["set -euo pipefail", *self.settings.setup]
        if job.array:
            lines.append("RUNS=(" + " ".join(shlex.quote(r) for r in job.runs) + ")")
            lines.append(shlex.join(worker + job.worker_args) + ' --run "${RUNS[$SLURM_ARRAY_TASK_ID]}"')
        else:
            lines.append(shlex.join(worker + job.worker_args))
        return "\n".join(lines) + "\n"

    def describe(self, job: Job) -> str:
        if job.key == "prepare":
            return "tokenize, measure, experiment.json, mixes"
        if job.key == "report":
            return "report.md from every run that finished"
        if job.array:
            return f"array of {len(job.runs)}: " + ", ".join(f"[{i}] {r}" for i, r in enumerate(job.runs))
        return f"run {job.runs[0]}"

    @staticmethod
    def dependency(job: Job, ids: dict[str, str]) -> str:
        parts = []
        for kind, deps in (("afterok", job.after_ok), ("afterany", job.after_any)):
            if deps:
                parts.append(kind + ":" + ":".join(ids.get(d, d) for d in deps))
        return ",".join(parts)

    # -- the launch --------------------------------------------------------------------------------

    def launch(self, dry_run: bool = False) -> list[Job]:
        """Submit the jobs left to do (or, with ``dry_run``, print them); return the graph."""
        finished = set(finished_runs(self.cfg, self.out, self.config_path))
        recorded = self._recorded()
        queued: dict[str, str] = {}
        if recorded:
            try:
                active = queued_job_ids()
            except MixkitError:
                if not dry_run:
                    raise
                active = set()  # a dry run away from the cluster: as if nothing were queued
            queued = {run: job_id for run, job_id in recorded.items() if job_id in active and run not in finished}
        jobs = self.graph(finished, queued)
        for run in self.plan.runs:
            if run.name in finished:
                self.log(f"{run.name}: finished before, no job")
            elif run.name in queued:
                self.log(f"{run.name}: still queued as job {queued[run.name]}, not resubmitted")
        if dry_run:
            for job in jobs:
                dep = self.dependency(job, {})
                self.log(f"job {job.key}: {self.describe(job)}; {job.gpus} GPU(s)" + (f"; {dep}" if dep else ""))
                self.log("  sbatch " + shlex.join(self.sbatch_options(job) + self._sbatch_args(job, dep)
                                                  + [f"{LAUNCH_DIR}/scripts/{job.key}.sbatch"]))
            return jobs
        scripts = self.launch_dir / "scripts"
        scripts.mkdir(parents=True, exist_ok=True)
        (self.out / "logs" / "slurm").mkdir(parents=True, exist_ok=True)
        ids: dict[str, str] = {}
        runs = {run: job_id for run, job_id in recorded.items() if run in queued}
        for job in jobs:
            path = scripts / f"{job.key}.sbatch"
            atomic.write_text(path, self.script(job))
            job.job_id = ids[job.key] = self._submit(job, self.dependency(job, ids), path)
            self.log(f"submitted {job.key} as job {job.job_id}: {self.describe(job)}")
            for i, run in enumerate(job.runs):
                runs[run] = f"{job.job_id}_{i}" if job.array else job.job_id
            atomic.write_json(self.launch_dir / JOBS_FILE, {"jobs": ids, "runs": runs})
        return jobs

    @staticmethod
    def _sbatch_args(job: Job, dependency: str) -> list[str]:
        args = ["--parsable"]
        if dependency:
            args += [f"--dependency={dependency}", "--kill-on-invalid-dep=yes"]
        return args

    def _submit(self, job: Job, dependency: str, script: Path) -> str:
        try:
            result = subprocess.run(["sbatch", *self._sbatch_args(job, dependency), str(script)],
                                    capture_output=True, text=True, check=False)
        except FileNotFoundError:
            raise MixkitError("sbatch not found: --launcher slurm needs the Slurm commands on PATH") from None
        if result.returncode != 0:
            detail = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else f"exit {result.returncode}"
            raise MixkitError(f"sbatch refused job {job.key}: {detail}")
        job_id = result.stdout.strip().split(";", 1)[0]
        if not job_id.isdigit():
            raise MixkitError(f"sbatch answered {result.stdout.strip()!r} for job {job.key}, not a job id")
        return job_id


def launch_study(cfg: StudyConfig, out: str | Path, config_path: str | Path, log=print, dry_run: bool = False,
                 command: str = "", **overrides: Any) -> list[Job]:
    """Submit (or print) a study's Slurm jobs; ``overrides`` are ``[launcher]`` keys from the command line."""
    if not config_path or not os.path.isfile(config_path):
        raise MixkitError(f"--launcher slurm needs the study's config file (got {config_path!r})")
    launcher = SlurmLauncher(cfg, out, config_path, log=log, overrides=overrides, command=command)
    return launcher.launch(dry_run=dry_run)
