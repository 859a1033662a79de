"""The study config: the paper's design at a chosen scale, in one TOML file, checked whole at load.

An experiment and a sweep are the same thing here: a set of midtraining variants, each a
mixture entering the pretraining stream at a start step, branched from one base run per
seed. An experiment gives one start step (``schedule.start_step``) and names its variants;
a sweep's ``[sweep]`` table makes the variants from a grid of start steps × ratios::

    name = "quickstart"
    seeds = [1234, 1235, 1236]  # every variant runs with every seed: init, data order and SFT order
    variant_seeds = 3           # optional: only the first N seeds for the non-baseline variants (budget)
    metric = "js"               # distance for the proximity advantage
    protocol = "all"            # counts: "all" tokens, or "paper" (the authors' 1,000 docs × 512 tokens sampling)
    prune_checkpoints = false   # true: once every run of a seed has finished, delete its checkpoints (lab.completion)

    [corpora]                   # token stores to make: sources (globs, hf://, URLs; "@samples/" = bundled), preset
    c4 = { sources = ["@samples/c4.jsonl.gz"], preset = "c4", holdout_docs = 100 }
    code = { sources = ["@samples/code.jsonl.gz"], preset = "code" }
    web = { sources = ["hf://allenai/c4/en:train"], preset = "c4", max_tokens = 400_000_000, tokens = 1.56e11 }
                                # max_docs/max_tokens: store a prefix; tokens: the sources' size (for --dry-run)
    csn = { sources = ["hf://code-search-net/code_search_net/python:test"], template = "{func_code_string}" }

    [schedule]
    pretrain = "c4"             # the pretraining corpus (its NAME-holdout measures forgetting)
    steps = 120                 # total steps N; the LR schedule spans all of them
    start_step = 60             # S: where midtraining variants branch off the base run (experiments)
    seq_len = 64
    global_batch = 8
    allow_repeat = true

    [variants]                  # the mixture from S on; "baseline" names the base-only variant
    baseline = "base"
    base = "c4:1"
    code20 = "c4:0.8,code:0.2"
    code100 = "code:1"

    [sweep]                     # instead of start_step and the non-baseline variants:
    datasets = ["code"]         # corpora mixed into the pretraining corpus from the start step on
    start_step = [0.1, 0.3]     # fractions of schedule.steps (0 < f < 1), or absolute steps (integers ≥ 1)
    ratio = [0.1, 0.2, 0.4]     # the added dataset's weight r (0 < r ≤ 1); the pretraining corpus gets 1 - r

    [tasks.gsm8k]               # SFT tasks: trainer.sft_data.TaskConfig keys, plus the store
    train = "@samples/gsm8k_train.jsonl.gz"   # that stands for the task's distribution
    val = "@samples/gsm8k_test.jsonl.gz"
    target = "gsm8k"

    [tokenizer]                 # optional; default: the bundled GPT-NeoX-20B tokenizer (Pythia's)
    train = { corpora = ["c4"], vocab_size = 4096 }   # or: file = "path/tokenizer.json"

    [model]                     # trainer.model.ModelSpec: a named config and overrides of its fields
    [optim]                     # trainer.optim.OptimConfig: pretrain/midtrain optimizer
    [train]                     # TrainSettings below
    [sft]                       # trainer.sft.SFTConfig
    [launcher]                  # LauncherConfig below: Slurm jobs of `--launcher slurm` (no effect on results)

A sweep's grid point (dataset d, start step S, ratio r) is the variant ``{d}{100 r}-at{S}``
(``code20-at36``) with mixture ``pretrain:1-r,d:r`` from S on; its baseline ``base`` (the
pretraining corpus alone to the end) branches at the last start step. A fraction f of the
steps becomes step ``max(1, round(f · steps))``.

Every table is built with ``mixkit.config.from_table`` (or checked key by key where its keys
are names, as in ``[corpora]`` and ``[variants]``), so a typo anywhere is refused before any
tokenizing, with one line naming the file, the table and the key.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tokenizers import Tokenizer

from mixkit.config import ConfigError, Where, coerce, from_table, invalid, where_of
from mixkit.distance import METRIC_NAMES
from mixkit.errors import MixkitError
from mixkit.mixture import Mixture
from mixkit.presets import PRESETS, TextSpec
from mixkit.samples import SAMPLES_DIR
from mixkit.toml_file import read_toml
from mixkit.unigram import PROTOCOLS
from trainer.model import ModelSpec
from trainer.optim import OptimConfig
from trainer.sft import SFTConfig
from trainer.sft_data import TaskConfig

SAMPLES_PREFIX = "@samples/"
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
BASELINE = "base"
DEFAULT_MODEL = "tiny"  # a study's model when [model] names none: small enough for a CPU


def resolve_source(text: str, base: Path | None) -> str:
    """``@samples/x`` → the bundled file; a relative path is relative to ``base``, or kept as
    written (relative to the working directory) when ``base`` is None, so manifests and
    reports do not record the machine's absolute paths."""
    if text.startswith(SAMPLES_PREFIX):
        return str(SAMPLES_DIR / text[len(SAMPLES_PREFIX):])
    if _URL.match(text):  # hf://, s3://, https://, ...: not a path
        return text
    p = Path(text)
    return str(p if p.is_absolute() or base is None else base / p)


