"""report.md of an experiment, from hand-written experiment.json and run directories."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from lab.analysis import correlations, proximity_points, task_tables
from lab.findings import _verdict, finding_a, finding_b, finding_c
from lab.plots import _branch_sources, moving_average, plot_loss_curves
from lab.report import write_report
from lab.results import load_results
from mixkit.errors import MixkitError
from mixkit.mixture import Mixture
from tests.support import write_run
from trainer.run_dir import stage_dirs

PNG = b"\x89PNG\r\n\x1a\n"

# (SFT val loss, C4 loss after SFT) per run and task; benefits etc. below are computed by hand from these.
LOSSES = {
    "base-s1": {"gsm8k": (2.0, 3.0), "code": (1.0, 3.0)},
    "base-s2": {"gsm8k": (2.2, 3.2), "code": (1.1, 3.0)},
    "code20-s1": {"gsm8k": (1.89, 3.1), "code": (0.945, 3.03)},
    "math12-s1": {"gsm8k": (2.0, 3.255), "code": (1.05, 3.0)},
    "code100-s1": {"gsm8k": (2.31, 3.41), "code": (0.84, 3.3)},
}
PROXIMITY = {
    "base": {"gsm8k": 0.0, "code": 0.0},
    "code20": {"gsm8k": 0.01, "code": 0.10},
    "math12": {"gsm8k": 0.03, "code": 0.0},
    "code100": {"gsm8k": -0.02, "code": 0.30},
    "math100": {"gsm8k": 0.05, "code": -0.01},
}


def write_experiment(root: Path, runs: dict[str, list[str]] | None = None, losses=None, **overrides) -> Path:
    """experiment.json naming the runs; math100's run directory is started but has no results."""
    losses = LOSSES if losses is None else losses
    runs = runs or {"base": ["base-s1", "base-s2"], "code20": ["code20-s1"], "math12": ["math12-s1"],
                    "code100": ["code100-s1"], "math100": ["math100-s1"]}
    mixtures = {"base": "c4:1", "code20": "c4:0.8,code:0.2", "math12": "c4:0.88,math:0.12", "code100": "code:1",
                "math100": "math:1"}
    pre = root / "runs" / "pretrain-s1234" / "pretrain"
    pre.mkdir(parents=True)
    (pre / "metrics.jsonl").write_text("".join(json.dumps({"step": k, "loss": 7.0 - 0.1 * k}) + "\n" for k in range(8)))
    for names in runs.values():
        for n in names:
            if n in losses:
                write_run(root, n, losses[n], branched=n != "code100-s1")
            else:
                (root / "runs" / n / "midtrain").mkdir(parents=True)
    labels = ["c4", "code", "math", "gsm8k", "humaneval"]
    rng = np.random.default_rng(0)
    m = rng.random((5, 5))
    m = (m + m.T) / 2
    np.fill_diagonal(m, 0.0)
    spec = {
        "name": "unit", "metric": "js", "tasks": ["gsm8k", "code"], "baseline": "base",
        "distance": {"labels": labels, "matrix": m.tolist()},
        "variants": {v: {"mixture": mixtures[v], "runs": {str(1234 + i): f"runs/{n}" for i, n in enumerate(ns)}}
                     for v, ns in runs.items()},
        "proximity": PROXIMITY, "task_targets": {"gsm8k": "gsm8k", "code": "humaneval"},
        "command": "mixkit experiment --config experiments/unit.toml",
        "scale": {"model": "tiny", "pretrain_steps": 6, "total_steps": 10, "tokens": 123456},
    }
    spec.update(overrides)
    (root / "experiment.json").write_text(json.dumps(spec))
    return root


def cells(tables):
    return {(t.task, c.variant): c for t in tables for c in t.cells}


def test_tables_hand_computed(tmp_path):
    exp = load_results(write_experiment(tmp_path))
    tables = task_tables(exp)
    assert [t.task for t in tables] == ["gsm8k", "code"]
    g, c = tables
    assert g.spread == pytest.approx(0.2 / 2.1)
    assert g.heldout_spread == pytest.approx(0.2 / 3.1)
    assert c.spread == pytest.approx(0.1 / 1.05)
    assert c.heldout_spread == 0.0
    x = cells(tables)
    assert x[("gsm8k", "base")].val_loss == pytest.approx(2.1)
    assert x[("gsm8k", "code20")].benefit == pytest.approx((2.1 - 1.89) / 2.1)
    assert x[("gsm8k", "code20")].significant is True           # 0.1 >= 0.0952
    assert x[("gsm8k", "math12")].benefit == pytest.approx(0.1 / 2.1)
    assert x[("gsm8k", "math12")].significant is False          # 0.0476 < 0.0952
    assert x[("gsm8k", "code100")].benefit == pytest.approx(-0.1)
    assert x[("gsm8k", "code100")].significant is True
    assert x[("gsm8k", "math12")].heldout_change == pytest.approx((3.255 - 3.1) / 3.1)
    assert x[("gsm8k", "math12")].heldout_significant is False  # 0.05 < 0.0645
    assert x[("gsm8k", "code100")].heldout_change == pytest.approx(0.1)
    assert x[("code", "code100")].benefit == pytest.approx((1.05 - 0.84) / 1.05)
    assert x[("gsm8k", "math100")].val_loss is None and x[("gsm8k", "math100")].benefit is None
    assert x[("gsm8k", "base")].significant is None


