"""``mixkit experiment``: the paper's design end to end, with a report."""

from __future__ import annotations

import click


@click.command()
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False), help="experiments/NAME.toml")
@click.option("--out", type=click.Path(file_okay=False), help="Output directory (default: runs/NAME).")
def experiment(config_path, out):
    """Tokenize, measure, mix, pretrain, midtrain, finetune, and write OUT/report.md."""
    from mixkit.experiment import run_experiment
    from mixkit.experiment_config import load_experiment

    cfg = load_experiment(config_path)
    report = run_experiment(cfg, out, log=lambda m: click.echo(m, err=True),
                            command=f"mixkit experiment --config {config_path}" + (f" --out {out}" if out else ""))
    text = report.read_text()
    # The tables people came for, on the terminal too.
    start = text.find("\n## ")
    click.echo(text[start + 1 :] if start >= 0 else text)