@dataclass
class Corpus:
    """``[corpora.NAME]``: a token store to make.

    ``preset`` (or a ``template`` over the records' fields) says how a record becomes text;
    ``max_docs`` / ``max_tokens`` store a deterministic prefix of the sources (``mixkit tokenize
    --max-docs/--max-tokens``); ``tokens`` declares the sources' size in tokens, an approximate
    public figure that only ``--dry-run`` reads (it downloads nothing to count them)."""

    sources: str | list[str]
    preset: str | None = None
    template: str | None = None
    holdout_docs: int = 0
    on_error: Literal["raise", "skip"] = "raise"
    max_docs: int | None = None
    max_tokens: int | None = None
    tokens: float | None = None
    name: str = field(default="", metadata={"config": False})

    def __post_init__(self) -> None:
        if isinstance(self.sources, str):
            self.sources = [self.sources]
        if not self.sources:
            raise invalid("sources", "list at least one file or glob")
        if (self.preset is None) == (self.template is None):
            raise invalid("preset", "give a preset or a template over the records' fields (one of them)")
        if self.preset is not None and self.preset not in PRESETS:
            raise invalid("preset", f"unknown {self.preset!r} (known: {', '.join(PRESETS)})")
        if self.holdout_docs < 0:
            raise invalid("holdout_docs", f"must be >= 0, got {self.holdout_docs}")
        for key in ("max_docs", "max_tokens", "tokens"):
            if getattr(self, key) is not None and getattr(self, key) <= 0:
                raise invalid(key, f"must be positive, got {getattr(self, key)}")
        if isinstance(self.tokens, float) and not math.isfinite(self.tokens):
            raise invalid("tokens", f"must be a finite number, got {self.tokens}")
        self.text_spec()  # a template naming no field is refused here, before any tokenizing

    def text_spec(self) -> TextSpec:
        """How a record becomes the stored text (``mixkit.presets.TextSpec``)."""
        return TextSpec(preset=self.preset, template=self.template)


@dataclass
class Schedule:
    """``[schedule]``: the mix every run reads and where the variants branch."""

    pretrain: str
    steps: int
    seq_len: int
    global_batch: int
    start_step: int = 0  # an experiment's S; a sweep gives its start steps in [sweep] instead
    allow_repeat: bool = False

    def __post_init__(self) -> None:
        if self.steps < 2:
            raise invalid("steps", f"must be an integer ≥ 2, got {self.steps}")
        for key in ("seq_len", "global_batch"):
            if getattr(self, key) <= 0:
                raise invalid(key, f"must be positive, got {getattr(self, key)}")


