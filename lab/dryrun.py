"""``--dry-run``: what a study will draw from each corpus, and how often that repeats it, before anything runs.

Nothing is downloaded or tokenized. With ``T = seq_len × global_batch`` tokens a step, N
steps, a variant with start step S and mixture shares ``w`` (its stream is the pretraining
corpus alone before S, the mixture from S to N; the baseline reads the pretraining corpus
for all N steps), one run of that variant draws from corpus ``c``::

    draw(c, variant) = T · (S · [c = pretrain] + (N − S) · w_c)

A corpus's **per-run budget** is its largest draw over the variants (each run reads its own
mix, so repetition is a matter of one run), its **study total** the sum over the planned runs
of what each trains (base runs: ``S_max · T`` of the pretraining corpus; variant runs:
``(N − S) · T · w_c``), and its **expected epochs** the per-run budget over its size.

A corpus's size, best first: the store already tokenized in ``OUT/data`` (exact); the
config's ``tokens`` (a declared public figure, approximate), capped by ``max_tokens``;
``max_tokens`` alone (the source assumed to hold at least that); for local files, an
estimate of 4 bytes of text a token (compressed files counted at 3× their size), labelled as
an estimate; otherwise unknown. Corpora that no variant mixes (the tasks' targets) are only
measured, with no budget.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path

from lab.config import SAMPLES_PREFIX, Corpus, StudyConfig
from lab.plan import StudyPlan
from mixkit.errors import MixkitError
from mixkit.samples import SAMPLES_DIR
from mixkit.store import TokenStore

BYTES_PER_TOKEN = 4.0  # English text and code with a GPT-NeoX-style BPE: about 4 bytes a token
COMPRESSION = 3.0  # gzip/zstd JSON lines: about 3 bytes of text for each byte on disk
COMPRESSED = (".gz", ".zst")


@dataclass(frozen=True)
class CorpusBudget:
    name: str
    sources: list[str]
    per_run: float  # the most tokens one run draws from it
    total: float  # tokens drawn over every planned run of the study
    size: float | None  # tokens
    basis: str  # where the size comes from

    @property
    def epochs(self) -> float | None:
        """Expected passes over the corpus in the run that reads it most (None: size unknown)."""
        if not self.size:
            return None
        return self.per_run / self.size


def tokens_per_step(cfg: StudyConfig) -> int:
    return cfg.schedule.seq_len * cfg.schedule.global_batch


def draws(cfg: StudyConfig) -> dict[str, dict[str, float]]:
    """``{variant: {corpus: tokens one run of it draws}}`` (module docstring)."""
    s, t = cfg.schedule, tokens_per_step(cfg)
    out = {}
    for v in cfg.variants.values():
        d = {c: t * (s.steps - v.start_step) * w for c, w in cfg.mixture(v.name).shares.items()}
        d[s.pretrain] = d.get(s.pretrain, 0.0) + t * v.start_step
        out[v.name] = d
    return out


def study_totals(cfg: StudyConfig, plan: StudyPlan) -> dict[str, float]:
    """Tokens each corpus feeds the training of all planned runs (shared base runs counted once)."""
    t, totals = tokens_per_step(cfg), {c: 0.0 for c in cfg.corpora}
    for run in plan.runs:
        steps = run.end_step - run.start_step
        shares = {cfg.schedule.pretrain: 1.0} if run.variant is None else cfg.mixture(run.variant).shares
        for c, w in shares.items():
            totals[c] += t * steps * w
    return totals


def _local_estimate(sources: list[str]) -> tuple[float, str] | None:
    files = []
    for pattern in sources:
        if "://" in pattern:
            return None
        matches = sorted(glob.glob(pattern, recursive=True)) if any(ch in pattern for ch in "*?[") else [pattern]
        files += [Path(m) for m in matches if Path(m).is_file()]
    if not files:
        return None
    on_disk = sum(f.stat().st_size for f in files)
    text = sum(f.stat().st_size * (COMPRESSION if f.name.endswith(COMPRESSED) else 1.0) for f in files)
    return text / BYTES_PER_TOKEN, f"estimate from {on_disk / 1e6:,.1f} MB of files"


def corpus_size(corpus: Corpus, data_dir: Path) -> tuple[float | None, str]:
    """(tokens, basis) of a corpus as the study will store it (module docstring)."""
    try:
        store = TokenStore.open(corpus.name, data_dir, verify=False)  # its count only: no need to read it whole
        return float(store.num_tokens), f"store in {data_dir}"
    except MixkitError:
        pass
    cap = corpus.max_tokens
    if corpus.tokens is not None:
        if cap is not None and cap < corpus.tokens:
            return float(cap), f"max_tokens prefix of ≈{_short(corpus.tokens)} declared"
        return float(corpus.tokens), "declared (≈)"
    if cap is not None:
        return float(cap), "max_tokens prefix (source assumed larger)"
    estimate = _local_estimate(corpus.sources)
    if estimate is not None:
        return estimate
    return None, "unknown: declare tokens = N"


def budgets(cfg: StudyConfig, plan: StudyPlan, data_dir: Path) -> list[CorpusBudget]:
    """Per corpus (config order): per-run budget, study total, size and its basis."""
    per_variant = draws(cfg)
    totals = study_totals(cfg, plan)
    out = []
    for name, corpus in cfg.corpora.items():
        per_run = max((d.get(name, 0.0) for d in per_variant.values()), default=0.0)
        size, basis = corpus_size(corpus, data_dir)
        out.append(CorpusBudget(name, list(corpus.sources), per_run, totals[name], size, basis))
    return out


def shown_source(source: str) -> str:
    """A source as a config writes it: bundled samples as ``@samples/NAME``."""
    prefix = str(SAMPLES_DIR) + "/"
    return SAMPLES_PREFIX + source[len(prefix):] if source.startswith(prefix) else source


def _short(n: float) -> str:
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:.3g}"


def describe(cfg: StudyConfig, plan: StudyPlan, data_dir: Path) -> list[str]:
    """The dry run's lines: the token totals, then one row per corpus."""
    t = tokens_per_step(cfg)
    lines = [
        f"tokens: {cfg.schedule.steps:,} steps × {cfg.schedule.global_batch} × {cfg.schedule.seq_len} = "
        f"{cfg.schedule.steps * t:,} per run; {plan.steps_shared:,} steps with sharing × {t:,} = "
        f"{plan.steps_shared * t:,} training tokens in the study ({len(plan.runs)} runs)",
    ]
    rows = [("corpus", "per run", "study", "size", "epochs", "size from", "source")]
    for b in budgets(cfg, plan, data_dir):
        mixed = b.per_run > 0
        epochs = "-" if not mixed else ("?" if b.epochs is None else f"{b.epochs:.2f}")
        rows.append((b.name, _short(b.per_run) if mixed else "measured only", _short(b.total) if mixed else "-",
                     "?" if b.size is None else _short(b.size), epochs, b.basis,
                     ", ".join(shown_source(x) for x in b.sources)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(r[:-1], widths)) + "  " + r[-1] for r in rows]
    return lines
