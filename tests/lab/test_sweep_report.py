"""The sweep report from hand-written experiment.json and run directories: grid values, ANOVA shares, verdicts."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from lab.analysis import earlier_minus_later, scale_check, sweep_grids, task_tables
from lab.findings import interaction_outcome, sweep_findings, timing_outcome
from lab.report import write_sweep_report
from lab.results import load_results
from lab.statistics import two_way_shares
from mixkit.errors import MixkitError
from tests.support import write_run

PNG = b"\x89PNG\r\n\x1a\n"
# (SFT val loss, C4 loss after SFT) on gsm8k; the baseline's are 2.0 and 3.0 on both seeds, so a run's
# benefit is (2.0 − L) / 2.0 and its C4 change (C − 3.0) / 3.0. Built with a pure timing effect on the benefit
# (start 2: +20%, start 4: 0%, ± seed noise) and a pure ratio effect on the C4 change (20%: +1-2%, 80%: +9-11%).
LOSSES = {
    "base-s1": (2.0, 3.0), "base-s2": (2.0, 3.0),
    "code20-at2-s1": (1.58, 3.03), "code20-at2-s2": (1.62, 3.03),
    "code80-at2-s1": (1.61, 3.30), "code80-at2-s2": (1.59, 3.33),
    "code20-at4-s1": (1.98, 3.03), "code20-at4-s2": (2.02, 3.06),
    "code80-at4-s1": (2.01, 3.30), "code80-at4-s2": (1.99, 3.27),
}
GRID = {"code20-at2": (2, 0.2), "code80-at2": (2, 0.8), "code20-at4": (4, 0.2), "code80-at4": (4, 0.8)}


def write_sweep(root: Path, missing: tuple[str, ...] = (), seeds: int = 2) -> Path:
    for name, (val, held) in LOSSES.items():
        if int(name[-1]) > seeds and not name.startswith("base"):
            continue
        if name in missing:
            (root / "runs" / name / "midtrain").mkdir(parents=True)  # started, no results yet
        else:
            write_run(root, name, {"gsm8k": (val, held)})
    variants = {"base": {"mixture": "c4:1", "runs": {"1": "runs/base-s1", "2": "runs/base-s2"}}}
    for v, (_s, r) in GRID.items():
        variants[v] = {"mixture": f"c4:{1 - r:g},code:{r:g}",
                       "runs": {str(k): f"runs/{v}-s{k}" for k in range(1, seeds + 1)}}
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


def test_grid_values_and_samples(tmp_path):
    (g,) = grids_of(write_sweep(tmp_path))
    assert (g.task, g.dataset, g.start_steps, g.ratios) == ("gsm8k", "code", (2, 4), (0.2, 0.8))
    np.testing.assert_allclose(g.benefit, [[0.2, 0.2], [0.0, 0.0]], atol=1e-12)
    np.testing.assert_allclose(g.heldout, [[3.03, 3.315], [3.045, 3.285]])
    np.testing.assert_allclose(g.heldout_change, [[0.01, 0.105], [0.015, 0.095]], atol=1e-12)
    assert g.baseline_heldout == pytest.approx(3.0)
    assert earlier_minus_later(g.benefit) == pytest.approx(0.2)
    benefits = sorted(round(s[2], 6) for s in g.samples)
    assert benefits == sorted(round((2.0 - LOSSES[n][0]) / 2.0, 6) for n in LOSSES if not n.startswith("base"))


def test_anova_over_the_grid_matches_a_direct_fit(tmp_path):
    (g,) = grids_of(write_sweep(tmp_path))
    ben = g.shares("benefit")
    ref = two_way_shares([s[0] for s in g.samples], [s[1] for s in g.samples], [s[2] for s in g.samples])
    assert ben == ref and ben.replicated and ben.n == 8
    assert ben.start_share > 0.99 and ben.start_p < 0.001 and ben.ratio_share < 0.01
    c4 = g.shares("C4 change")
    assert c4.ratio_share > 0.9 and c4.ratio_p < 0.01
    assert timing_outcome(g) == "supports"
    assert timing_outcome(g, "C4 change") == "contradicts"
    assert interaction_outcome(g) == "inconclusive", "no interaction was built in"


def test_sweep_verdicts(tmp_path):
    (g,) = grids_of(write_sweep(tmp_path))
    scale = scale_check(load_results(tmp_path))
    d1, d2 = sweep_findings([g], scale)
    assert d1.verdict.word == "holds" and d2.verdict.word == "does not hold"
    assert "the start step explains 99% of its variance" in d1.details[0]
    assert "C4 change: the start step explains" in d1.details[0]


def test_one_seed_per_cell_leaves_the_interaction_untested(tmp_path):
    (g,) = grids_of(write_sweep(tmp_path, seeds=1))
    v = g.shares("benefit")
    assert not v.replicated and v.interaction_p is None and v.n == 4
    assert interaction_outcome(g) == "untested"
    _, d2 = sweep_findings([g], scale_check(load_results(tmp_path)))
    assert d2.verdict.word == "not tested"


def test_missing_runs_are_left_out(tmp_path):
    (g,) = grids_of(write_sweep(tmp_path, missing=("code80-at4-s1", "code80-at4-s2")))
    np.testing.assert_allclose(g.benefit[0], [0.2, 0.2], atol=1e-12)
    assert g.benefit[1, 0] == pytest.approx(0.0) and math.isnan(g.benefit[1, 1])
    assert len(g.samples) == 6


def test_report_file_and_plots(tmp_path):
    write_sweep(tmp_path)
    path = write_sweep_report(tmp_path)
    text = path.read_text()
    assert text.startswith("# Sweep report: unit-sweep")
    assert text.index("## Verdicts") < text.index("## Timing or ratio?") < text.index("## Per-variant details")
    assert "**(d1) When the data enters" in text and "— **holds**" in text
    assert "| 2 | +20.00% | +20.00% |" in text and "| 4 | +0.00% | +0.00% |" in text
    assert "3.3150 (+10.50%)" in text and "baseline 3.0000" in text
    assert "24 with the shared base run, 36 if every run trained from step 0" in text
    assert "### SFT validation loss, C4 loss and benefit" in text
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
