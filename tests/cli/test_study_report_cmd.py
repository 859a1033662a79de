"""``mixkit report DIR``: a study's report rewritten from its folder, one line on a bad folder."""

from __future__ import annotations

import shutil

from click.testing import CliRunner

from cli.mixkit_cli import main
from tests.support import ROOT


def test_report_command_rewrites_the_same_report(tmp_path):
    src = ROOT / "docs" / "results" / "sweep-small-cpu"
    dst = tmp_path / "sweep"
    shutil.copytree(src, dst)
    (dst / "report.md").unlink()
    result = CliRunner().invoke(main, ["report", str(dst)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("## Verdicts") and "## Timing or ratio?" in result.output
    assert (dst / "report.md").read_bytes() == (src / "report.md").read_bytes()


def test_report_command_on_a_folder_without_a_study(tmp_path):
    result = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert result.exit_code != 0
    assert "no experiment.json" in result.output and "Traceback" not in result.output
