"""``mixkit count``, ``distance``, ``proximity``: unigram counts and how far apart datasets are.

Every SOURCE argument is a store name (in the data dir), a store path, or a mixture
expression such as ``"c4:0.8,code:0.2"``. The numbers printed are the ones
``mixkit.distance`` returns for the same inputs; ``--json`` prints them unrounded.
``--protocol paper`` counts as the paper did (``mixkit.unigram``'s module docstring).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import click

from cli.verify_option import no_verify_option
from mixkit import distance as D
from mixkit.distance_plot import plot_distance_matrix
from mixkit.errors import MixkitError
from mixkit.store import TokenStore
from mixkit.unigram import MIX_BY, PROTOCOLS, CountOptions, count_store, distributions

DATA_DIR_HELP = "Data directory."
DATA_DIR_DEFAULT = "$MIXKIT_DATA_DIR, else ./mixkit-data"
METRIC_CHOICES = D.METRIC_NAMES
COUNT_DEFAULTS = CountOptions()


def count_options(f):
    """The options that decide what is counted (shared by all three commands)."""
    for opt in reversed(
        [
            click.option("--data-dir", type=click.Path(file_okay=False), show_default=DATA_DIR_DEFAULT, help=DATA_DIR_HELP),
            click.option(
                "--protocol",
                type=click.Choice(list(PROTOCOLS)),
                default=COUNT_DEFAULTS.protocol,
                show_default=True,
                help="all: every token, mixtures by --mix-by. paper: 1,000 seeded documents a store, "
                "512 tokens each, mixtures by the paper script's document counts.",
            ),
            click.option("--docs", type=int, help="Count a reproducible random sample of N documents per store."),
            click.option(
                "--seed", type=int, default=COUNT_DEFAULTS.seed, show_default=True,
                help="Seed of the document sample (--docs, or the paper protocol's).",
            ),
            click.option("--max-tokens-per-doc", type=int, help="Count only the first K tokens of each document."),
            click.option("--count-eos", is_flag=True, help="Also count the EOS token appended after each document."),
            click.option("--no-cache", is_flag=True, help="Neither read nor write NAME.counts.{npy,json}."),
            click.option("--quiet", is_flag=True, help="No progress bar."),
            no_verify_option,
        ]
    ):
        f = opt(f)
    return f


def metric_options(f):
    for opt in reversed(
        [
            click.option(
                "--mix-by",
                type=click.Choice(list(MIX_BY)),
                show_default=MIX_BY[0], help="Mixture weights are shares of tokens or of documents (protocol all only).",
            ),
            click.option("--smoothing", type=float, default=D.DEFAULT_SMOOTHING, show_default=True, help="Additive smoothing of KL."),
            click.option("--jaccard-top-k", type=int, show_default="all that occur", help="Jaccard over the K most frequent ids."),
            click.option("--paper-top-k", type=int, default=D.PAPER_TOP_K, show_default=True, help="Top-k of the paper metric."),
        ]
    ):
        f = opt(f)
    return f


def _count_opts(protocol, docs, seed, max_tokens_per_doc, count_eos):
    return CountOptions(
        docs=docs, seed=seed, max_tokens_per_doc=max_tokens_per_doc, count_eos=count_eos, protocol=protocol
    )


def _metric_opts(smoothing, jaccard_top_k, paper_top_k):
    return D.MetricOptions(smoothing=smoothing, jaccard_top_k=jaccard_top_k, paper_top_k=paper_top_k)


def _progress(quiet: bool) -> bool | None:
    return False if quiet else None


def _resolve(specs, data_dir, mix_by, copts, no_cache, quiet, base=None):
    """Unique specs → distributions (tokenizers checked across all of them first)."""
    unique = list(dict.fromkeys(specs))
    dists = distributions(
        unique, data_dir=data_dir, mix_by=mix_by, options=copts, base=base, cache=not no_cache,
        progress=_progress(quiet),
    )
    return {d.label: d.probs for d in dists}


def _fmt(v: float) -> str:
    return f"{v:.6f}" if abs(v) < 1e6 else f"{v:.6g}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(header, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(x).ljust(w) for x, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


@click.command()
@click.argument("names", nargs=-1)
@count_options
@click.option("--force", is_flag=True, help="Recount even when a matching cache exists.")
def count(names, data_dir, protocol, docs, seed, max_tokens_per_doc, count_eos, no_cache, quiet, force):
    """Count token ids of the stores NAMES and cache the counts next to each store."""
    if not names:
        raise MixkitError("no store names given (`mixkit list` shows the stores)")
    copts = _count_opts(protocol, docs, seed, max_tokens_per_doc, count_eos)
    stores = [TokenStore.open(n, data_dir) for n in names]
    for store in stores:
        r = count_store(store, copts, cache=not no_cache, force=force, progress=_progress(quiet))
        c = r.counts
        where = f" -> {r.cache_file}" if r.cache_file else ""
        click.echo(f"{store.name}: {int(c.sum()):,} tokens, {int((c > 0).sum()):,} distinct ids ({r.how}){where}")


@click.command()
@click.argument("sources", nargs=-1)
@click.option("--metric", type=click.Choice(METRIC_CHOICES), show_default="js", help="One metric (two sources) or the matrix's metric.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.option("--out", type=click.Path(file_okay=False), default=".", show_default=True, help="Where a matrix writes distance.csv and distance.png.")
@metric_options
@count_options
def distance(sources, metric, as_json, out, mix_by, smoothing, jaccard_top_k, paper_top_k, data_dir, protocol, docs, seed, max_tokens_per_doc, count_eos, no_cache, quiet):
    """Distances between the unigram distributions of SOURCES (names, paths or mixtures).

    Two sources: every metric as a table (or --metric's value). Three or more: the
    matrix of --metric, also written to OUT/distance.csv and OUT/distance.png.
    """
    if len(sources) < 2:
        raise MixkitError("give at least two sources to compare (store names, paths or mixtures like c4:0.8,code:0.2)")
    copts = _count_opts(protocol, docs, seed, max_tokens_per_doc, count_eos)
    mopts = _metric_opts(smoothing, jaccard_top_k, paper_top_k)
    probs = _resolve(sources, data_dir, mix_by, copts, no_cache, quiet)
    if len(sources) == 2:
        a, b = sources
        values = {metric: D.metric(metric, probs[a], probs[b], mopts)} if metric else D.all_metrics(probs[a], probs[b], mopts)
        if as_json:
            click.echo(json.dumps({"a": a, "b": b, "metrics": values}))
        elif metric:
            click.echo(repr(values[metric]))
        else:
            click.echo(f"{a}  vs  {b}")
            rows = [[k, _fmt(v), D.METRIC_DESCRIPTIONS[k]] for k, v in values.items()]
            click.echo(_table(["metric", "value", "meaning"], rows))
        return
    name = metric or "js"
    labels = list(sources)
    matrix = D.distance_matrix([probs[s] for s in labels], name, mopts)
    out_dir = Path(out)
    D.write_matrix_csv(out_dir / "distance.csv", labels, matrix)
    plot_distance_matrix(matrix, labels, name, out_dir / "distance.png")
    if as_json:
        click.echo(json.dumps({"labels": labels, "metric": name, "matrix": matrix.tolist()}))
        return
    click.echo(f"{name} ({D.METRIC_DESCRIPTIONS[name]})")
    click.echo(_table([""] + labels, [[lab] + [_fmt(v) for v in row] for lab, row in zip(labels, matrix)]))
    click.echo(f"wrote {out_dir / 'distance.csv'} and {out_dir / 'distance.png'}", err=True)


@click.command()
@click.option("--pretrain", required=True, help="The pretraining data (name, path or mixture).")
@click.option("--mix", "mixes", multiple=True, required=True, help="A candidate midtraining mixture; repeat to rank several.")
@click.option("--target", "targets", multiple=True, required=True, help="A downstream task's data; repeatable.")
@click.option("--metric", "metrics", multiple=True, type=click.Choice(METRIC_CHOICES), show_default="every metric", help="A metric to report; repeatable.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON rows.")
@metric_options
@count_options
def proximity(pretrain, mixes, targets, metrics, as_json, mix_by, smoothing, jaccard_top_k, paper_top_k, data_dir, protocol, docs, seed, max_tokens_per_doc, count_eos, no_cache, quiet):
    """Proximity advantage dist(pretrain, target) - dist(mix, target) of each --mix.

    Positive means the mixture is nearer the target than the pretraining data; the
    paper found this predicts the gain from midtraining on the mixture. Several --mix
    values are ranked (1 = largest advantage) per target and metric. Under --protocol
    paper, --pretrain is the base (C4's role) of each mixture that contains it.
    """
    copts = _count_opts(protocol, docs, seed, max_tokens_per_doc, count_eos)
    mopts = _metric_opts(smoothing, jaccard_top_k, paper_top_k)
    probs = _resolve([pretrain, *mixes, *targets], data_dir, mix_by, copts, no_cache, quiet, base=pretrain)
    names = list(metrics) or list(METRIC_CHOICES)
    rows = D.proximity_table(
        probs[pretrain], [(m, probs[m]) for m in mixes], [(t, probs[t]) for t in targets], names, mopts
    )
    if as_json:
        click.echo(json.dumps({"pretrain": pretrain, "rows": [asdict(r) for r in rows]}))
        return
    click.echo(f"pretrain: {pretrain}")
    table = [
        [r.target, r.metric, str(r.rank), r.mixture, _fmt(r.pretrain_to_target), _fmt(r.mixture_to_target), f"{r.advantage:+.6f}"]
        for r in rows
    ]
    click.echo(_table(["target", "metric", "rank", "mixture", "d(pretrain,target)", "d(mix,target)", "advantage"], table))
