"""``mixkit experiment``: the paper's design end to end, with a report."""

from __future__ import annotations

import click


@click.command()
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False), help="The study config, such as experiments/NAME.toml.")
@click.option("--out", type=click.Path(file_okay=False), show_default="runs/NAME", help="Output directory.")
@click.option("--dry-run", is_flag=True,
              help="Print the plan and each corpus's token budget, size and expected epochs; download nothing.")
def experiment(config_path, out, dry_run):
    """Tokenize, measure, mix, pretrain, midtrain, finetune, and write OUT/report.md."""
    from lab.config import load_study
    from lab.report import report_sections
    from lab.runner import StudyRunner, default_out, run_study

    cfg = load_study(config_path, kind="experiment")
    if dry_run:
        for line in StudyRunner(cfg, out or default_out(cfg)).dry_run():
            click.echo(line)
        return
    command = f"mixkit experiment --config {config_path}" + (f" --out {out}" if out else "")
    report = run_study(cfg, out, log=lambda m: click.echo(m, err=True), command=command, config_path=config_path)
    click.echo(report_sections(report))  # the tables people came for, on the terminal too