@dataclass
class TrainSettings:
    """``[train]``: run settings passed to every run's config; unset keys keep the trainer's defaults."""

    micro_batch: int | None = None
    device: Literal["auto", "cpu", "cuda"] | None = None
    precision: Literal["auto", "fp32", "bf16"] | None = None
    compile: bool | None = None
    checkpoint_interval: int | None = None
    eval_batch: int | None = None
    heldout_docs: int | None = None
    eval_seq_len: int | None = None
    peak_flops: float | None = None

    def given(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if v is not None}


@dataclass
class TokenizerTraining:
    """``[tokenizer] train = {...}``: a byte-level BPE trained on some of the study's corpora
    (``mixkit train-tokenizer``), cached by content in the study's data folder."""

    corpora: list[str]
    vocab_size: int
    max_docs: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.corpora:
            raise invalid("corpora", "name at least one corpus to train the tokenizer on")
        if self.vocab_size < 257:
            raise invalid("vocab_size", f"must cover the 256 bytes and <|endoftext|>, got {self.vocab_size}")


@dataclass
class TokenizerChoice:
    """``[tokenizer]``: a tokenizer file, or one to train; the model's vocabulary follows it."""

    file: str | None = None
    train: TokenizerTraining | None = None

    def __post_init__(self) -> None:
        if (self.file is None) == (self.train is None):
            raise invalid("file", "give either file = \"tokenizer.json\" or train = { corpora = [...], vocab_size = N }")


VOCAB_MULTIPLE = 64  # the model's vocabulary is the tokenizer's padded to a multiple of this (GPT-NeoX's habit)


