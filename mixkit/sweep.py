"""``mixkit sweep``: when to start midtraining and how much to mix, over a grid of start steps × ratios.

The sweep is an experiment (``mixkit.experiment``) whose variants are the grid points of
``mixkit.sweep_config``; it shares compute the way the paper's design allows:

- the base model is pretrained ONCE per seed up to the last start step S_max
  (``OUT/runs/pretrain-s{seed}``), keeping the checkpoints at exactly the sweep's start
  steps (``keep_steps``);
- a grid variant with start step S branches from that run's step-S checkpoint on its mix
  ``[0: pretrain=1, S: pretrain=1-r, dataset=r]`` (identical to the base mix before S, so
  the branch is the same model as one run on the variant's mix from step 0) and trains to
  the end N, then finetunes on every task;
- the baseline (pretraining corpus to the end) branches from step S_max of the base mix.

Cost in optimizer steps, with n seeds, start steps S_i, and the first seed's grid::

    shared   = n · S_max + n · (N − S_max) + Σ_variants (N − S_v)
    unshared = n · N + (number of variants) · N      (every run from step 0)

SFT costs the same either way. Finished stages and SFT tasks are never rerun
(``trainer.stages`` keys them by their inputs), so a killed sweep started again with the
same command resumes. With ``jobs > 1`` the runs after pretraining are launched as separate
processes (``python -m cli.sweep_cmd ... --run NAME``), each writing its own run directory
and log (``OUT/logs/NAME.log``); the same command runs one variant on any machine that
sees ``OUT``, so a cluster can spread the grid over nodes and then write the report with
``--report-only``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mixkit import atomic
from mixkit.errors import MixkitError
from mixkit.experiment import Experiment, _fmt
from mixkit.sweep_config import GridPoint, SweepConfig

LOGS_DIR = "logs"


# ----------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class PlannedRun:
    name: str
    seed: int
    variant: str | None  # None: the shared base pretraining run
    start_step: int  # where it starts training (0 for the base run)
    end_step: int  # where its pretrain/midtrain training stops


@dataclass(frozen=True)
class SweepPlan:
    total_steps: int
    seeds: list[int]
    kept_checkpoints: list[int]  # per base run: exactly the sweep's start steps
    runs: list[PlannedRun]  # base runs first, then the baseline's seeds, then the grid

    @property
    def variant_runs(self) -> list[PlannedRun]:
        return [r for r in self.runs if r.variant is not None]

    @property
    def variants(self) -> list[str]:
        return list(dict.fromkeys(r.variant for r in self.variant_runs))

    @property
    def steps_shared(self) -> int:
        """Optimizer steps with sharing: every run from where it starts to where it stops."""
        return sum(r.end_step - r.start_step for r in self.runs)

    @property
    def steps_unshared(self) -> int:
        """Optimizer steps if every variant run trained from step 0 on its own."""
        return len(self.variant_runs) * self.total_steps

    def describe(self, tasks: int) -> list[str]:
        n_grid = len(self.variants) - 1
        saved = 1 - self.steps_shared / self.steps_unshared if self.steps_unshared else 0.0
        base = [r for r in self.runs if r.variant is None]
        return [
            f"{n_grid} grid variants + the baseline; {len(self.variant_runs)} variant runs "
            f"(baseline × {len(self.seeds)} seeds, grid × 1 seed), {len(self.variant_runs) * tasks} SFT runs",
            f"base pretraining: {len(base)} run(s) to step {base[0].end_step if base else 0}, keeping checkpoints "
            f"at steps {', '.join(map(str, self.kept_checkpoints))} (of {self.total_steps})",
            f"training steps: {self.steps_shared:,} with sharing, {self.steps_unshared:,} without "
            f"(every run from step 0): {100 * saved:.0f}% saved",
        ]


def plan_sweep(cfg: SweepConfig) -> SweepPlan:
    """Which base checkpoints are kept, which run starts where, and what it costs."""
    exp = cfg.experiment
    n = exp.schedule.steps
    points = {p.variant: p for p in cfg.grid}
    runs = [PlannedRun(f"pretrain-s{seed}", seed, None, 0, cfg.last_start) for seed in exp.seeds]
    for variant in exp.variant_names:
        start = points[variant].start_step if variant in points else cfg.last_start
        seeds = exp.seeds if variant == exp.baseline else exp.seeds[:1]
        runs += [PlannedRun(f"{variant}-s{seed}", seed, variant, start, n) for seed in seeds]
    return SweepPlan(n, list(exp.seeds), list(cfg.start_steps), runs)


# ----------------------------------------------------------------------------- orchestration


class Sweep(Experiment):
    """An ``Experiment`` whose variants branch from the base run at their own start steps."""

    def __init__(self, sweep: SweepConfig, out: str | Path, log=print, command: str = "", config_path: str = "",
                 jobs: int = 1, gpus: tuple[str, ...] = ()):
        super().__init__(sweep.experiment, out, log=log, command=command)
        if jobs < 1:
            raise MixkitError(f"jobs must be at least 1, got {jobs}")
        self.sweep = sweep
        self.plan = plan_sweep(sweep)
        self.points: dict[str, GridPoint] = {p.variant: p for p in sweep.grid}
        self.config_path = config_path
        self.jobs = jobs
        self.gpus = tuple(gpus)

    def start_of(self, variant: str) -> int:
        p = self.points.get(variant)
        return p.start_step if p else self.sweep.last_start

    # -- measuring and mixing: one mix per grid point, the distance once per mixture ----------------

    def measure(self) -> dict[str, Any]:
        mixtures = dict.fromkeys(self.cfg.variants.values())
        keyed = {f"m{i}": m for i, m in enumerate(mixtures)}
        measured = Experiment(replace(self.cfg, variants=keyed, baseline="m0"), self.out, log=self.log).measure()
        by_mixture = {m: measured["proximity"][k] for k, m in keyed.items()}
        measured["proximity"] = {v: by_mixture[m] for v, m in self.cfg.variants.items()}
        return measured

    def plans(self) -> dict[str, Any]:
        from mixkit.mix import MixPlan, Phase
        from mixkit.mixture import parse_mixture

        base_name = self.mix_name(None)
        plans = {k: v for k, v in super().plans().items() if k == base_name}
        base = plans[base_name]
        shape = {"steps": base.steps, "seq_len": base.seq_len, "global_batch": base.global_batch, "seed": base.seed,
                 "allow_repeat": base.allow_repeat}
        for p in self.points.values():
            plans[self.mix_name(p.variant)] = MixPlan(list(base.phases) + [Phase(p.start_step, dict(parse_mixture(p.mixture)))],
                                                      **shape)
        return plans

    # -- runs ------------------------------------------------------------------------------------

    def run_table(self, name: str, stages: list[dict[str, Any]], seed: int) -> dict[str, Any]:
        table = super().run_table(name, stages, seed)
        if name.startswith("pretrain-"):
            table["keep_steps"] = list(self.sweep.start_steps)
            table["checkpoint_interval"] = self.cfg.train.get("checkpoint_interval", self.sweep.last_start)
        else:  # a variant needs only its newest checkpoint (to resume, and to finetune from)
            table["keep_steps"] = []
            table["keep_checkpoints"] = 1
            table["checkpoint_interval"] = self.cfg.train.get("checkpoint_interval", self.cfg.schedule.steps)
        return table

    def branch_point(self, seed: int, step: int | None = None) -> Path:
        from trainer.checkpoint import step_dir

        return step_dir(self.out / "runs" / f"pretrain-s{seed}" / "pretrain", step or self.sweep.last_start)

    def run_one(self, name: str) -> None:
        """Train one planned run (its finished parts are skipped)."""
        from trainer.stages import run_config_from_dict, run_stages

        run = next((r for r in self.plan.runs if r.name == name), None)
        if run is None:
            raise MixkitError(f"no run '{name}' in this sweep (runs: {', '.join(r.name for r in self.plan.runs)})")
        if run.variant is None:
            stages = [{"kind": "pretrain", "name": "pretrain", "mix": self.mix_name(None), "until": run.end_step}]
            run_stages(run_config_from_dict(self.run_table(name, stages, run.seed)), log=self.log)
            return
        branch = self.branch_point(run.seed, run.start_step)
        if not branch.is_dir():
            raise MixkitError(f"run {name} branches from {branch}, which does not exist (pretrain-s{run.seed} first)")
        stages = [{"kind": "midtrain", "name": "midtrain", "mix": self.variant_mix(run.variant)},
                  {"kind": "sft", "name": "sft", "tasks": list(self.cfg.tasks), **self.cfg.sft}]
        run_stages(run_config_from_dict(self.run_table(name, stages, run.seed)), branch_from=str(branch), log=self.log)

    def _describe(self, run: PlannedRun) -> str:
        if run.variant is None:
            return f"base pretraining to step {run.end_step}"
        return f"variant {run.variant}, mixture {self.cfg.variants[run.variant]}, from step {run.start_step}"

    def train_all(self) -> list[str]:
        """Train every run; return the names of runs that failed (only possible with jobs > 1)."""
        base = [r for r in self.plan.runs if r.variant is None]
        rest = [r for r in self.plan.runs if r.variant is not None]
        if self.jobs == 1:
            self._run_in_process(base + rest)
            return []
        failed = self._run_processes(base)
        if failed:
            return failed + [r.name for r in rest]
        return self._run_processes(rest)

    def _run_in_process(self, runs: list[PlannedRun]) -> None:
        durations: list[float] = []
        for i, run in enumerate(runs, 1):
            eta = f", ETA {_fmt(sum(durations) / len(durations) * (len(runs) - i + 1))}" if durations else ""
            self.log(f"[{i}/{len(runs)}] run {run.name} ({self._describe(run)}); "
                     f"elapsed {_fmt(time.monotonic() - self._t0)}{eta}")
            t0 = time.monotonic()
            self.run_one(run.name)
            durations.append(time.monotonic() - t0)

    def child_command(self, name: str) -> list[str]:
        if not self.config_path:
            raise MixkitError("jobs > 1 needs the sweep's config file path (to start one process per run)")
        return [sys.executable, "-m", "cli.sweep_cmd", "--config", str(self.config_path), "--out", str(self.out),
                "--run", name]

    def _child_env(self, slot: int) -> dict[str, str]:
        env = dict(os.environ)
        if "OMP_NUM_THREADS" not in env:  # share the cores instead of oversubscribing them
            env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // self.jobs))
        if self.gpus:
            env["CUDA_VISIBLE_DEVICES"] = self.gpus[slot % len(self.gpus)]
        return env

    def _run_processes(self, runs: list[PlannedRun]) -> list[str]:
        """Run ``runs`` as up to ``jobs`` processes at a time; return the names of those that failed."""
        logs = self.out / LOGS_DIR
        logs.mkdir(parents=True, exist_ok=True)
        pending = list(runs)
        active: dict[int, tuple[PlannedRun, subprocess.Popen, Any]] = {}
        failed: list[str] = []
        done = 0
        try:
            while pending or active:
                for slot in range(self.jobs):
                    if slot not in active and pending:
                        run = pending.pop(0)
                        fh = open(logs / f"{run.name}.log", "ab")
                        proc = subprocess.Popen(self.child_command(run.name), stdout=fh, stderr=subprocess.STDOUT,
                                                env=self._child_env(slot))
                        active[slot] = (run, proc, fh)
                        self.log(f"start {run.name} ({self._describe(run)}) as process {proc.pid}, log "
                                 f"{LOGS_DIR}/{run.name}.log; elapsed {_fmt(time.monotonic() - self._t0)}")
                for slot, (run, proc, fh) in list(active.items()):
                    rc = proc.poll()
                    if rc is None:
                        continue
                    fh.close()
                    del active[slot]
                    done += 1
                    if rc != 0:
                        failed.append(run.name)
                    self.log(f"[{done}/{len(runs)}] {run.name} " + ("finished" if rc == 0 else f"FAILED (exit {rc}), "
                             f"see {LOGS_DIR}/{run.name}.log") + f"; elapsed {_fmt(time.monotonic() - self._t0)}")
                time.sleep(0.2)
        finally:
            for _run, proc, fh in active.values():
                proc.terminate()
                proc.wait()
                fh.close()
        return failed

    # -- summary and report -----------------------------------------------------------------------

    def summary(self, measured: dict[str, Any]) -> dict[str, Any]:
        out = super().summary(measured)
        out["scale"]["pretrain_steps"] = self.sweep.last_start
        out["sweep"] = {
            "datasets": list(self.sweep.datasets),
            "start_steps": list(self.sweep.start_steps),
            "start_step_spec": list(self.sweep.start_spec),
            "ratios": list(self.sweep.ratios),
            "grid": {p.variant: {"dataset": p.dataset, "start_step": p.start_step, "ratio": p.ratio}
                     for p in self.points.values()},
            "kept_checkpoints": list(self.plan.kept_checkpoints),
            "steps_shared": self.plan.steps_shared,
            "steps_unshared": self.plan.steps_unshared,
        }
        return out

    def prepare(self) -> dict[str, Any]:
        """Stores, distances, experiment.json and mixes: everything before training."""
        self.out.mkdir(parents=True, exist_ok=True)
        self.tokenize()
        measured = self.measure()
        atomic.write_json(self.out / "experiment.json", self.summary(measured))
        self.build_mixes()
        return measured

    def run(self) -> Path:
        self.log(f"sweep {self.cfg.name} → {self.out}")
        for line in self.plan.describe(len(self.cfg.tasks)):
            self.log("plan: " + line)
        self.prepare()
        failed = self.train_all()
        from mixkit.sweep_report import write_sweep_report

        report = write_sweep_report(self.out)
        self.log(f"report: {report} (elapsed {_fmt(time.monotonic() - self._t0)})")
        if failed:
            raise MixkitError(f"{len(failed)} run(s) failed or did not start: {', '.join(failed)} (logs in "
                              f"{self.out / LOGS_DIR}); the report holds what finished; rerun to resume")
        return report


def default_out(cfg: SweepConfig) -> Path:
    return Path("runs") / cfg.name
