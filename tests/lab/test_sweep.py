"""`mixkit sweep`: the branching plan and its cost, config errors, and a shortened sweep end to end with resume."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

import pytest
from click.testing import CliRunner

from cli.sweep_cmd import sweep as sweep_cli
from lab.config import Where, grid_variant, load_study, parse_study, resolve_start_steps
from lab.plan import PlannedRun, mix_plans, plan_study
from lab.runner import StudyRunner
from mixkit.errors import MixkitError
from tests.support import ROOT, shortened_quickstart, toml_text


def parse_sweep(table):
    return parse_study(table, kind="sweep")


def quickstart_table() -> dict:
    table = tomllib.loads((ROOT / "experiments" / "quickstart.toml").read_text())
    table["schedule"].pop("start_step")
    table.pop("variant_seeds", None)
    del table["variants"]
    return table


def sweep_table(**sweep) -> dict:
    table = quickstart_table()
    table["schedule"]["steps"] = 100
    table["seeds"] = [1, 2]
    table["sweep"] = {"datasets": ["code", "math"], "start_step": [0.1, 0.3, 50], "ratio": [0.8, 0.2], **sweep}
    return table


def test_start_steps_fractions_and_absolute():
    assert resolve_start_steps([0.1, 0.3, 50], 100, Where()) == [10, 30, 50]
    assert resolve_start_steps([70, 0.004], 100, Where()) == [1, 70], "a fraction rounds to a step ≥ 1; the result is sorted"
    assert resolve_start_steps([0.25], 6, Where()) == [2], "round(1.5) = 2"
    for bad, match in (([1.5], "between 0 and 1"), ([100], "outside"), ([0], "outside"), ([0.1, 10], "both step 10"),
                       ([], "non-empty"), (["x"], "neither"), ([True], "neither")):
        with pytest.raises(MixkitError, match=match):
            resolve_start_steps(bad, 100, Where())


def test_grid_variant_names_and_mixtures():
    p = grid_variant("c4", "code", 30, 0.2)
    assert (p.name, p.mixture) == ("code20-at30", "c4:0.8,code:0.2")
    assert grid_variant("c4", "math", 5, 1.0).mixture == "math:1"
    assert grid_variant("c4", "math", 5, 0.125).name == "math12.5-at5"
    assert grid_variant("c4", "code", 7, 0.7).mixture == "c4:0.3,code:0.7", "1 - 0.7 is written as 0.3"


def test_branching_plan_and_cost():
    cfg = parse_sweep(sweep_table())
    assert cfg.start_steps == [10, 30, 50] and sorted(cfg.sweep.ratio) == [0.2, 0.8]
    plan = plan_study(cfg)
    assert plan.kept_checkpoints == [10, 30, 50], "exactly the sweep's start steps"
    starts = {r.name: (r.start_step, r.end_step) for r in plan.runs}
    assert starts["pretrain-s1"] == starts["pretrain-s2"] == (0, 50), "pretrained once per seed, to the last start"
    assert starts["base-s1"] == starts["base-s2"] == (50, 100), "the baseline branches at the last start step"
    assert starts["code20-at10-s1"] == starts["code20-at10-s2"] == (10, 100) and starts["math80-at30-s1"] == (30, 100)
    assert len(plan.variants) == 1 + 2 * 3 * 2
    # By hand: 2 seeds × 50 (pretrain) + 2 × 50 (baseline) + 2 seeds × 2 datasets × 2 ratios × (90 + 70 + 50).
    assert plan.steps_shared == 100 + 100 + 2 * 4 * 210 == 1880
    assert plan.steps_unshared == (2 + 24) * 100
    lines = plan.describe(tasks=2)
    assert "12 grid variants" in lines[0] and "grid × 2 seeds" in lines[0] and "52 SFT runs" in lines[0]
    assert "10, 30, 50" in lines[1] and "1,880 with sharing, 2,600 without" in lines[2]


def test_variant_seeds_restricts_the_non_baseline_variants():
    cfg = parse_sweep(dict(sweep_table(), variant_seeds=1))
    plan = plan_study(cfg)
    names = {r.name for r in plan.runs}
    assert {"base-s1", "base-s2", "code20-at10-s1"} <= names and "code20-at10-s2" not in names
    assert plan.steps_shared == 100 + 100 + 4 * 210 and "grid × 1 seed)" in plan.describe(2)[0]
    with pytest.raises(MixkitError, match="variant_seeds: must be between 1 and the number of seeds"):
        parse_sweep(dict(sweep_table(), variant_seeds=3))


@pytest.mark.parametrize("name, starts, variants", [("sweep-small-cpu", [80, 240], 4),
                                                    ("sweep-gpu", [400, 1200, 2000, 2800], 32)])
def test_shipped_configs_parse(name, starts, variants):
    cfg = load_study(ROOT / "experiments" / f"{name}.toml", kind="sweep")
    assert cfg.start_steps == starts and len(cfg.grid()) == variants
    assert plan_study(cfg).steps_shared < plan_study(cfg).steps_unshared


def test_run_tables_and_mix_plans(tmp_path):
    s = StudyRunner(parse_sweep(sweep_table()), tmp_path / "out")
    pre = s.run_table(PlannedRun("pretrain-s1", 1, None, 0, 50),
                      [{"kind": "pretrain", "name": "pretrain", "mix": "m", "until": 50}])
    assert pre["keep_steps"] == [10, 30, 50]
    var = s.run_table(PlannedRun("code20-at10-s1", 1, "code20-at10", 10, 100),
                      [{"kind": "midtrain", "name": "midtrain", "mix": "m"}])
    assert var["keep_steps"] == [] and var["keep_last"] == 1
    plans = mix_plans(s.cfg)
    base = plans["quickstart-pretrain-s1"]
    assert [(p.start_step, p.weights) for p in base.phases] == [(0, {"c4": 1.0})]
    p = plans["quickstart-code20-at30-s1"]
    assert [(q.start_step, q.weights) for q in p.phases] == [(0, {"c4": 1.0}), (30, {"c4": 0.8, "code": 0.2})]
    assert (p.steps, p.seed, p.seq_len) == (base.steps, base.seed, base.seq_len)
    assert plans["quickstart-pretrain-s2"].seed == 2 and base.seed == 1, "each seed reads its own data order"
    assert "quickstart-base-s1" not in plans, "the baseline trains on its seed's base mix itself"
    assert s.branch_point(2, 30).name == "step_00000030" and "pretrain-s2" in str(s.branch_point(2, 30))


def test_config_errors():
    for change, match in (
        ({"ratio": [0.0]}, r"ratio.*\(0, 1\]"),
        ({"ratio": [0.2, 0.2]}, "distinct"),
        ({"datasets": ["nope"]}, "'nope'"),
        ({"datasets": ["c4"]}, "pretraining corpus"),
        ({"bogus": 1}, r"\[sweep\] bogus: unknown key"),
    ):
        with pytest.raises(MixkitError, match=match):
            parse_sweep(sweep_table(**change))
    table = sweep_table()
    table["schedule"]["start_step"] = 10
    with pytest.raises(MixkitError, match="sweep.start_step instead"):
        parse_sweep(table)
    table = sweep_table()
    table["variants"] = {"baseline": "base", "base": "c4:1", "x": "code:1"}
    with pytest.raises(MixkitError, match="only name the baseline"):
        parse_sweep(table)
    table = sweep_table()
    del table["sweep"]["ratio"]
    with pytest.raises(MixkitError, match=r"\[sweep\] ratio: missing"):
        parse_sweep(table)
    with pytest.raises(MixkitError, match=r"\[sweep\]"):
        parse_sweep(quickstart_table())


def test_process_pool_runs_jobs_and_reports_failures(tmp_path, monkeypatch):
    """--jobs: each run is its own process with its own log; a failure is reported, the others still run."""
    s = StudyRunner(parse_sweep(sweep_table()), tmp_path / "out", log=lambda m: None, jobs=2)
    script = ("import sys, time; name = sys.argv[1]; print('ran', name); time.sleep(0.3); "
              "sys.exit(3 if name == 'base-s2' else 0)")
    monkeypatch.setattr(s, "worker_command", lambda name: [sys.executable, "-c", script, name])
    runs = [r for r in s.plan.runs if r.variant is not None][:5]
    failed = s._run_processes(runs)
    assert failed == ["base-s2"]
    for r in runs:
        assert (tmp_path / "out" / "logs" / f"{r.name}.log").read_text() == f"ran {r.name}\n"


def shortened_sweep(tmp_path: Path) -> Path:
    table = tomllib.loads(shortened_quickstart(tmp_path).read_text())
    table["schedule"].pop("start_step")
    del table["variants"]
    table["schedule"]["steps"] = 6
    table["sweep"] = {"datasets": ["code"], "start_step": [2, 0.67], "ratio": [0.5, 1.0]}
    table["variant_seeds"] = 1  # the grid with the first seed: keeps the test fast
    table["prune_checkpoints"] = False  # the kept branch points are checked below
    table["tasks"] = {"gsm8k": table["tasks"]["gsm8k"]}  # one SFT task keeps the test fast
    for task in table["tasks"].values():
        task.update(max_examples=4, val_size=2)
    table["train"].update(heldout_docs=1, eval_seq_len=32)
    table["sft"].update(max_steps=1, seq_len=48)
    path = tmp_path / "sweep.toml"
    path.write_text(toml_text(table))
    return path


def _variant_files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for pat in ("runs/*/results.json", "runs/*/midtrain/metrics.jsonl")
            for p in out.glob(pat)}


@pytest.mark.slow
def test_shortened_sweep_end_to_end_and_resume(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = shortened_sweep(tmp_path)
    out = tmp_path / "out"
    result = CliRunner().invoke(sweep_cli, ["--config", str(config), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "plan: 4 grid variants" in result.output and "checkpoints at steps 2, 4" in result.output
    exp = json.loads((out / "experiment.json").read_text())
    assert set(exp["variants"]) == {"base", "code50-at2", "code100-at2", "code50-at4", "code100-at4"}
    assert exp["sweep"]["start_steps"] == [2, 4] and exp["sweep"]["steps_shared"] == 2 * 4 + 2 * 2 + 4 + 4 + 2 + 2
    kept = sorted(p.name for p in (out / "runs/pretrain-s1234/pretrain/checkpoints").iterdir())
    assert kept == ["step_00000002", "step_00000004"]
    for variant, spec in exp["variants"].items():
        start = exp["sweep"]["grid"].get(variant, {}).get("start_step", 4)
        for run in spec["runs"].values():
            results = json.loads((out / run / "results.json").read_text())
            assert set(results["sft"]) == {"gsm8k"}
            mid = results["stages"][0]
            assert (mid["start_step"], mid["end_step"]) == (start, 6)
            assert mid["branched_from"].endswith(f"step_{start:08d}")
    report = (out / "report.md").read_text()
    assert report.startswith("# Sweep report: quickstart") and "## Timing or ratio?" in report
    assert "## Per-variant details" in report and "code50-at2" in report
    for png in ("sweep_heatmap_gsm8k.png", "sweep_benefit_vs_start.png", "loss_curves.png"):
        assert (out / "plots" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Timing or ratio?" in result.output

    # Resume: one variant's run is lost; a rerun trains only that one and leaves the others' files as they were.
    before = _variant_files(out)
    lost = "code50-at4-s1234"
    shutil.rmtree(out / "runs" / lost)
    result = CliRunner().invoke(sweep_cli, ["--config", str(config), "--out", str(out)])
    assert result.exit_code == 0, result.output
    after = _variant_files(out)
    assert set(after) == set(before)
    changed = sorted(k for k in before if before[k] != after[k])
    assert all(k.startswith(f"runs/{lost}/") for k in changed), changed
    trained = {line.split("]")[0][1:] for line in result.output.splitlines() if "] stage " in line}
    assert trained == {lost}, "the finished runs are skipped by their completion records"
    n_runs = len(exp["pretrain_runs"]) + sum(len(v["runs"]) for v in exp["variants"].values())
    assert f"{n_runs - 1} of {n_runs} runs finished before, skipped" in result.output

    # The command a --jobs process runs: one named run (all finished here, so nothing trains).
    result = CliRunner().invoke(sweep_cli, ["--config", str(config), "--out", str(out), "--run", lost])
    assert result.exit_code == 0, result.output
    assert f"[{lost}] finished before, skipped" in result.output
    result = CliRunner().invoke(sweep_cli, ["--config", str(config), "--out", str(out), "--run", "nope-s1"])
    assert result.exit_code != 0 and "no run 'nope-s1'" in result.output