def padded_vocab(size: int) -> int:
    return -(-size // VOCAB_MULTIPLE) * VOCAB_MULTIPLE


@dataclass
class SweepAxes:
    """``[sweep]``: the grid of a sweep."""

    datasets: str | list[str]
    start_step: list[int | float]
    ratio: list[int | float]

    def __post_init__(self) -> None:
        if isinstance(self.datasets, str):
            self.datasets = [self.datasets]
        if not self.datasets or len(set(self.datasets)) != len(self.datasets):
            raise invalid("datasets", f"must list distinct corpus names, got {self.datasets!r}")
        if not self.ratio:
            raise invalid("ratio", "must be a non-empty list of numbers")
        if len(set(self.ratio)) != len(self.ratio):
            raise invalid("ratio", f"values must be distinct, got {self.ratio}")
        if any(not 0 < r <= 1 for r in self.ratio):
            raise invalid("ratio", f"every ratio must be in (0, 1], got {self.ratio}")


@dataclass(frozen=True)
class Variant:
    """One midtraining variant: its mixture from ``start_step`` on (grid coordinates for a sweep's)."""

    name: str
    mixture: str
    start_step: int
    dataset: str = ""
    ratio: float = 0.0


SLURM_TIME = re.compile(r"^(\d+-)?\d+(:\d{2}){0,2}$")  # MM, MM:SS, HH:MM:SS, D-HH[:MM[:SS]]


@dataclass
class LauncherConfig:
    """``[launcher]``: the Slurm jobs of ``--launcher slurm`` (``lab.launcher``); command-line flags win.

    ``time`` is Slurm's limit per job (``HH:MM:SS``, ``D-HH:MM:SS`` or minutes); ``gpus_per_job``
    GPUs for each run's job (the prepare and report jobs take none); ``setup`` shell lines run
    first in every job (``module load ...``, ``source .venv/bin/activate``); ``sbatch_args`` more
    ``sbatch`` options as written (``--qos=high``); ``python`` the interpreter on the nodes
    (default: the one that launches). Nothing here changes a result, so it is not part of
    any run's identity.
    """

    partition: str | None = None
    account: str | None = None
    time: str = "04:00:00"
    gpus_per_job: int = 1
    cpus_per_job: int | None = None
    mem: str | None = None
    setup: list[str] = field(default_factory=list)
    sbatch_args: list[str] = field(default_factory=list)
    python: str | None = None

    def __post_init__(self) -> None:
        if not SLURM_TIME.match(self.time):
            raise invalid("time", f"{self.time!r} is not a Slurm time (HH:MM:SS, D-HH:MM:SS or minutes)")
        if self.gpus_per_job < 0:
            raise invalid("gpus_per_job", f"must be >= 0, got {self.gpus_per_job}")
        if self.cpus_per_job is not None and self.cpus_per_job < 1:
            raise invalid("cpus_per_job", f"must be at least 1 when given, got {self.cpus_per_job}")
        for key in ("partition", "account", "mem", "python"):
            if getattr(self, key) == "":
                raise invalid(key, "must not be empty (leave it out instead)")
        for arg in self.sbatch_args:
            if not arg.startswith("-"):
                raise invalid("sbatch_args", f"{arg!r} is not an sbatch option (write each as --name=value)")


@dataclass
class StudyConfig:
    """A whole study, validated: what to tokenize, measure, mix, train and finetune."""

    name: str
    seeds: list[int]
    variant_seeds: int  # how many of the seeds the non-baseline variants run with
    metric: str
    protocol: str  # how the unigram distributions behind the proximity are counted (mixkit.unigram.PROTOCOLS)
    corpora: dict[str, Corpus]
    schedule: Schedule
    variants: dict[str, Variant]  # the baseline first, then the config's (or the grid's) order
    baseline: str
    tasks: dict[str, TaskConfig]  # paths resolved
    targets: dict[str, str]  # task -> the corpus standing for its distribution
    model: ModelSpec
    optim: OptimConfig
    train: TrainSettings
    sft: SFTConfig
    tables: dict[str, Any] = field(default_factory=dict, repr=False)  # [optim], [sft], [tasks.*] as written
    sweep: SweepAxes | None = None
    tokenizer: TokenizerChoice | None = None  # None: the bundled GPT-NeoX-20B tokenizer
    start_steps: list[int] = field(default_factory=list)  # ascending; an experiment's one S
    start_spec: list[int | float] = field(default_factory=list)  # a sweep's start steps as written
    launcher: LauncherConfig = field(default_factory=LauncherConfig)  # Slurm jobs (lab.launcher)
    prune_checkpoints: bool = False  # delete a seed's checkpoints once all its runs have finished (lab.completion)

    @property
    def variant_names(self) -> list[str]:
        return list(self.variants)

    @property
    def last_start(self) -> int:
        return self.start_steps[-1]

    def task_target(self, task: str) -> str:
        return self.targets[task]

    def mixture(self, variant: str) -> Mixture:
        return Mixture.parse(self.variants[variant].mixture)

    def grid(self) -> list[Variant]:
        """A sweep's grid points (every variant but the baseline), in grid order."""
        return [v for v in self.variants.values() if v.name != self.baseline]


TOP_KEYS = ("name", "seeds", "variant_seeds", "metric", "protocol", "prune_checkpoints", "corpora", "schedule", "variants", "tasks", "tokenizer", "model",
            "optim", "train", "sft", "sweep", "launcher")


def ratio_label(ratio: float) -> str:
    """0.2 -> "20", 0.125 -> "12.5": the percentage as written in variant names and plots."""
    return f"{round(100 * ratio, 6):g}"


def grid_variant(pretrain: str, dataset: str, start_step: int, ratio: float) -> Variant:
    rest = round(1.0 - ratio, 10)
    mixture = f"{dataset}:1" if rest == 0 else f"{pretrain}:{rest:g},{dataset}:{ratio:g}"
    return Variant(f"{dataset}{ratio_label(ratio)}-at{start_step}", mixture, start_step, dataset, float(ratio))


def resolve_start_steps(values: list[int | float], steps: int, where: Where) -> list[int]:
    """Fractions (0 < f < 1) of ``steps`` -> ``max(1, round(f · steps))``; integers ≥ 1 stay; ascending, distinct."""
    if not values:
        raise where.error("start_step", "must be a non-empty list")
    out: dict[int, Any] = {}
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise where.error("start_step", f"{v!r} is neither a fraction of the steps nor a step")
        if isinstance(v, float):
            if not 0 < v < 1:
                raise where.error("start_step", f"{v!r}: a fraction must be between 0 and 1 (exclusive); "
                                                f"write absolute steps as integers")
            step = max(1, round(v * steps))
        else:
            step = v
        if not 0 < step < steps:
            raise where.error("start_step", f"{v!r} is step {step}, outside 1..{steps - 1} (schedule.steps = {steps})")
        if step in out:
            raise where.error("start_step", f"{out[step]!r} and {v!r} are both step {step}")
        out[step] = v
    return sorted(out)


def parse_study(table: dict[str, Any], file: str | os.PathLike | None = None, base: Path | None = None,
                kind: Literal["experiment", "sweep"] | None = None) -> StudyConfig:
    """Check every table of a study config and build it; ``kind`` requires (or forbids) a ``[sweep]`` table."""
    top = where_of(file)
    unknown = [k for k in table if k not in TOP_KEYS]
    if unknown:
        raise top.error(unknown[0], f"unknown key (known: {', '.join(TOP_KEYS)})")
    if kind == "sweep" and "sweep" not in table:
        raise top.error("sweep", "missing: a sweep config needs a [sweep] table (datasets, start_step, ratio)")
    if kind == "experiment" and "sweep" in table:
        raise top.error("sweep", "this is a sweep config: run it with `mixkit sweep`")
    if "name" not in table:
        raise top.error("name", "missing (required)")
    name = coerce(table["name"], str, top, "name")
    seeds = coerce(table.get("seeds", [1234, 1235]), list[int], top, "seeds")
    if not seeds or len(set(seeds)) != len(seeds):
        raise top.error("seeds", f"must be a non-empty list of distinct integers, got {seeds!r}")
    variant_seeds = coerce(table.get("variant_seeds", len(seeds)), int, top, "variant_seeds")
    if not 1 <= variant_seeds <= len(seeds):
        raise top.error("variant_seeds", f"must be between 1 and the number of seeds ({len(seeds)}), got {variant_seeds}")
    metric = coerce(table.get("metric", "js"), str, top, "metric")
    if metric not in METRIC_NAMES:
        raise top.error("metric", f"must be one of {', '.join(METRIC_NAMES)}, got {metric!r}")
    protocol = coerce(table.get("protocol", "all"), str, top, "protocol")
    if protocol not in PROTOCOLS:
        raise top.error("protocol", f"must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")

    prune = coerce(table.get("prune_checkpoints", False), bool, top, "prune_checkpoints")

    corpora_table = _table(table, "corpora", top)
    corpora = {}
    for cname, c in corpora_table.items():
        where = top.sub("corpora").sub(cname)
        corpus = from_table(Corpus, c, where, name=cname)
        corpus.sources = [resolve_source(s, base) for s in corpus.sources]
        corpora[cname] = corpus

    sched_where = top.sub("schedule")
    sched_table = _table(table, "schedule", top)
    sweep = None
    if "sweep" in table:
        if "start_step" in sched_table:
            raise sched_where.error("start_step", "a sweep config gives its start steps in sweep.start_step instead")
        sched_table = dict(sched_table, start_step=0)
        sweep = from_table(SweepAxes, table["sweep"], top.sub("sweep"))
    elif "start_step" not in sched_table:
        raise sched_where.error("start_step", "missing (required)")
    schedule = from_table(Schedule, sched_table, sched_where)
    if schedule.pretrain not in corpora:
        raise sched_where.error("pretrain", f"names '{schedule.pretrain}', which is not in [corpora]")
    if not corpora[schedule.pretrain].holdout_docs:
        raise top.sub("corpora").sub(schedule.pretrain).error(
            "holdout_docs", "the pretraining corpus must hold out documents to measure forgetting")

    var_where = top.sub("variants")
    if sweep is None:
        if not 0 < schedule.start_step < schedule.steps:
            raise sched_where.error("start_step", f"must be between 1 and steps - 1, got {schedule.start_step}")
        start_steps = [schedule.start_step]
        written = dict(_table(table, "variants", top))
        baseline = written.pop("baseline", None)
        if not isinstance(baseline, str) or baseline not in written:
            raise var_where.error("baseline", "must name one of the variants (the base-only run)")
        variants = {}
        for vname in [baseline] + [v for v in written if v != baseline]:
            expr = written[vname]
            if not isinstance(expr, str):
                raise var_where.error(vname, "must be a mixture like \"c4:0.8,code:0.2\"")
            variants[vname] = Variant(vname, expr, schedule.start_step)
    else:
        sweep_where = top.sub("sweep")
        start_steps = resolve_start_steps(sweep.start_step, schedule.steps, sweep_where)
        for d in sweep.datasets:
            if d not in corpora:
                raise sweep_where.error("datasets", f"names '{d}', which is not in [corpora]")
            if d == schedule.pretrain:
                raise sweep_where.error("datasets", f"'{d}' is the pretraining corpus; name the data to mix into it")
        written = table.get("variants", {"baseline": BASELINE, BASELINE: f"{schedule.pretrain}:1"})
        if not isinstance(written, dict):
            raise var_where.error("baseline", "[variants] must be a table")
        baseline = written.get("baseline", BASELINE)
        extra = set(written) - {"baseline", baseline}
        if extra:
            raise var_where.error(sorted(extra)[0], "a sweep config's [variants] may only name the baseline "
                                                    "(the grid is the variants)")
        base_expr = written.get(baseline, f"{schedule.pretrain}:1")
        if not isinstance(base_expr, str):
            raise var_where.error(baseline, "must be a mixture like \"c4:1\"")
        variants = {baseline: Variant(baseline, base_expr, start_steps[-1])}
        for d in sweep.datasets:
            for s in start_steps:
                for r in sorted(float(x) for x in sweep.ratio):
                    v = grid_variant(schedule.pretrain, d, s, r)
                    if v.name == baseline:
                        raise var_where.error("baseline", f"'{baseline}' clashes with a grid variant's name")
                    variants[v.name] = v
    for v in variants.values():
        try:
            mixture = Mixture.parse(v.mixture)
        except MixkitError as e:
            raise var_where.error(v.name, e.message) from None
        for store in mixture.names:
            if store not in corpora:
                raise var_where.error(v.name, f"mixes '{store}', which is not in [corpora]")

    tasks_table = _table(table, "tasks", top)
    if not tasks_table:
        raise top.error("tasks", "configure at least one [tasks.NAME]")
    tasks, targets, task_tables = {}, {}, {}
    for tname, t in tasks_table.items():
        where = top.sub("tasks").sub(tname)
        if not isinstance(t, dict):
            raise ConfigError(f"{where.location()}: expected a table, got {t!r}")
        t = dict(t)
        target = coerce(t.pop("target", tname), str, where, "target")
        if target not in corpora:
            raise where.error("target", f"names '{target}', which is not in [corpora]")
        for key in ("train", "val"):
            if key in t:
                items = coerce(t[key], str | list[str], where, key)
                t[key] = [resolve_source(x, base) for x in ([items] if isinstance(items, str) else items)]
        try:
            tasks[tname] = from_table(TaskConfig, t, where, name=tname)
        except ConfigError as e:  # a key of neither the task nor the study: name both
            raise ConfigError(e.message.replace("(known: ", "(known: target, ", 1)) from None
        targets[tname], task_tables[tname] = target, t

    tokenizer = None
    if "tokenizer" in table:
        tokenizer = from_table(TokenizerChoice, table["tokenizer"], top.sub("tokenizer"))
        tok_where = top.sub("tokenizer")
        if tokenizer.file is not None:
            tokenizer.file = resolve_source(tokenizer.file, base)
            vocab = _tokenizer_vocab(tokenizer.file, tok_where)
        else:
            for c in tokenizer.train.corpora:
                if c not in corpora:
                    raise tok_where.error("train", f"names corpus '{c}', which is not in [corpora]")
            presets = {(corpora[c].preset, corpora[c].template) for c in tokenizer.train.corpora}
            if len(presets) > 1:
                raise tok_where.error("train", "its corpora must share one preset (or template), got "
                                               f"{sorted(p or t for p, t in presets)}")
            vocab = tokenizer.train.vocab_size
    model_table = dict(_table(table, "model", top, {}))
    model_table.setdefault("name", DEFAULT_MODEL)
    if tokenizer is not None:
        if "vocab_size" in model_table and model_table["vocab_size"] < vocab:
            raise top.sub("model").error("vocab_size", f"{model_table['vocab_size']} is below the tokenizer's {vocab}")
        model_table.setdefault("vocab_size", padded_vocab(vocab))
    model = from_table(ModelSpec, model_table, top.sub("model"))
    optim_table = dict(_table(table, "optim", top, {}))
    optim = from_table(OptimConfig, optim_table, top.sub("optim"))
    train = from_table(TrainSettings, _table(table, "train", top, {}), top.sub("train"))
    sft_table = dict(_table(table, "sft", top, {}))
    sft = from_table(SFTConfig, sft_table, top.sub("sft"))
    launcher = from_table(LauncherConfig, _table(table, "launcher", top, {}), top.sub("launcher"))
    max_seq_len = model.build().max_seq_len
    if sft.seq_len > max_seq_len:
        raise top.sub("sft").error("seq_len", f"{sft.seq_len} is above the model's max_seq_len {max_seq_len}")
    # the lengths every stage will use, checked now rather than after the stages before them ran
    if schedule.seq_len > max_seq_len:
        raise top.sub("schedule").error("seq_len", f"{schedule.seq_len} is above the model's max_seq_len {max_seq_len}")
    if (train.eval_seq_len or 0) > max_seq_len:
        raise top.sub("train").error("eval_seq_len", f"{train.eval_seq_len} is above the model's max_seq_len {max_seq_len}")

    return StudyConfig(name=name, seeds=seeds, variant_seeds=variant_seeds, metric=metric, protocol=protocol, corpora=corpora, schedule=schedule, variants=variants,
                       baseline=baseline, tasks=tasks, targets=targets, model=model, optim=optim, train=train, sft=sft,
                       sweep=sweep, tokenizer=tokenizer, start_steps=start_steps,
                       tables={"optim": optim_table, "sft": sft_table, "tasks": task_tables},
                       start_spec=list(sweep.start_step) if sweep else [schedule.start_step], launcher=launcher,
                       prune_checkpoints=prune)


def load_study(path: str | os.PathLike, kind: Literal["experiment", "sweep"] | None = None,
               base: Path | None = None) -> StudyConfig:
    """Read and check a study config file (``kind``: what the command expects)."""
    return parse_study(read_toml(path, f"{kind or 'study'} config"), path, base, kind)


def _tokenizer_vocab(path: str, where: Where) -> int:
    try:
        return Tokenizer.from_file(path).get_vocab_size()
    except Exception as e:
        raise where.error("file", f"cannot read tokenizer {path}: {str(e).splitlines()[0] if str(e) else e}") from None


def _table(table: dict[str, Any], key: str, where: Where, default: Any = None) -> dict[str, Any]:
    if key not in table:
        if default is None:
            raise where.error(key, "missing (required)")
        return default
    value = table[key]
    if not isinstance(value, dict):
        raise where.error(key, f"expected a table, got {value!r}")
    return value
