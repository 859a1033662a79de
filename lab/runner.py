"""Running a study (``mixkit experiment`` and ``mixkit sweep``): the paper's design end to end, cached by content.

1. tokenize the corpora into ``OUT/data`` (the pretraining corpus holds out its
   evaluation documents as ``NAME-holdout``);
2. measure the distance matrix of the corpora and, for every distinct mixture of the
   variants, the proximity advantage toward each task's distribution, before any training;
3. build the mixes (``lab.plan.mix_plans``): the base mix and, per variant, one identical
   to it before the variant's start step;
4. train the runs of ``lab.plan.plan_study``: the base run per seed to the last start
   step, then every variant run branched from its seed's checkpoint at its start step,
   trained to the end and finetuned on each task; in this process, or with ``jobs > 1`` as
   separate worker processes (``python -m lab.worker``), each with its own log
   (``OUT/logs/NAME.log``);
5. write ``OUT/experiment.json`` and ``OUT/report.md`` with the plots (``lab.report``).

Caching: a store is reused when its manifest shows the same sources (sha256), preset and
holdout; a mix when its plan and input fingerprints match; a run's stages and SFT tasks
when they finished with the same inputs (``trainer.stages``); a whole run when its completion record
holds the key of its inputs (``lab.completion``), which is what lets a rerun skip runs whose
checkpoints ``prune_checkpoints`` deleted. A killed study started
again with the same command picks up where it stopped; the worker entry point trains one
run on any machine that sees ``OUT``, so a grid can be spread over machines and the report
written with ``--report-only``; ``lab.launcher`` does that through Slurm (``--launcher slurm``).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from lab import completion, dryrun
from lab.config import StudyConfig
from lab.control import SMOOTHING, cross_entropy, smoothed_unigram, stream_distribution
from lab.plan import (
    PlannedRun,
    StudyPlan,
    base_run_name,
    mix_name,
    mix_plans,
    plan_study,
    run_path,
    variant_mix,
    variant_seeds,
)
from lab.report import write_report
from lab.results import EXPERIMENT_FILE
from mixkit import atomic, locks
from mixkit.config import field_default, to_table
from mixkit.distance import distance_matrix, proximity_advantage
from mixkit.errors import MixkitError
from mixkit.mix import MixStream, build_mix
from mixkit.readers import expand_sources
from mixkit.store import TokenStore, holdout_name
from mixkit.tokenize import IDENTITY_KEYS, TokenizeConfig, describe_source, load_tokenizer, tokenize
from mixkit.tokenizer_training import train_tokenizer
from mixkit.unigram import counts, distribution
from trainer.checkpoint import is_checkpoint
from trainer.run_dir import content_key, step_dir
from trainer.sft_data import load_task
from trainer.stage_runner import run_stages
from trainer.stages import RunConfig, run_config_from_dict

LOGS_DIR = "logs"
CONFIG_COPY = "config.toml"  # the study's config file, copied into its output folder


def source_identity(entry: dict[str, Any]) -> dict[str, Any]:
    """What identifies a source's content in a store manifest (path and sha256 for a file; id,
    config, split and revision for a hub dataset; size and ETag/mtime for a URL)."""
    return {k: v for k, v in entry.items() if k == "path" or k in IDENTITY_KEYS}


def format_duration(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class StudyRunner:
    """Runs one study config into one output folder (see the module docstring)."""

    def __init__(self, cfg: StudyConfig, out: str | Path, log=print, command: str = "", config_path: str = "",
                 jobs: int = 1, gpus: tuple[str, ...] = ()):
        if jobs < 1:
            raise MixkitError(f"jobs must be at least 1, got {jobs}")
        self.cfg = cfg
        self.out = Path(out)
        self.data_dir = self.out / "data"
        self.log = log
        self.command = command or "mixkit " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        self.config_path = config_path
        self.jobs = jobs
        self.gpus = tuple(gpus)
        self.plan: StudyPlan = plan_study(cfg)
        self._t0 = time.monotonic()
        self._tokenizer_path: str | None | bool = False  # False: not resolved yet
        self._tokenizer: tuple[Any, Any] | None = None
        self._keys: dict[str, str] = {}  # run name -> its completion key (lab.completion)

    @property
    def is_sweep(self) -> bool:
        return self.cfg.sweep is not None

    def elapsed(self) -> str:
        return format_duration(time.monotonic() - self._t0)

    def describe_plan(self) -> list[str]:
        lines = self.plan.describe(len(self.cfg.tasks))
        if self.cfg.prune_checkpoints:
            lines.append("checkpoints: deleted once every run of a seed has finished (prune_checkpoints)")
        return lines

    def dry_run(self) -> list[str]:
        """The plan and, per corpus, its token budget, size and expected epochs (``lab.dryrun``): nothing
        is downloaded, tokenized or trained."""
        return self.describe_plan() + dryrun.describe(self.cfg, self.plan, self.data_dir)

    # -- 1. tokenizer and stores ------------------------------------------------------------------------

    def tokenizer_path(self) -> str | None:
        """The study's tokenizer file (None: the bundled one), training it first when the config asks.

        A trained tokenizer is cached by content: its file name carries a hash of the training
        corpora's sources (path and sha256), preset, vocabulary size, document sample and seed.
        """
        if self._tokenizer_path is not False:
            return self._tokenizer_path
        choice = self.cfg.tokenizer
        if choice is None or choice.file is not None:
            self._tokenizer_path = None if choice is None else choice.file
            return self._tokenizer_path
        t = choice.train
        corpora = [self.cfg.corpora[c] for c in t.corpora]
        expanded = [p for c in corpora for p in expand_sources(c.sources)]
        sources = [str(p) for p in expanded]
        key = content_key({"sources": [source_identity(describe_source(i, p)) for i, p in enumerate(expanded)],
                           "preset": corpora[0].preset or corpora[0].text_spec().describe(),
                           "vocab_size": t.vocab_size, "max_docs": t.max_docs, "seed": t.seed})
        path = self.data_dir / f"tokenizer-{key}.json"
        if not path.is_file():
            self.log(f"train tokenizer: vocabulary {t.vocab_size} on {', '.join(t.corpora)}")
            self.data_dir.mkdir(parents=True, exist_ok=True)
            train_tokenizer(sources, t.vocab_size, path, corpora[0].text_spec(), max_docs=t.max_docs,
                            seed=t.seed, overwrite=True)
        self._tokenizer_path = str(path)
        return self._tokenizer_path

    def tokenizer(self) -> tuple[Any, Any]:
        """The study's tokenizer and its info (file, sha256, vocabulary, EOS), loaded once."""
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.tokenizer_path())
        return self._tokenizer

    def tokenizer_summary(self) -> dict[str, Any]:
        """What experiment.json records of the tokenizer: file, sha256, vocabulary, and what it was trained on."""
        _, info = self.tokenizer()
        out: dict[str, Any] = {"file": info.path.name, "sha256": info.sha256, "vocab_size": info.vocab_size,
                               "model_vocab_size": self.cfg.model.build().vocab_size}
        if self.cfg.tokenizer is not None and self.cfg.tokenizer.train is not None:
            t = self.cfg.tokenizer.train
            out["trained_on"] = list(t.corpora)
            out["requested_vocab_size"] = t.vocab_size
        return out

    def _store_is_current(self, name: str, corpus) -> bool:
        try:
            store = TokenStore.open(name, self.data_dir)
        except MixkitError:
            return False
        m = store.manifest
        _, info = self.tokenizer()
        if m.get("tokenizer", {}).get("sha256") != info.sha256:
            return False
        wanted = [source_identity(describe_source(i, p)) for i, p in enumerate(expand_sources(corpus.sources))]
        have = [source_identity(s) for s in m.get("sources", [])]
        holdout = (m.get("holdout") or {}).get("documents", 0)
        limit = m.get("limit") or {}
        return (have == wanted and m.get("text") == corpus.text_spec().describe() and holdout == corpus.holdout_docs
                and (limit.get("max_docs"), limit.get("max_tokens")) == (corpus.max_docs, corpus.max_tokens))

    def tokenize(self) -> None:
        for name, corpus in self.cfg.corpora.items():
            if self._store_is_current(name, corpus):
                continue
            text = corpus.text_spec()
            self.log(f"tokenize {name}: {len(corpus.sources)} source(s), "
                     + (f"preset {corpus.preset}" if corpus.preset else f"template {corpus.template!r}"))
            tokenize(TokenizeConfig(corpus.sources, name, text, data_dir=str(self.data_dir),
                                    tokenizer=self.tokenizer_path(), holdout_docs=corpus.holdout_docs,
                                    on_error=corpus.on_error, max_docs=corpus.max_docs, max_tokens=corpus.max_tokens,
                                    overwrite=True, quiet=True))

    # -- 2. distances ----------------------------------------------------------------------------------

    def proximity(self, metric: str, protocol: str) -> tuple[dict[str, dict[str, float]], dict[str, Any]]:
        """Each variant's proximity advantage per task (once per distinct mixture), and the corpora's
        unigram distributions, counted with ``protocol`` and compared with ``metric``."""
        cfg = self.cfg
        pretrain_name = cfg.schedule.pretrain

        def dist(spec: str):
            return distribution(spec, data_dir=self.data_dir, protocol=protocol, base=pretrain_name,
                                progress=False).probs

        dists = {n: dist(n) for n in cfg.corpora}
        by_mixture: dict[str, dict[str, float]] = {}
        for v in cfg.variants.values():
            key = str(cfg.mixture(v.name))
            if key not in by_mixture:
                mix = dist(key)
                by_mixture[key] = {
                    task: proximity_advantage(dists[pretrain_name], mix, dists[cfg.task_target(task)], metric)[2]
                    for task in cfg.tasks
                }
        return {v.name: by_mixture[str(cfg.mixture(v.name))] for v in cfg.variants.values()}, dists

    def measure(self) -> dict[str, Any]:
        """The distance matrix of the corpora, each variant's proximity advantage per task with the study's
        metric and protocol and (for the report's robustness line) with the other one, and the unigram control."""
        labels = list(self.cfg.corpora)
        proximity, dists = self.proximity(self.cfg.metric, self.cfg.protocol)
        matrix = distance_matrix([dists[n] for n in labels], self.cfg.metric)
        alt_metric, alt_protocol = ("js", "all") if self.cfg.metric == "paper" else ("paper", "paper")
        alt, _ = self.proximity(alt_metric, alt_protocol)
        return {"distance": {"labels": labels, "matrix": matrix.tolist()}, "proximity": proximity,
                "proximity_alt": {"metric": alt_metric, "protocol": alt_protocol, "values": alt},
                "unigram": self.unigram_control()}

    def unigram_control(self) -> dict[str, Any]:
        """The scale guard's and the unigram control's cross-entropies (``lab.control``), from counts alone.

        The stream of a run is modelled from its corpora's token distributions with EOS counted
        (the model predicts it too); the held-out tokens are the targets the trainer scores
        (every token of the first ``heldout_docs`` held-out documents but the first); a task's
        are the answer tokens of its validation examples.
        """
        cfg, s = self.cfg, self.cfg.schedule
        tokens = s.steps * s.seq_len * s.global_batch
        names = sorted({s.pretrain} | {d for v in cfg.variants.values() for d in cfg.mixture(v.name).shares})
        probs = {}
        for name in names:
            c = counts(name, data_dir=self.data_dir, count_eos=True, progress=False).astype(np.float64)
            probs[name] = c / c.sum()
        base_model = smoothed_unigram(probs[s.pretrain], tokens)
        held = TokenStore.open(holdout_name(s.pretrain), self.data_dir)
        n_docs = min(len(held), cfg.train.heldout_docs or field_default(RunConfig, "heldout_docs"))
        held_counts = np.zeros(held.vocab_size, dtype=np.int64)
        for i in range(n_docs):
            doc = np.asarray(held[i], dtype=np.int64)[1:]
            held_counts += np.bincount(doc, minlength=held.vocab_size)[: held.vocab_size]
        tokenizer, info = self.tokenizer()
        task_ce: dict[str, dict[str, float]] = {}
        answers = {}
        for task, tcfg in cfg.tasks.items():
            _, val = load_task(tcfg, tokenizer, info.eos_id or 0, cfg.sft.seq_len)
            answer_tokens = np.concatenate([t[int(a):] for t, a in zip(val.tokens, val.answer_start)])
            answers[task] = np.bincount(answer_tokens, minlength=held.vocab_size)[: held.vocab_size]
        for v in cfg.variants.values():
            stream = stream_distribution(probs[s.pretrain], cfg.mixture(v.name).shares, probs, v.start_step, s.steps)
            model = smoothed_unigram(stream, tokens)
            task_ce[v.name] = {task: cross_entropy(model, a) for task, a in answers.items()}
        return {"smoothing": SMOOTHING, "stream_tokens": tokens, "heldout_docs": n_docs,
                "heldout_ce": cross_entropy(base_model, held_counts), "task_ce": task_ce}

    # -- 3. mixes --------------------------------------------------------------------------------------

    def build_mixes(self) -> None:
        for name, plan in mix_plans(self.cfg).items():
            try:
                stream = MixStream.open(name, self.data_dir)
                if stream.manifest.get("plan") == json.loads(json.dumps(plan.to_json())):
                    continue
            except MixkitError:
                pass
            self.log(f"build mix {name}")
            build_mix(plan, name, self.data_dir, overwrite=True)

    # -- 4. runs ---------------------------------------------------------------------------------------

    def run_table(self, run: PlannedRun, stages: list[dict[str, Any]]) -> dict[str, Any]:
        """The trainer's run config of one planned run. A base run keeps its checkpoints at exactly
        the start steps (the branch points); a variant run needs only its newest (to resume, and to
        finetune from)."""
        cfg = self.cfg
        table: dict[str, Any] = {
            "name": run.name, "out_dir": str(self.out / run_path(run.name)), "data_dir": str(self.data_dir),
            "seed": run.seed, "model": to_table(cfg.model), "optim": dict(cfg.tables["optim"]), "stages": stages,
            "heldout": f"{cfg.schedule.pretrain}-holdout",
            "tasks": {k: dict(v) for k, v in cfg.tables["tasks"].items()},
        }
        table.update(cfg.train.given())
        if self.tokenizer_path() is not None:
            table["tokenizer"] = self.tokenizer_path()
        if run.variant is None:
            table["keep_steps"] = list(cfg.start_steps)
            table.setdefault("checkpoint_interval", cfg.last_start)
        else:
            table["keep_steps"] = []
            table["keep_last"] = 1
            table.setdefault("checkpoint_interval", cfg.last_start)
        return table

    def branch_point(self, seed: int, step: int) -> Path:
        return step_dir(self.out / run_path(base_run_name(seed)) / "pretrain", step)

    def stages_of(self, run: PlannedRun) -> list[dict[str, Any]]:
        """The stages of one planned run: a base run pretrains on its seed's base mix to its end
        step; a variant run midtrains on its mix to the end and finetunes on every task."""
        if run.variant is None:
            return [{"kind": "pretrain", "name": "pretrain", "mix": mix_name(self.cfg, None, run.seed),
                     "until": run.end_step}]
        return [{"kind": "midtrain", "name": "midtrain", "mix": variant_mix(self.cfg, run.variant, run.seed)},
                {"kind": "sft", "name": "sft", "tasks": list(self.cfg.tasks), **self.cfg.tables["sft"]}]

    def run_key(self, run: PlannedRun) -> str | None:
        """The key a finished run records (``lab.completion``); None while its mixes are not built."""
        if run.name not in self._keys:
            stages = self.stages_of(run)
            try:
                mixes = {s["mix"]: MixStream.open(s["mix"], self.data_dir).fingerprint for s in stages if "mix" in s}
            except MixkitError:
                return None
            branch = None
            if run.variant is not None:
                branch = self.run_key(self.plan.run(base_run_name(run.seed)))
                if branch is None:
                    return None
            self._keys[run.name] = completion.run_key(self.run_table(run, stages), mixes, branch)
        return self._keys[run.name]

    def is_finished(self, run: PlannedRun) -> bool:
        """Recorded as finished with the inputs it has now; a base run also needs its branch points, or every
        variant run of its seed finished (a variant that must run again needs them)."""
        key = self.run_key(run)
        if key is None or not completion.is_recorded(self.out, run.name, self.out / run_path(run.name), key):
            return False
        if run.variant is None:
            return all(self.is_finished(r) for r in self.plan.variant_runs if r.seed == run.seed) or all(
                is_checkpoint(self.branch_point(run.seed, step)) for step in self.cfg.start_steps)
        return True

    def run_one(self, name: str) -> None:
        """Train one planned run (its finished parts are skipped), then record it as finished."""
        run = self.plan.run(name)
        if run is None:
            raise MixkitError(f"no run '{name}' in this study (runs: {', '.join(r.name for r in self.plan.runs)})")
        if self.is_finished(run):
            self.log(f"[{name}] finished before, skipped")
            return
        if run.variant is None:
            run_stages(run_config_from_dict(self.run_table(run, self.stages_of(run))), log=self.log)
        else:
            branch = self.branch_point(run.seed, run.start_step)
            if not branch.is_dir():
                raise MixkitError(f"run {name} branches from {branch}, which does not exist "
                                  f"({base_run_name(run.seed)} first)")
            run_stages(run_config_from_dict(self.run_table(run, self.stages_of(run))), branch_from=str(branch),
                       log=self.log)
        key = self.run_key(run)
        if key is not None:
            completion.write_record(self.out, run.name, self.out / run_path(run.name), key)

    def prune(self) -> None:
        """``prune_checkpoints``: delete the checkpoints of every seed whose runs have all finished."""
        for seed in self.cfg.seeds:
            runs = [r for r in self.plan.runs if r.seed == seed]
            if not all(self.is_finished(r) for r in runs):
                continue
            stages = [self.out / run_path(r.name) / ("pretrain" if r.variant is None else "midtrain") for r in runs]
            removed = completion.prune_checkpoints(stages)
            if removed:
                self.log(f"seed {seed}: all runs finished, {removed} checkpoint(s) pruned")

    def _describe(self, run: PlannedRun) -> str:
        if run.variant is None:
            return f"base pretraining to step {run.end_step}"
        return f"variant {run.variant}, mixture {self.cfg.variants[run.variant].mixture}, from step {run.start_step}"

    def train_all(self) -> list[str]:
        """Train every run; return the names of runs that failed (only possible with jobs > 1)."""
        base = [r for r in self.plan.base_runs if not self.is_finished(r)]
        rest = [r for r in self.plan.variant_runs if not self.is_finished(r)]
        skipped = len(self.plan.runs) - len(base) - len(rest)
        if skipped:
            self.log(f"{skipped} of {len(self.plan.runs)} runs finished before, skipped")
        if self.jobs == 1:
            self._run_in_process(base + rest)
            failed = []
        else:
            failed = self._run_processes(base)
            failed = failed + [r.name for r in rest] if failed else self._run_processes(rest)
        if self.cfg.prune_checkpoints:
            self.prune()
        return failed

    def _run_in_process(self, runs: list[PlannedRun]) -> None:
        durations: list[float] = []
        for i, run in enumerate(runs, 1):
            eta = f", ETA {format_duration(sum(durations) / len(durations) * (len(runs) - i + 1))}" if durations else ""
            self.log(f"[{i}/{len(runs)}] run {run.name} ({self._describe(run)}); elapsed {self.elapsed()}{eta}")
            t0 = time.monotonic()
            self.run_one(run.name)
            durations.append(time.monotonic() - t0)

    def worker_command(self, name: str) -> list[str]:
        """The process that trains one run: ``python -m lab.worker`` on the same config and folder."""
        if not self.config_path:
            raise MixkitError("jobs > 1 needs the study's config file path (to start one process per run)")
        return [sys.executable, "-m", "lab.worker", "--config", str(self.config_path), "--out", str(self.out),
                "--run", name]

    def _worker_env(self, slot: int) -> dict[str, str]:
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
                        proc = subprocess.Popen(self.worker_command(run.name), stdout=fh, stderr=subprocess.STDOUT,
                                                env=self._worker_env(slot))
                        active[slot] = (run, proc, fh)
                        self.log(f"start {run.name} ({self._describe(run)}) as process {proc.pid}, log "
                                 f"{LOGS_DIR}/{run.name}.log; elapsed {self.elapsed()}")
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
                             f"see {LOGS_DIR}/{run.name}.log") + f"; elapsed {self.elapsed()}")
                time.sleep(0.2)
        finally:
            for _run, proc, fh in active.values():
                proc.terminate()
                proc.wait()
                fh.close()
        return failed

    # -- 5. summary and report -------------------------------------------------------------------------

    def summary(self, measured: dict[str, Any]) -> dict[str, Any]:
        """``experiment.json``: what the report needs to find and describe every run."""
        cfg, s = self.cfg, self.cfg.schedule
        variants = {v: {"mixture": cfg.variants[v].mixture,
                        "runs": {str(seed): run_path(f"{v}-s{seed}") for seed in variant_seeds(cfg, v)}}
                    for v in cfg.variant_names}
        base_store = TokenStore.open(s.pretrain, self.data_dir)
        out: dict[str, Any] = {
            "name": cfg.name,
            "metric": cfg.metric,
            "tasks": list(cfg.tasks),
            "baseline": cfg.baseline,
            "distance": measured["distance"],
            "variants": variants,
            "pretrain_runs": {str(seed): run_path(base_run_name(seed)) for seed in cfg.seeds},
            "proximity": measured["proximity"],
            "protocol": cfg.protocol,
            "proximity_alt": measured["proximity_alt"],
            "unigram": measured["unigram"],
            "tokenizer": self.tokenizer_summary(),
            "task_targets": {t: cfg.task_target(t) for t in cfg.tasks},
            "command": self.command,
            "scale": {"model": cfg.model.name, "pretrain_steps": cfg.last_start,
                      "total_steps": s.steps, "seq_len": s.seq_len, "global_batch": s.global_batch,
                      "tokens": s.steps * s.seq_len * s.global_batch,
                      "pretrain_corpus_tokens": base_store.num_tokens},
        }
        if cfg.sweep is not None:
            out["sweep"] = {
                "datasets": list(cfg.sweep.datasets),
                "start_steps": list(cfg.start_steps),
                "start_step_spec": list(cfg.start_spec),
                "ratios": sorted(float(r) for r in cfg.sweep.ratio),
                "grid": {v.name: {"dataset": v.dataset, "start_step": v.start_step, "ratio": v.ratio}
                         for v in cfg.grid()},
                "kept_checkpoints": list(self.plan.kept_checkpoints),
                "steps_shared": self.plan.steps_shared,
                "steps_unshared": self.plan.steps_unshared,
            }
        return out

    def prepare(self) -> dict[str, Any]:
        """Stores, distances, experiment.json and mixes: everything before training (and a copy of
        the config file, so the folder says what made it)."""
        self.out.mkdir(parents=True, exist_ok=True)
        if self.config_path:
            atomic.write_text(self.out / CONFIG_COPY, Path(self.config_path).read_text())
        self.tokenize()
        measured = self.measure()
        atomic.write_json(self.out / EXPERIMENT_FILE, self.summary(measured))
        self.log(f"proximity advantage ({self.cfg.metric}): " + "; ".join(
            f"{v}: " + ", ".join(f"{t} {a:+.4f}" for t, a in p.items()) for v, p in measured["proximity"].items()))
        self.build_mixes()
        return measured

    def run(self) -> Path:
        """The whole study; the path of ``report.md``. One process runs a study folder at a time:
        its write lock (``OUT/.lock``, ``mixkit.locks``) is held throughout."""
        with locks.write_lock(self.out / ".lock", f"study folder '{self.out}'", "wait or pick another --out"):
            return self._run()

    def _run(self) -> Path:
        self.log(f"{'sweep' if self.is_sweep else 'experiment'} {self.cfg.name} → {self.out}")
        for line in self.describe_plan():
            self.log("plan: " + line)
        self.prepare()
        failed = self.train_all()
        report = write_report(self.out)
        self.log(f"report: {report} (elapsed {self.elapsed()})")
        if failed:
            raise MixkitError(f"{len(failed)} run(s) failed or did not start: {', '.join(failed)} (logs in "
                              f"{self.out / LOGS_DIR}); the report holds what finished; rerun to resume")
        return report


def default_out(cfg: StudyConfig) -> Path:
    return Path("runs") / cfg.name


def run_study(cfg: StudyConfig, out: str | Path | None = None, log=print, command: str = "", **kwargs: Any) -> Path:
    """Run (or continue) a study; return the path of ``report.md``."""
    return StudyRunner(cfg, out or default_out(cfg), log=log, command=command, **kwargs).run()
