"""report.md of an experiment, from hand-written experiment.json and run directories."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from lab.analysis import proximity_analyses, proximity_points, scale_check, task_tables
from lab.findings import finding_a, finding_b, finding_c, findings
from lab.plots import _branch_sources, moving_average, plot_loss_curves
from lab.report import write_report
from lab.results import load_results
from lab.verdicts import combine, correlation_verdict, outcome
from mixkit.errors import MixkitError
from mixkit.mixture import Mixture
from tests.support import write_run
from trainer.run_dir import stage_dirs

PNG = b"\x89PNG\r\n\x1a\n"

# (SFT val loss, C4 loss after SFT) per run and task; the per-seed benefits below are computed by hand from these.
LOSSES = {
    "base-s1": {"gsm8k": (2.0, 3.0), "code": (1.0, 3.0)},
    "base-s2": {"gsm8k": (2.2, 3.2), "code": (1.1, 3.0)},
    "code20-s1": {"gsm8k": (1.80, 3.1), "code": (0.90, 3.03)},
    "code20-s2": {"gsm8k": (1.96, 3.3), "code": (0.98, 3.06)},
    "math12-s1": {"gsm8k": (2.0, 3.255), "code": (1.05, 3.0)},
    "code100-s1": {"gsm8k": (2.31, 3.41), "code": (0.84, 3.3)},
    "code100-s2": {"gsm8k": (2.42, 3.5), "code": (0.90, 3.31)},
}
PROXIMITY = {
    "base": {"gsm8k": 0.0, "code": 0.0},
    "code20": {"gsm8k": 0.01, "code": 0.10},
    "math12": {"gsm8k": 0.03, "code": 0.0},
    "code100": {"gsm8k": -0.02, "code": 0.30},
    "math100": {"gsm8k": 0.05, "code": -0.01},
}
RUNS = {"base": ["base-s1", "base-s2"], "code20": ["code20-s1", "code20-s2"], "math12": ["math12-s1"],
        "code100": ["code100-s1", "code100-s2"], "math100": ["math100-s1"]}


def write_experiment(root: Path, runs: dict[str, list[str]] | None = None, losses=None, pre_heldout: float = 3.4,
                     **overrides) -> Path:
    """experiment.json naming the runs; math100's run directory is started but has no results."""
    losses = LOSSES if losses is None else losses
    runs = runs or RUNS
    mixtures = {"base": "c4:1", "code20": "c4:0.8,code:0.2", "math12": "c4:0.88,math:0.12", "code100": "code:1",
                "math100": "math:1"}
    pre = root / "runs" / "pretrain-s1234" / "pretrain"
    pre.mkdir(parents=True)
    (pre / "metrics.jsonl").write_text("".join(json.dumps({"step": k, "loss": 7.0 - 0.1 * k}) + "\n" for k in range(8)))
    for names in runs.values():
        for n in names:
            if n in losses:
                write_run(root, n, losses[n], branched=not n.startswith("code100"), pre_heldout=pre_heldout)
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
        "unigram": {"smoothing": 1.0, "stream_tokens": 123456, "heldout_docs": 10, "heldout_ce": 5.0,
                    "task_ce": {"base": {"gsm8k": 4.0, "code": 3.0}, "code20": {"gsm8k": 3.96, "code": 2.7},
                                "math12": {"gsm8k": 3.9, "code": 3.0}, "code100": {"gsm8k": 4.2, "code": 2.4},
                                "math100": {"gsm8k": 3.5, "code": 3.3}}},
    }
    spec.update(overrides)
    (root / "experiment.json").write_text(json.dumps(spec))
    return root


def cells(tables):
    return {(t.task, c.variant): c for t in tables for c in t.cells}


def ttest(values):
    r = stats.ttest_1samp(values, 0.0)
    ci = r.confidence_interval(0.95)
    return float(np.mean(values)), (float(ci.low), float(ci.high)), float(r.pvalue)


