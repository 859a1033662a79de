"""``mixkit sweep``: start step × ratio grid of midtraining variants sharing one base run per seed."""

from __future__ import annotations

import shlex

import click

from cli.launch_options import launch_on_slurm, launcher_options


@click.command()
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False),
              help="The study config with a [sweep] table, such as experiments/NAME.toml.")
@click.option("--out", type=click.Path(file_okay=False), show_default="runs/NAME", help="Output directory.")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Runs trained at once, each as its own process.")
@click.option("--gpus", default="", help="Comma-separated GPU ids handed to the jobs in turn (CUDA_VISIBLE_DEVICES).")
@click.option("--dry-run", is_flag=True, help="Print the plan (variants, kept checkpoints, cost) and each corpus's "
              "token budget, size and expected epochs (with --launcher slurm, the job graph too); download, "
              "train and submit nothing.")
@click.option("--report-only", is_flag=True, help="Write the report from whatever runs have finished; train nothing.")
@click.option("--run", "run_name", default="",
              help="Train only this run (needs the stores, mixes and base run): for spreading a grid over machines.")
@launcher_options
def sweep(config_path, out, jobs, gpus, dry_run, report_only, run_name, launcher, partition, account, time_limit,
          gpus_per_job):
    """Pretrain once per seed, branch every (start step, ratio) variant from it, finetune, report."""
    from lab.config import load_study
    from lab.report import report_sections, write_report
    from lab.runner import StudyRunner, default_out

    cfg = load_study(config_path, kind="sweep")
    out = out or str(default_out(cfg))
    command = f"mixkit sweep --config {shlex.quote(config_path)} --out {shlex.quote(out)}" + (
        f" --jobs {jobs}" if jobs > 1 else "")
    runner = StudyRunner(cfg, out, log=lambda m: click.echo(m, err=True), command=command, config_path=config_path,
                         jobs=jobs, gpus=tuple(g.strip() for g in gpus.split(",") if g.strip()))
    if launcher == "slurm" and not (run_name or report_only):
        if dry_run:
            for line in runner.dry_run():
                click.echo(line)
        launch_on_slurm(cfg, out, config_path, command.removesuffix(f" --jobs {jobs}"), dry_run, partition, account,
                        time_limit, gpus_per_job)
        return
    if dry_run:
        for line in runner.dry_run():
            click.echo(line)
        return
    if run_name:
        runner.run_one(run_name)
        return
    report = write_report(runner.out) if report_only else runner.run()
    click.echo(report_sections(report))
