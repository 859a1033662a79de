"""The plan of a study: which runs, where each starts and stops, which mixes, and what it costs.

An experiment and a sweep share one plan (an experiment is a sweep with one start step):

- the base model is pretrained ONCE per seed up to the last start step S_max
  (``runs/pretrain-s{seed}``), keeping the checkpoints at exactly the start steps;
- a variant with start step S branches from that run's step-S checkpoint on its mix
  ``[0: pretrain=1, S: mixture]`` (identical to the base mix before S, so the branch is
  the same model as one run on the variant's mix from step 0) and trains to the end N,
  then finetunes on every task (``runs/{variant}-s{seed}``);
- the baseline (the pretraining corpus alone) branches from step S_max of the base mix.

Every variant runs with every seed (or, for budget, the first ``variant_seeds`` of them; the
baseline always with all): a seed sets the model's initialisation, the data order (each
seed has its own mixes, shuffled with that seed, so the base mix and the variants' mixes of
a seed share their prefix) and the SFT example order, but never the SFT split (a task's
own), so runs of one seed pair up across variants and the report tests differences by seed.

Cost in optimizer steps, with n seeds and start steps S_v of the variant runs::

    shared   = n · S_max + Σ_variant runs (N − S_v)
    unshared = (number of variant runs) · N      (every run from step 0)

SFT costs the same either way.
"""

from __future__ import annotations

from dataclasses import dataclass

from lab.config import StudyConfig
from mixkit.mix import MixPlan, Phase
from mixkit.mixture import Mixture

RUNS_DIR = "runs"


def base_run_name(seed: int) -> str:
    return f"pretrain-s{seed}"


def variant_run_name(variant: str, seed: int) -> str:
    return f"{variant}-s{seed}"


def run_path(name: str) -> str:
    """A run's directory relative to the study's folder."""
    return f"{RUNS_DIR}/{name}"


@dataclass(frozen=True)
class PlannedRun:
    name: str
    seed: int
    variant: str | None  # None: the shared base pretraining run
    start_step: int  # where it starts training (0 for the base run)
    end_step: int  # where its pretrain/midtrain training stops


@dataclass(frozen=True)
class StudyPlan:
    total_steps: int
    seeds: list[int]
    kept_checkpoints: list[int]  # per base run: exactly the start steps
    runs: list[PlannedRun]  # base runs first, then the baseline's seeds, then the other variants
    variant_word: str = "variants"  # "grid variants" for a sweep
    variant_seeds: int = 1  # seeds of each non-baseline variant

    @property
    def base_runs(self) -> list[PlannedRun]:
        return [r for r in self.runs if r.variant is None]

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

    def run(self, name: str) -> PlannedRun | None:
        return next((r for r in self.runs if r.name == name), None)

    def describe(self, tasks: int) -> list[str]:
        what = self.variant_word
        n_other = len(self.variants) - 1
        saved = 1 - self.steps_shared / self.steps_unshared if self.steps_unshared else 0.0
        base = self.base_runs
        return [
            f"{n_other} {what} + the baseline; {len(self.variant_runs)} variant runs "
            f"(baseline × {len(self.seeds)} seeds, {what.split()[0]} × {self.variant_seeds} seed"
            f"{'s' if self.variant_seeds != 1 else ''}), {len(self.variant_runs) * tasks} SFT runs",
            f"base pretraining: {len(base)} run(s) to step {base[0].end_step if base else 0}, keeping checkpoints "
            f"at steps {', '.join(map(str, self.kept_checkpoints))} (of {self.total_steps})",
            f"training steps: {self.steps_shared:,} with sharing, {self.steps_unshared:,} without "
            f"(every run from step 0): {100 * saved:.0f}% saved",
        ]


def variant_seeds(cfg: StudyConfig, variant: str) -> list[int]:
    """The baseline runs with every seed; the other variants with the first ``variant_seeds``."""
    return list(cfg.seeds) if variant == cfg.baseline else list(cfg.seeds[: cfg.variant_seeds])


def plan_study(cfg: StudyConfig) -> StudyPlan:
    """Which base checkpoints are kept, which run starts where, and what it costs."""
    n = cfg.schedule.steps
    runs = [PlannedRun(base_run_name(seed), seed, None, 0, cfg.last_start) for seed in cfg.seeds]
    for v in cfg.variants.values():
        runs += [PlannedRun(variant_run_name(v.name, seed), seed, v.name, v.start_step, n)
                 for seed in variant_seeds(cfg, v.name)]
    return StudyPlan(n, list(cfg.seeds), list(cfg.start_steps), runs, "grid variants" if cfg.sweep else "variants",
                     cfg.variant_seeds)


def mix_name(cfg: StudyConfig, variant: str | None, seed: int) -> str:
    """The mix a variant's run of ``seed`` trains on (``None``: the base mix of that seed)."""
    return f"{cfg.name}-{variant or 'pretrain'}-s{seed}"


def is_base_only(cfg: StudyConfig, variant: str) -> bool:
    """A variant that reads the pretraining corpus alone trains on the base mix itself."""
    return set(cfg.mixture(variant).shares) == {cfg.schedule.pretrain}


def mix_plans(cfg: StudyConfig) -> dict[str, MixPlan]:
    """Per seed, the base mix (shuffled with that seed) and, per variant of that seed that mixes
    other data in, the base phases plus its mixture from its start."""
    s = cfg.schedule
    base = [Phase(0, {s.pretrain: 1.0})]
    plans = {}
    for seed in cfg.seeds:
        shape = {"steps": s.steps, "seq_len": s.seq_len, "global_batch": s.global_batch, "seed": seed,
                 "allow_repeat": s.allow_repeat}
        plans[mix_name(cfg, None, seed)] = MixPlan(base, **shape)
        for v in cfg.variants.values():
            if seed in variant_seeds(cfg, v.name) and not is_base_only(cfg, v.name):
                phases = base + [Phase(v.start_step, Mixture.parse(v.mixture).weights)]
                plans[mix_name(cfg, v.name, seed)] = MixPlan(phases, **shape)
    return plans


def variant_mix(cfg: StudyConfig, variant: str, seed: int) -> str:
    return mix_name(cfg, None, seed) if is_base_only(cfg, variant) else mix_name(cfg, variant, seed)
