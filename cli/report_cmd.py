"""``trainer report``: the paper's table (SFT loss, C4 loss, benefit vs a baseline) over run directories."""

from __future__ import annotations

import click


@click.command("report")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(file_okay=True, dir_okay=True))
@click.option("--baseline", required=True, metavar="NAME",
              help="The baseline run: its results.json 'run' name or its directory name.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=".", show_default=True,
              help="Directory for report.csv and report.png.")
def report(run_dirs: tuple[str, ...], baseline: str, out_dir: str) -> None:
    """Print per task and run the SFT validation loss, C4 held-out loss and benefit vs BASELINE.

    benefit = (L_base - L_run) / L_base on the SFT validation loss (positive: better than the
    baseline); "C4 vs base" = (C_run - C_base) / C_base (positive: more forgetting). Runs or
    tasks without results show "—". Also writes report.csv and report.png (grouped bars) to --out.
    """
    from pathlib import Path

    from lab.run_report import format_table, write_report

    rows = write_report(run_dirs, baseline, out_dir)
    click.echo(format_table(rows))
    out = Path(out_dir)
    written = "report.csv and report.png" if rows else "report.csv"
    click.echo(f"wrote {written} in {out}", err=True)
