"""The committed study results rebuild byte for byte from their folders with the current code."""

from __future__ import annotations

import shutil

import pytest

from lab.report import write_report
from tests.support import ROOT

RESULTS = ROOT / "docs" / "results"
REBUILDABLE = sorted(p.parent.name for p in RESULTS.glob("*/runs"))


@pytest.mark.parametrize("name", REBUILDABLE)
def test_report_and_plots_rebuild_byte_for_byte(tmp_path, name):
    src = RESULTS / name
    dst = tmp_path / name
    shutil.copytree(src, dst)
    (dst / "report.md").unlink()
    shutil.rmtree(dst / "plots")
    write_report(dst)
    assert (dst / "report.md").read_bytes() == (src / "report.md").read_bytes()
    committed = sorted(p.name for p in (src / "plots").iterdir())
    assert sorted(p.name for p in (dst / "plots").iterdir()) == committed
    for png in committed:
        assert (dst / "plots" / png).read_bytes() == (src / "plots" / png).read_bytes(), png


def test_there_is_a_result_to_rebuild():
    assert "sweep-small-cpu" in REBUILDABLE
