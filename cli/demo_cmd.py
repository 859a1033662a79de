"""``mixkit demo``: the main job on the bundled samples, end to end, on a fresh machine."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.option("--out", type=click.Path(file_okay=False), default="mixkit-demo", show_default=True, help="Where everything is written.")
def demo(out):
    """Tokenize the bundled sample corpora and print a summary of the stores."""
    from mixkit.demo import tokenize_samples

    data_dir = Path(out) / "data"
    rows = tokenize_samples(data_dir)
    click.echo(f"\ntoken stores in {data_dir}:")
    click.echo(f"{'store':<14} {'documents':>10} {'tokens':>11} {'tokens/doc':>11} {'dtype':>7}")
    for r in rows:
        click.echo(f"{r['name']:<14} {r['documents']:>10,} {r['tokens']:>11,} {r['mean_doc_tokens']:>11.1f} {r['dtype']:>7}")