def test_baseline_comes_first(tmp_path):
    runs = {"code20": ["code20-s1"], "base": ["base-s1", "base-s2"]}
    exp = load_results(write_experiment(tmp_path, runs=runs))
    assert list(exp.runs) == ["base", "code20"]
    assert [c.variant for c in task_tables(exp)[0].cells] == ["base", "code20"]


def test_proximity_points_and_pearson_match_numpy(tmp_path):
    exp = load_results(write_experiment(tmp_path))
    tables = task_tables(exp)
    points = proximity_points(exp, tables)
    # baseline left out, math100 has no results
    assert {(p.variant, p.task) for p in points} == {(v, t) for v in ("code20", "math12", "code100")
                                                     for t in ("gsm8k", "code")}
    corrs = correlations(points, exp.tasks)
    assert [c.scope for c in corrs] == ["gsm8k", "code", "all tasks"]
    x = cells(tables)
    for corr in corrs:
        pts = [p for p in points if corr.scope in (p.task, "all tasks")]
        assert corr.n == len(pts)
        prox = [PROXIMITY[p.variant][p.task] for p in pts]
        ben = [x[(p.task, p.variant)].benefit for p in pts]
        assert corr.r == pytest.approx(np.corrcoef(prox, ben)[0, 1])


def test_findings_from_numbers(tmp_path):
    exp = load_results(write_experiment(tmp_path))
    tables = task_tables(exp)
    a = finding_a(exp, tables)
    # code20 beats beyond the spread on both tasks; math12 within it on gsm8k and not at all on code
    assert a.verdict == "holds in part"
    assert any(d.startswith("gsm8k:") and "code20 (+10.00%, beyond" in d and "math12 (+4.76%, within" in d
               for d in a.details)
    assert any(d.startswith("code:") and "do not: math12 (+0.00%)" in d for d in a.details)
    assert a.details[0] == ("Of 4 comparisons, 3 (2 beyond the seed spread) go the way the paper found and "
                            "1 (0 beyond the seed spread) the other way.")
    b = finding_b(exp, tables)
    assert b.verdict == "holds"  # code20 below code100 on both tasks; math100 unfinished
    assert sum("math12 vs math100: not both measured" in d for d in b.details) == 2
    corrs = correlations(proximity_points(exp, tables), exp.tasks)
    c = finding_c(corrs)
    r = corrs[-1].r
    assert c.verdict == ("holds" if r >= 0.3 else "holds only weakly" if r > 0 else "does not hold")
    assert f"all tasks: r = {r:+.3f} (n = 6)" in c.details[2]


def test_finding_a_does_not_hold_when_mixtures_are_worse(tmp_path):
    worse = {k: {t: (v[0] * (1.3 if not k.startswith("base") else 1.0), v[1]) for t, v in d.items()}
             for k, d in LOSSES.items()}
    exp = load_results(write_experiment(tmp_path, losses=worse))
    assert finding_a(exp, task_tables(exp)).verdict == "does not hold"


def test_one_baseline_seed_leaves_significance_unknown(tmp_path):
    runs = {"base": ["base-s1"], "code20": ["code20-s1"], "code100": ["code100-s1"]}
    exp = load_results(write_experiment(tmp_path, runs=runs))
    tables = task_tables(exp)
    assert all(t.spread is None and t.baseline_seeds == 1 for t in tables)
    assert all(c.significant is None for t in tables for c in t.cells)
    corrs = correlations(proximity_points(exp, tables), exp.tasks)
    assert corrs[0].r is None and corrs[0].n == 2  # two points per task: undefined
    assert corrs[-1].n == 4 and corrs[-1].r is not None
    text = write_report(tmp_path).read_text()
    assert "Spread n/a" in text and "r undefined (n = 2" in text


def test_report_md_contents_and_plots(tmp_path):
    path = write_report(write_experiment(tmp_path))
    assert path == tmp_path / "report.md"
    text = path.read_text()
    assert text.startswith("# Experiment report: unit\n")
    assert "`mixkit experiment --config experiments/unit.toml`" in text
    assert "tokens 123,456" in text
    # the gsm8k row of math12: benefit with its † mark, spread beside it
    assert re.search(r"\| math12 \| 1 \| 2\.0000 \| \+4\.76% † \| 9\.52% \| 3\.2550 \| \+5\.00% † \| 6\.45% \|", text)
    assert re.search(r"\| code20 \| 1 \| 1\.8900 \| \+10\.00% \| 9\.52% \|", text)
    assert re.search(r"\| base \(baseline\) \| 2 \| 2\.1000 \| baseline \|", text)
    assert "| math100 | 0 | — | — |  | — | — |  |" in text
    assert "run `runs/math100-s1` (math100, seed 1234): unfinished (no results.json yet)" in text
    assert "## Findings" in text and "**(b)" in text
    links = re.findall(r"!\[[^]]*\]\((plots/[^)]+)\)", text)
    assert sorted(links) == ["plots/benefit_vs_proximity.png", "plots/distance.png", "plots/forgetting_vs_task_loss.png",
                             "plots/loss_curves.png"]
    for rel in links:
        assert (tmp_path / rel).read_bytes()[:8] == PNG
    assert str(tmp_path) not in text  # links are relative


