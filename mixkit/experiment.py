"""``mixkit experiment``: the paper's design end to end, every step cached by content.

1. tokenize the corpora into ``OUT/data`` (the pretraining corpus holds out its
   evaluation documents as ``NAME-holdout``);
2. measure the distance matrix of the corpora and, for every variant's mixture, the
   proximity advantage toward each task's distribution, before any training;
3. build the mixes: one base mix (pretraining corpus only) and, per variant, a mix
   identical to it before the start step S and the variant's mixture from S on;
4. pretrain a base model per seed up to S (``OUT/runs/pretrain-s{seed}``), keeping
   the step-S checkpoint;
5. per variant (the baseline with every seed, the others with the first), continue
   from that checkpoint on the variant's mix to the end of the schedule, then
   finetune on each task (``OUT/runs/{variant}-s{seed}``);
6. write ``OUT/experiment.json`` and ``OUT/report.md`` with the plots.

Caching: a store is reused when its manifest shows the same sources (sha256), preset and
holdout; a mix when its plan and input fingerprints match; a run's stages and SFT tasks
when they finished with the same inputs (``trainer.stages``). A killed experiment
started again with the same command picks up where it stopped.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from mixkit import atomic
from mixkit.errors import MixkitError
from mixkit.experiment_config import ExperimentConfig
from mixkit.presets import TextSpec
from mixkit.readers import expand_sources
from mixkit.store import TokenStore, sha256_file


class Experiment:
    def __init__(self, cfg: ExperimentConfig, out: str | Path, log=print, command: str = ""):
        self.cfg = cfg
        self.out = Path(out)
        self.data_dir = self.out / "data"
        self.log = log
        self.command = command or "mixkit " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        self._t0 = time.monotonic()

    # -- 1. stores -------------------------------------------------------------------------------------

    def _store_is_current(self, name: str, corpus) -> bool:
        try:
            store = TokenStore.open(name, self.data_dir)
        except MixkitError:
            return False
        m = store.manifest
        wanted = [(str(p), sha256_file(p)) for p in expand_sources(corpus.sources)]
        have = [(s["path"], s.get("sha256")) for s in m.get("sources", [])]
        holdout = (m.get("holdout") or {}).get("documents", 0)
        return have == wanted and m.get("text") == {"preset": corpus.preset} and holdout == corpus.holdout_docs

    def tokenize(self) -> None:
        from mixkit.tokenize import TokenizeConfig, tokenize

        for name, corpus in self.cfg.corpora.items():
            if self._store_is_current(name, corpus):
                continue
            self.log(f"tokenize {name}: {len(corpus.sources)} source(s), preset {corpus.preset}")
            tokenize(TokenizeConfig(corpus.sources, name, TextSpec(preset=corpus.preset), data_dir=str(self.data_dir),
                                    holdout_docs=corpus.holdout_docs, on_error=corpus.on_error, overwrite=True,
                                    quiet=True))

    # -- 2. distances ----------------------------------------------------------------------------------

    def measure(self) -> dict[str, Any]:
        from mixkit.distance import distance_matrix, proximity_advantage
        from mixkit.unigram import distribution

        labels = list(self.cfg.corpora)
        dists = {n: distribution(n, data_dir=self.data_dir, progress=False).probs for n in labels}
        matrix = distance_matrix([dists[n] for n in labels], self.cfg.metric)
        pretrain = dists[self.cfg.schedule.pretrain]
        proximity: dict[str, dict[str, float]] = {}
        for variant, expr in self.cfg.variants.items():
            mix = distribution(expr if ":" in expr else f"{expr}:1", data_dir=self.data_dir, progress=False).probs
            proximity[variant] = {
                task: proximity_advantage(pretrain, mix, dists[self.cfg.task_target(task)], self.cfg.metric)[2]
                for task in self.cfg.tasks
            }
        return {"distance": {"labels": labels, "matrix": matrix.tolist()}, "proximity": proximity}

    # -- 3. mixes --------------------------------------------------------------------------------------

    def mix_name(self, variant: str | None) -> str:
        return f"{self.cfg.name}-{variant or 'pretrain'}"

    def plans(self) -> dict[str, Any]:
        from mixkit.mix import MixPlan, Phase
        from mixkit.mixture import parse_mixture

        s = self.cfg.schedule
        shape = {"steps": s.steps, "seq_len": s.seq_len, "global_batch": s.global_batch, "seed": s.mix_seed,
                 "allow_repeat": s.allow_repeat}
        base = [Phase(0, {s.pretrain: 1.0})]
        plans = {self.mix_name(None): MixPlan(base, **shape)}
        for variant, expr in self.cfg.variants.items():
            weights = dict(parse_mixture(expr)) if ":" in expr else {expr: 1.0}
            if weights == {s.pretrain: weights.get(s.pretrain)}:
                continue  # pretraining data alone: the base mix itself
            plans[self.mix_name(variant)] = MixPlan(base + [Phase(s.start_step, weights)], **shape)
        return plans

    def variant_mix(self, variant: str) -> str:
        name = self.mix_name(variant)
        return name if name in self.plans() else self.mix_name(None)

    def build_mixes(self) -> None:
        from mixkit.mix import MixStream, build_mix

        for name, plan in self.plans().items():
            try:
                stream = MixStream.open(name, self.data_dir)
                if stream.manifest.get("plan") == json.loads(json.dumps(plan.to_json())):
                    continue
            except MixkitError:
                pass
            self.log(f"build mix {name}")
            build_mix(plan, name, self.data_dir, overwrite=True)

    # -- 4-5. runs -------------------------------------------------------------------------------------

    def run_table(self, name: str, stages: list[dict[str, Any]], seed: int) -> dict[str, Any]:
        t = self.cfg.train
        table = {
            "name": name, "out_dir": str(self.out / "runs" / name), "data_dir": str(self.data_dir), "seed": seed,
            "model": dict(self.cfg.model), "optim": dict(self.cfg.optim), "stages": stages,
            "heldout": f"{self.cfg.schedule.pretrain}-holdout", "keep_steps": [self.cfg.schedule.start_step],
            "tasks": {k: {kk: vv for kk, vv in v.items() if kk != "target"} for k, v in self.cfg.tasks.items()},
        }
        for key in ("micro_batch", "device", "precision", "compile", "checkpoint_interval", "eval_batch",
                    "heldout_docs", "eval_seq_len", "peak_flops"):
            if key in t:
                table[key] = t[key]
        table.setdefault("checkpoint_interval", self.cfg.schedule.start_step)
        return table

    def runs(self) -> list[tuple[str, int, str | None]]:
        """(run name, seed, variant) in execution order: pretrain runs, then variants."""
        out = [(f"pretrain-s{seed}", seed, None) for seed in self.cfg.seeds]
        for variant in self.cfg.variant_names:
            seeds = self.cfg.seeds if variant == self.cfg.baseline else self.cfg.seeds[:1]
            out += [(f"{variant}-s{seed}", seed, variant) for seed in seeds]
        return out

    def branch_point(self, seed: int) -> Path:
        from trainer.checkpoint import step_dir

        return step_dir(self.out / "runs" / f"pretrain-s{seed}" / "pretrain", self.cfg.schedule.start_step)

    def train_all(self) -> None:
        from trainer.stages import run_config_from_dict, run_stages

        runs = self.runs()
        durations: list[float] = []
        for i, (name, seed, variant) in enumerate(runs, 1):
            remaining = len(runs) - i + 1
            eta = f", ETA {_fmt(sum(durations) / len(durations) * remaining)}" if durations else ""
            self.log(f"[{i}/{len(runs)}] run {name}" + (f" (variant {variant}, mixture {self.cfg.variants[variant]})" if variant else
                     f" (base pretraining to step {self.cfg.schedule.start_step})") + f"; elapsed {_fmt(time.monotonic() - self._t0)}{eta}")
            t0 = time.monotonic()
            if variant is None:
                stages = [{"kind": "pretrain", "name": "pretrain", "mix": self.mix_name(None),
                           "until": self.cfg.schedule.start_step}]
                cfg = run_config_from_dict(self.run_table(name, stages, seed))
                run_stages(cfg, log=self.log)
            else:
                stages = [{"kind": "midtrain", "name": "midtrain", "mix": self.variant_mix(variant)},
                          {"kind": "sft", "name": "sft", "tasks": list(self.cfg.tasks), **self.cfg.sft}]
                cfg = run_config_from_dict(self.run_table(name, stages, seed))
                run_stages(cfg, branch_from=str(self.branch_point(seed)), log=self.log)
            durations.append(time.monotonic() - t0)

    # -- 6. summary ------------------------------------------------------------------------------------

    def summary(self, measured: dict[str, Any]) -> dict[str, Any]:
        s = self.cfg.schedule
        variants = {}
        for variant in self.cfg.variant_names:
            seeds = self.cfg.seeds if variant == self.cfg.baseline else self.cfg.seeds[:1]
            variants[variant] = {"mixture": self.cfg.variants[variant],
                                 "runs": {str(seed): f"runs/{variant}-s{seed}" for seed in seeds}}
        base_store = TokenStore.open(s.pretrain, self.data_dir)
        return {
            "name": self.cfg.name,
            "metric": self.cfg.metric,
            "tasks": list(self.cfg.tasks),
            "baseline": self.cfg.baseline,
            "distance": measured["distance"],
            "variants": variants,
            "pretrain_runs": {str(seed): f"runs/pretrain-s{seed}" for seed in self.cfg.seeds},
            "proximity": measured["proximity"],
            "task_targets": {t: self.cfg.task_target(t) for t in self.cfg.tasks},
            "command": self.command,
            "scale": {"model": self.cfg.model.get("name", "tiny"), "pretrain_steps": s.start_step,
                      "total_steps": s.steps, "seq_len": s.seq_len, "global_batch": s.global_batch,
                      "tokens": s.steps * s.seq_len * s.global_batch,
                      "pretrain_corpus_tokens": base_store.num_tokens},
        }

    def run(self) -> Path:
        self.out.mkdir(parents=True, exist_ok=True)
        self.log(f"experiment {self.cfg.name} → {self.out}")
        self.tokenize()
        measured = self.measure()
        atomic.write_json(self.out / "experiment.json", self.summary(measured))
        self.log("proximity advantage (" + self.cfg.metric + "): " + "; ".join(
            f"{v}: " + ", ".join(f"{t} {a:+.4f}" for t, a in p.items()) for v, p in measured["proximity"].items()))
        self.build_mixes()
        self.train_all()
        atomic.write_json(self.out / "experiment.json", self.summary(measured))
        from mixkit.experiment_report import write_report

        report = write_report(self.out)
        self.log(f"report: {report} (elapsed {_fmt(time.monotonic() - self._t0)})")
        return report


def _fmt(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def run_experiment(cfg: ExperimentConfig, out: str | Path | None = None, log=print, command: str = "") -> Path:
    """Run (or continue) the experiment; return the path of ``report.md``."""
    return Experiment(cfg, out or Path("runs") / cfg.name, log=log, command=command).run()