def test_tables_paired_by_seed(tmp_path):
    exp = load_results(write_experiment(tmp_path))
    tables = task_tables(exp)
    assert [t.task for t in tables] == ["gsm8k", "code"]
    x = cells(tables)
    assert x[("gsm8k", "base")].val_loss == pytest.approx(2.1) and x[("gsm8k", "base")].benefit_test is None
    # code20 on gsm8k: per seed (2.0 − 1.80) / 2.0 = 0.1 and (2.2 − 1.96) / 2.2 = 0.10909
    b = x[("gsm8k", "code20")].benefit_test
    assert b.values == pytest.approx((0.1, 0.24 / 2.2))
    mean, ci, p = ttest([0.1, 0.24 / 2.2])
    assert (b.mean, b.ci, b.p) == (pytest.approx(mean), pytest.approx(ci), pytest.approx(p))
    assert b.outcome() == "positive"
    # C4 change of code20 on gsm8k: (3.1 − 3.0) / 3.0 and (3.3 − 3.2) / 3.2
    h = x[("gsm8k", "code20")].heldout_test
    assert h.values == pytest.approx((0.1 / 3.0, 0.1 / 3.2))
    # math12 has one seed: a benefit, but nothing tested
    m = x[("gsm8k", "math12")].benefit_test
    assert m.values == pytest.approx((0.0,)) and not m.tested and m.outcome() == "untested"
    assert x[("gsm8k", "math100")].val_loss is None and x[("gsm8k", "math100")].benefit is None
    # the unigram control: (U_base − U_v) / U_base, and the excess over it
    c = x[("code", "code20")]
    assert c.unigram_benefit == pytest.approx((3.0 - 2.7) / 3.0)
    assert c.excess == pytest.approx(c.benefit - 0.1)


def test_baseline_comes_first(tmp_path):
    runs = {"code20": ["code20-s1"], "base": ["base-s1", "base-s2"]}
    exp = load_results(write_experiment(tmp_path, runs=runs))
    assert list(exp.runs) == ["base", "code20"]
    assert [c.variant for c in task_tables(exp)[0].cells] == ["base", "code20"]


def test_proximity_per_task_and_within_tasks_match_references(tmp_path):
    exp = load_results(write_experiment(tmp_path))
    tables = task_tables(exp)
    points = proximity_points(exp, tables)
    # baseline left out, math100 has no results
    assert {(p.variant, p.task) for p in points} == {(v, t) for v in ("code20", "math12", "code100")
                                                     for t in ("gsm8k", "code")}
    (a,) = proximity_analyses(exp, tables)
    x = cells(tables)
    for task, c in a.per_task:
        pts = [p for p in points if p.task == task]
        ref = stats.pearsonr([PROXIMITY[p.variant][p.task] for p in pts], [x[(p.task, p.variant)].benefit for p in pts])
        assert (c.n, c.r, c.p) == (3, pytest.approx(ref.statistic), pytest.approx(ref.pvalue))
    # the within-task slope: Σ (x − x̄_task)(y − ȳ_task) / Σ (x − x̄_task)²
    xs = np.array([p.proximity for p in points])
    ys = np.array([p.benefit for p in points])
    g = np.array([p.task for p in points])
    xd = xs - np.array([xs[g == t].mean() for t in g])
    yd = ys - np.array([ys[g == t].mean() for t in g])
    assert a.slope.slope == pytest.approx(float(xd @ yd / (xd @ xd))) and a.slope.df == 6 - 2 - 1


def test_findings_from_numbers(tmp_path):
    exp = load_results(write_experiment(tmp_path))
    tables = task_tables(exp)
    x = cells(tables)
    a = finding_a(exp, tables)
    # matched pairs: code20 (code data) on the code task, math12 (math data) on gsm8k; the rest is cross-domain
    assert [r[:2] for r in a.rows] == [["math12", "gsm8k"], ["code20", "code"]]
    code_b = x[("code", "code20")].benefit_test
    assert a.verdict == combine(["untested", outcome(code_b.mean, code_b.p)], "matched pairs")
    assert any(d.startswith("Cross-domain pairs (no verdict): code20 on gsm8k") for d in a.details)
    b = finding_b(exp, tables)
    # both halves: per seed (L_100%,s − L_mix,s) / L_100%,s on SFT loss and on C4 loss, code20 vs code100
    sft = [ttest([(2.31 - 1.80) / 2.31, (2.42 - 1.96) / 2.42]), ttest([(0.84 - 0.90) / 0.84, (0.90 - 0.98) / 0.90])]
    c4 = [ttest([(3.41 - 3.1) / 3.41, (3.5 - 3.3) / 3.5]), ttest([(3.3 - 3.03) / 3.3, (3.31 - 3.06) / 3.31])]
    sft_v = combine([outcome(m, p) for m, _, p in sft], "SFT comparisons")
    c4_v = combine([outcome(m, p) for m, _, p in c4], "C4 comparisons")
    assert b.details[0] == f"SFT half — {sft_v.word}: {sft_v.reason}."
    assert b.details[1] == f"C4 half — {c4_v.word}: {c4_v.reason}."
    assert [r[3] for r in b.rows] == ["SFT loss", "C4 loss", "SFT loss", "C4 loss"]
    analyses = proximity_analyses(exp, tables)
    c = finding_c(analyses)
    s = analyses[0].slope
    assert c.verdict == correlation_verdict(s.slope, s.p, [outcome(r.r, r.p) for _, r in analyses[0].per_task])
    assert "pooling points of different tasks" in " ".join(c.details)


