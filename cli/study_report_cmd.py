"""``mixkit report``: rewrite a study's report.md and plots from its folder."""

from __future__ import annotations

import click


@click.command("report")
@click.argument("study_dir", type=click.Path(file_okay=False, exists=True))
def report(study_dir):
    """Write STUDY_DIR/report.md and plots/ from experiment.json and the runs (nothing is trained)."""
    from lab.report import report_sections, write_report

    click.echo(report_sections(write_report(study_dir)))
