"""The sweep report from hand-written experiment.json and run directories: grid values, axis spreads, verdict."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from lab.analysis import AxisComparison, axis_spread, compare_axes, earlier_minus_later, sweep_grids, task_tables
from lab.findings import comparison_sentence, timing_verdict
from lab.report import write_sweep_report
from lab.results import load_results
from mixkit.errors import MixkitError
from tests.support import write_run

PNG = b"\x89PNG\r\n\x1a\n"
# (SFT val loss, C4 loss after SFT) on gsm8k. Baseline means: L 2.1, C 3.1; seed spreads 0.2/2.1 and 0.2/3.1.
# Benefits (2.1 - L)/2.1: at2 → 20%, 25%; at4 → 0%, 5%.  C4 changes (C - 3.1)/3.1: at2 → 0%, 10%; at4 → 5%, 20%.
LOSSES = {
    "base-s1": (2.0, 3.0), "base-s2": (2.2, 3.2),
    "code20-at2-s1": (1.68, 3.1), "code80-at2-s1": (1.575, 3.41),
    "code20-at4-s1": (2.1, 3.255), "code80-at4-s1": (1.995, 3.72),
}
GRID = {"code20-at2": (2, 0.2), "code80-at2": (2, 0.8), "code20-at4": (4, 0.2), "code80-at4": (4, 0.8)}


def write_sweep(root: Path, missing: tuple[str, ...] = ()) -> Path:
    for name, (val, held) in LOSSES.items():
        if name in missing:
            (root / "runs" / name / "midtrain").mkdir(parents=True)  # started, no results yet
        else:
            write_run(root, name, {"gsm8k": (val, held)})
    variants = {"base": {"mixture": "c4:1", "runs": {"1": "runs/base-s1", "2": "runs/base-s2"}}}
    for v, (_s, r) in GRID.items():
        variants[v] = {"mixture": f"c4:{1 - r:g},code:{r:g}", "runs": {"1": f"runs/{v}-s1"}}
    spec = {
        "name": "unit-sweep", "metric": "js", "tasks": ["gsm8k"], "baseline": "base", "variants": variants,
        "proximity": {v: {"gsm8k": 0.01 * i} for i, v in enumerate(variants)}, "task_targets": {"gsm8k": "gsm8k"},
        "command": "mixkit sweep --config experiments/unit.toml", "scale": {"total_steps": 6},
        "sweep": {"datasets": ["code"], "start_steps": [2, 4], "ratios": [0.2, 0.8], "kept_checkpoints": [2, 4],
                  "steps_shared": 24, "steps_unshared": 36,
                  "grid": {v: {"dataset": "code", "start_step": s, "ratio": r} for v, (s, r) in GRID.items()}},
    }
    (root / "experiment.json").write_text(json.dumps(spec))
    return root


def grids_of(root: Path):
    exp = load_results(root)
    return sweep_grids(exp, task_tables(exp))


def test_grid_values_hand_computed(tmp_path):
    (g,) = grids_of(write_sweep(tmp_path))
    assert (g.task, g.dataset, g.start_steps, g.ratios) == ("gsm8k", "code", (2, 4), (0.2, 0.8))
    np.testing.assert_allclose(g.benefit, [[0.2, 0.25], [0.0, 0.05]], atol=1e-12)
    np.testing.assert_allclose(g.heldout, [[3.1, 3.41], [3.255, 3.72]])
    np.testing.assert_allclose(g.heldout_change, [[0.0, 0.1], [0.05, 0.2]], atol=1e-12)
    assert g.baseline_heldout == pytest.approx(3.1)
    assert g.spread == pytest.approx(0.2 / 2.1) and g.heldout_spread == pytest.approx(0.2 / 3.1)

    ben, c4 = compare_axes(g)
    # Benefit: along start steps (20 − 0, 25 − 5) → 20 pp; along ratios (25 − 20, 5 − 0) → 5 pp.
    assert ben.timing == pytest.approx(0.2) and ben.ratio == pytest.approx(0.05)
    assert ben.larger == "timing" and ben.beyond_noise is True
    # C4 change: along start steps (5, 10) → 7.5 pp; along ratios (10, 15) → 12.5 pp.
    assert c4.timing == pytest.approx(0.075) and c4.ratio == pytest.approx(0.125) and c4.larger == "ratio"
    assert earlier_minus_later(g.benefit) == pytest.approx(0.2)
    word, details = timing_verdict([g])
    assert word == "holds"
    assert "in 1 of 1" in details[0] and "1 of 1" in details[1]
    assert "timing moved it more (spread over start steps 20.00 pp, over ratios 5.00 pp" in comparison_sentence(ben)


def test_missing_runs_are_left_out(tmp_path):
    (g,) = grids_of(write_sweep(tmp_path, missing=("code80-at4-s1",)))
    np.testing.assert_allclose(g.benefit[0], [0.2, 0.25], atol=1e-12)
    assert g.benefit[1, 0] == pytest.approx(0.0) and math.isnan(g.benefit[1, 1])
    ben, _ = compare_axes(g)
    assert ben.timing == pytest.approx(0.2), "the 80% column has one point: no range"
    assert ben.ratio == pytest.approx(0.05), "the step-4 row has one point: no range"


def test_within_noise_and_unknown():

    c = AxisComparison("benefit", 0.02, 0.01, 0.05)
    assert c.larger == "timing" and c.beyond_noise is False
    assert "neither is distinguishable from noise" in comparison_sentence(c)
    c = AxisComparison("benefit", 0.02, None, 0.05)
    assert c.larger is None and "cannot compare" in comparison_sentence(c)
    assert AxisComparison("benefit", 0.01, 0.03, None).beyond_noise is None


def test_axis_spread_matches_numpy_reference():
    rng = np.random.default_rng(3)
    for _ in range(20):
        m = rng.normal(size=(int(rng.integers(1, 5)), int(rng.integers(1, 5))))
        m[rng.random(m.shape) < 0.3] = np.nan
        for axis in (0, 1):
            lines = m.T if axis == 0 else m
            ranges = [np.nanmax(x) - np.nanmin(x) for x in lines if np.isfinite(x).sum() >= 2]
            got = axis_spread(m, axis)
            if ranges:
                assert got == pytest.approx(np.mean(ranges))
            else:
                assert got is None


def test_report_file_and_plots(tmp_path):
    write_sweep(tmp_path)
    path = write_sweep_report(tmp_path)
    text = path.read_text()
    assert text.startswith("# Sweep report: unit-sweep")
    assert "— holds.**" in text
    assert "| 2 | +20.00% | +25.00% |" in text and "| 4 | +0.00% | +5.00% |" in text
    assert "3.7200 (+20.00%)" in text and "baseline 3.1000" in text
    assert "24 with the shared base run, 36 if every run trained from step 0" in text
    assert "## Per-variant details" in text and "### SFT validation loss, C4 loss and benefit" in text
    for png in ("sweep_heatmap_gsm8k.png", "sweep_benefit_vs_start.png"):
        assert (tmp_path / "plots" / png).read_bytes()[:8] == PNG
        assert f"](plots/{png})" in text


def test_not_a_sweep(tmp_path):
    write_sweep(tmp_path)
    spec = json.loads((tmp_path / "experiment.json").read_text())
    del spec["sweep"]
    (tmp_path / "experiment.json").write_text(json.dumps(spec))
    with pytest.raises(MixkitError, match="not a sweep"):
        write_sweep_report(tmp_path)
