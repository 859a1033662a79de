"""``mixkit experiment``: the paper's design end to end, with a report."""

from __future__ import annotations

import shlex

import click

from cli.launch_options import launch_on_slurm, launcher_options


@click.command()
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False), help="The study config, such as experiments/NAME.toml.")
@click.option("--out", type=click.Path(file_okay=False), show_default="runs/NAME", help="Output directory.")
@click.option("--dry-run", is_flag=True,
              help="Print the plan and each corpus's token budget, size and expected epochs (with --launcher slurm, "
                   "the job graph too); download, train and submit nothing.")
@launcher_options
def experiment(config_path, out, dry_run, launcher, partition, account, time_limit, gpus_per_job):
    """Tokenize, measure, mix, pretrain, midtrain, finetune, and write OUT/report.md."""
    from lab.config import load_study
    from lab.report import report_sections
    from lab.runner import StudyRunner, default_out, run_study

    cfg = load_study(config_path, kind="experiment")
    command = f"mixkit experiment --config {config_path}" + (f" --out {out}" if out else "")
    if launcher == "slurm":
        out = out or str(default_out(cfg))
        command = f"mixkit experiment --config {shlex.quote(config_path)} --out {shlex.quote(out)}"
        if dry_run:
            for line in StudyRunner(cfg, out, config_path=config_path).dry_run():
                click.echo(line)
        launch_on_slurm(cfg, out, config_path, command, dry_run, partition, account, time_limit, gpus_per_job)
        return
    if dry_run:
        for line in StudyRunner(cfg, out or default_out(cfg), config_path=config_path).dry_run():
            click.echo(line)
        return
    report = run_study(cfg, out, log=lambda m: click.echo(m, err=True), command=command, config_path=config_path)
    click.echo(report_sections(report))  # the tables people came for, on the terminal too