def test_report_is_deterministic(tmp_path):
    write_experiment(tmp_path)
    first = {p.name: p.read_bytes() for p in [write_report(tmp_path), *(tmp_path / "plots").iterdir()]}
    second = {p.name: p.read_bytes() for p in [write_report(tmp_path), *(tmp_path / "plots").iterdir()]}
    assert first == second


def test_nothing_finished_yet(tmp_path):
    runs = {"base": ["b-s1", "b-s2"], "code20": ["c-s1"]}
    write_experiment(tmp_path, runs=runs, distance=None)
    shutil.rmtree(tmp_path / "runs" / "b-s2")
    text = write_report(tmp_path).read_text()
    assert "Runs with results: 0 of 3" in text
    assert "cannot be checked" in text
    assert "plots/" not in text.split("## Missing results")[0]
    assert "distance matrix: absent" in text
    assert "run `runs/b-s2` (base, seed 1235): not started (no run directory)" in text
    assert "run `runs/c-s1` (code20, seed 1234): unfinished" in text


@pytest.mark.parametrize("outcomes, verdict", [
    ([], "cannot be checked"),
    ([(True, True), (True, True)], "holds"),
    ([(True, True), (False, True)], "holds in part"),
    ([(True, True), (True, False)], "holds in part"),
    ([(True, False), (True, False)], "holds, but within the seed spread (not significant)"),
    ([(True, False), (False, True)], "does not hold (the improvements seen are within the seed spread)"),
    ([(False, True), (False, None)], "does not hold"),
    ([(True, None), (True, None)], "holds, significance unknown (seed spread not measured)"),
])
def test_verdicts(outcomes, verdict):
    assert _verdict(outcomes) == verdict


def test_loss_curve_sources(tmp_path):
    exp = load_results(write_experiment(tmp_path))
    by = {r.variant + r.seed: r for rs in exp.runs.values() for r in rs}
    base = by["base1234"]
    assert _branch_sources(exp.dir, base.results) == [(tmp_path / "runs" / "pretrain-s1234" / "pretrain", 6)]
    assert stage_dirs(base.path, base.results) == [(base.path / "midtrain", "midtrain")]
    own = by["code1001234"]  # trained its own pretrain stage
    assert _branch_sources(exp.dir, own.results) == []
    assert stage_dirs(own.path, own.results) == [(own.path / "pretrain", "pretrain"), (own.path / "midtrain", "midtrain")]
    (own.path / "extra").mkdir()
    (own.path / "extra" / "metrics.jsonl").write_text('{"step": 10, "loss": 3.0}\n')
    assert stage_dirs(own.path, own.results)[-1] == (own.path / "extra", "extra")  # a stage still running
    assert plot_loss_curves(exp, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes()[:8] == PNG


def test_moving_average_matches_a_loop():
    rng = np.random.default_rng(1)
    ys = rng.random(37)
    for w in (1, 2, 5, 37, 50):
        ref = [ys[max(0, i - w + 1): i + 1].mean() for i in range(len(ys))]
        np.testing.assert_allclose(moving_average(ys, w), ref)


def test_mixture_shares():
    assert Mixture.parse("c4:0.8,code:0.2").shares == pytest.approx({"c4": 0.8, "code": 0.2})
    assert Mixture.parse("c4=4, math=1").shares == pytest.approx({"c4": 0.8, "math": 0.2})
    assert Mixture.parse({"code": 2, "qa": 0}).shares == {"code": 1.0}
    with pytest.raises(MixkitError, match="of 'code' is not a number"):
        Mixture.parse("c4:1,code:x")


@pytest.mark.parametrize("spec, match", [
    (None, "no experiment.json"),
    ("{not json", "not valid JSON"),
    ({"tasks": ["gsm8k"], "baseline": "nope", "variants": {"base": {"mixture": "c4:1", "runs": {}}}},
     "baseline 'nope' is not among the variants"),
    ({"tasks": "gsm8k", "baseline": "base", "variants": {"base": {}}}, "'tasks' must be a list"),
    ({"tasks": ["gsm8k"], "baseline": "base", "variants": {}}, "'variants' must be a non-empty"),
])
def test_bad_experiment_files(tmp_path, spec, match):
    if spec is not None:
        (tmp_path / "experiment.json").write_text(spec if isinstance(spec, str) else json.dumps(spec))
    with pytest.raises(MixkitError, match=match):
        write_report(tmp_path)
