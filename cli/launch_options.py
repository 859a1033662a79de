"""The options `mixkit experiment` and `mixkit sweep` share for running a study's runs as Slurm jobs."""

from __future__ import annotations

import shlex

import click


def launcher_options(command):
    """``--launcher`` and the ``[launcher]`` keys a command line may override (``lab.launcher``)."""
    options = [
        click.option("--launcher", type=click.Choice(["local", "slurm"]), default="local", show_default=True,
                     help="local: train here; slurm: submit one job per base run, a job array per seed's "
                          "branches and a report job (see the [launcher] table), then return."),
        click.option("--partition", help="Slurm partition (overrides [launcher] partition)."),
        click.option("--account", help="Slurm account (overrides [launcher] account)."),
        click.option("--time", "time_limit", help="Slurm time limit per job, e.g. 04:00:00 (overrides [launcher] time)."),
        click.option("--gpus-per-job", type=click.IntRange(min=0), help="GPUs per run's job (overrides [launcher] gpus_per_job)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def launch_on_slurm(cfg, out: str, config_path: str, command: str, dry_run: bool, partition, account, time_limit,
                    gpus_per_job) -> None:
    """Submit (or with ``dry_run`` print) the study's job graph; say where the report will be."""
    from lab.launcher import launch_study

    log = lambda m: click.echo(m, err=True)  # noqa: E731
    jobs = launch_study(cfg, out, config_path, log=log, dry_run=dry_run, command=f"{command} --launcher slurm",
                        partition=partition, account=account, time=time_limit, gpus_per_job=gpus_per_job)
    if dry_run:
        click.echo(f"dry run: {len(jobs)} job(s), nothing submitted")
    else:
        click.echo(f"submitted {len(jobs)} job(s) ({', '.join(f'{j.key}={j.job_id}' for j in jobs)}); "
                   f"the report job writes {shlex.quote(str(out))}/report.md; launch again to resubmit what fails")