def test_mixture_worse_on_sft_but_better_on_c4_is_mixed(tmp_path):
    """Finding (b) tests both halves: the mixture beats 100% on C4 loss but loses on SFT loss → mixed."""
    losses = dict(LOSSES)
    losses["code20-s1"] = {"gsm8k": (2.50, 3.10), "code": (1.20, 3.00)}
    losses["code20-s2"] = {"gsm8k": (2.61, 3.20), "code": (1.26, 3.01)}
    exp = load_results(write_experiment(tmp_path, losses=losses))
    b = finding_b(exp, task_tables(exp))
    assert b.verdict.word == "mixed"
    assert b.details[0].startswith("SFT half — does not hold") and b.details[1].startswith("C4 half — holds")


def test_the_guard_makes_every_verdict_not_interpretable(tmp_path):
    # baseline held-out loss 4.8 against a unigram cross-entropy of 5.0: only 0.2 nats below (margin 0.5)
    exp = load_results(write_experiment(tmp_path, pre_heldout=4.8))
    tables = task_tables(exp)
    scale = scale_check(exp)
    assert scale.ok is False and scale.baseline_heldout.mean == pytest.approx(4.8)
    assert all(f.verdict.word == "not interpretable" for f in findings(exp, tables, proximity_analyses(exp, tables),
                                                                          scale))
    text = write_report(tmp_path).read_text()
    verdicts = text.split("## Verdicts")[1].split("## ")[0]
    assert verdicts.lstrip().startswith("**Not interpretable: the models have not learned beyond token frequencies")
    assert "Unigram cross-entropy of the held-out C4 tokens (10 documents)" in text and "5.0000 nats" in text


def test_guard_passes_and_is_not_applied_without_a_control(tmp_path):
    exp = load_results(write_experiment(tmp_path, pre_heldout=3.4))
    assert scale_check(exp).ok is True
    shutil.rmtree(tmp_path)
    tmp_path.mkdir()
    write_experiment(tmp_path, unigram=None)
    text = write_report(tmp_path).read_text()
    assert "Scale guard not applied" in text and "unigram control: absent" in text


def test_one_seed_everywhere_is_not_tested(tmp_path):
    runs = {"base": ["base-s1"], "code20": ["code20-s1"], "code100": ["code100-s1"]}
    exp = load_results(write_experiment(tmp_path, runs=runs))
    tables = task_tables(exp)
    assert all(not c.benefit_test.tested for t in tables for c in t.cells if c.benefit_test is not None)
    text = write_report(tmp_path).read_text()
    assert "n/r" in text and "no replicate" in text


def test_report_md_contents_and_plots(tmp_path):
    path = write_report(write_experiment(tmp_path))
    assert path == tmp_path / "report.md"
    text = path.read_text()
    assert text.startswith("# Experiment report: unit\n")
    assert "`mixkit experiment --config experiments/unit.toml`" in text
    assert "tokens 123,456" in text
    assert text.index("## Verdicts") < text.index("## Scale guard") < text.index("## Findings")
    # math12: one seed → the benefit with n/r; code20: paired over two seeds with its interval and p
    assert re.search(r"\| math12 \| 1 \| 2\.0000 \| \+0\.00% n/r \| — \| — \|", text)
    mean, ci, p = ttest([0.1, 0.24 / 2.2])
    assert f"| code20 | 2 | 1.8800 | {100 * mean:+.2f}% | [{100 * ci[0]:+.2f}%, {100 * ci[1]:+.2f}%] | {p:.3g} |" in text
    assert re.search(r"\| base \(baseline\) \| 2 \| 2\.1000 \| baseline \|", text)
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
    assert "not tested" in text
    assert "plots/" not in text.split("## Missing results")[0]
    assert "distance matrix: absent" in text
    assert "run `runs/b-s2` (base, seed 1235): not started (no run directory)" in text
    assert "run `runs/c-s1` (code20, seed 1234): unfinished" in text


def test_loss_curve_sources(tmp_path):
    exp = load_results(write_experiment(tmp_path))
    by = {r.variant + r.seed: r for rs in exp.runs.values() for r in rs}
    base = by["base1234"]
    assert _branch_sources(base.path, base.results) == [(tmp_path / "runs" / "pretrain-s1234" / "pretrain", 6)]
    assert stage_dirs(base.path, base.results) == [(base.path / "midtrain", "midtrain")]
    own = by["code1001234"]  # trained its own pretrain stage
    assert _branch_sources(own.path, own.results) == []
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
