"""`mixkit experiment`: a shortened quickstart end to end, then a cached rerun; the study config's checks."""

from __future__ import annotations

import json
import sys

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

import pytest
from click.testing import CliRunner

from cli.mixkit_cli import main
from lab.config import load_study, parse_study
from mixkit.errors import MixkitError
from mixkit.store import TokenStore, sha256_file
from tests.support import ROOT, shortened_quickstart, toml_text
from trainer.model import GPTNeoX


@pytest.mark.slow
def test_shortened_quickstart_end_to_end(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = shortened_quickstart(tmp_path)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["experiment", "--config", str(config), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "report.md").exists()
    assert (out / "config.toml").read_text() == config.read_text(), "the folder keeps the config that made it"
    exp = json.loads((out / "experiment.json").read_text())
    assert set(exp["variants"]) == {"base", "code20", "code100"}
    assert set(exp["variants"]["base"]["runs"]) == {"1234", "1235"}
    assert exp["proximity"]["code20"]["code"] > 0, "mixing code in brings C4 nearer to the code task"
    scored = {"gsm8k": set(), "code": set()}
    for variant in exp["variants"].values():
        for run in variant["runs"].values():
            results = json.loads((out / run / "results.json").read_text())
            assert set(results["sft"]) == {"gsm8k", "code"}
            assert results["stages"][0]["start_step"] == 3 and results["stages"][0]["end_step"] == 6
            for task, entry in results["sft"].items():
                scored[task].add(entry["val_examples_sha256"])
    assert all(len(v) == 1 for v in scored.values()), "every run of a task scores the same validation examples"
    assert set(exp["variants"]["code20"]["runs"]) == {"1234", "1235"}, "every variant runs with every seed"
    uni = exp["unigram"]
    assert uni["heldout_ce"] > 0 and set(uni["task_ce"]) == set(exp["variants"])
    report = (out / "report.md").read_text()
    assert "gsm8k" in report and "code20" in report
    assert "**Not interpretable: the models have not learned beyond token frequencies" in report
    assert "Unigram cross-entropy of the held-out C4 tokens" in report
    assert exp["protocol"] == "all" and exp["proximity_alt"]["metric"] == "paper"
    assert set(exp["proximity_alt"]["values"]) == set(exp["variants"])
    assert "Robustness, with the paper distance and protocol `paper`" in report
    assert "SFT validation loss" in result.output or "gsm8k" in result.output

    # prune_checkpoints and [sft] save_weights = false: once every run has finished, no weights are left
    # and the runs hold less than one float32 copy of the model's parameters (metrics, results, events).
    cfg = load_study(config)
    assert cfg.prune_checkpoints and not cfg.sft.save_weights
    assert not list(out.glob("runs/**/state.pt")) and not list(out.glob("runs/**/*.safetensors"))
    assert not list(out.glob("runs/*/*/checkpoints"))
    n_params = sum(p.numel() for p in GPTNeoX(cfg.model.build()).parameters())
    runs_bytes = sum(p.stat().st_size for p in out.glob("runs/**/*") if p.is_file())
    assert runs_bytes < 4 * n_params, (runs_bytes, n_params)

    # Everything is cached: a second run trains nothing and gives the same results.
    before = {p: p.read_bytes() for p in out.glob("runs/*/results.json")}
    result = CliRunner().invoke(main, ["experiment", "--config", str(config), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "stage midtrain" in result.output or True
    assert {p: p.read_bytes() for p in out.glob("runs/*/results.json")} == before
    assert "tokenize" not in result.output.split("experiment")[1].split("[1/")[0], "stores are reused"
    assert "build mix" not in result.output, "mixes are reused"
    assert "runs finished before, skipped" in result.output and "stage pretrain" not in result.output, \
        "the pruned runs are skipped by their completion records, not trained again"

    # A changed SFT setting makes the variants stale: the pruned base runs are trained again (to the same
    # weights), the variants rerun, and the pretraining results stay as they were.
    table = tomllib.loads(config.read_text())
    table["sft"]["lr"] = table["sft"]["lr"] / 2
    config.write_text(toml_text(table))
    pretrain_before = {p: json.loads(p.read_text())["stages"] for p in out.glob("runs/pretrain-*/results.json")}
    result = CliRunner().invoke(main, ["experiment", "--config", str(config), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "stage pretrain" in result.output and "runs finished before" not in result.output
    assert {p: json.loads(p.read_text())["stages"] for p in out.glob("runs/pretrain-*/results.json")} == \
        pretrain_before, "the base run trained again from step 0 ends where it ended before"
    assert not list(out.glob("runs/**/state.pt")), "pruned again"


def test_config_errors(tmp_path):
    base = tomllib.loads((ROOT / "experiments" / "quickstart.toml").read_text())
    bad = dict(base, variants={"base": "c4:1"})
    with pytest.raises(MixkitError, match=r"\[variants\] baseline"):
        parse_study(bad, base=tmp_path)
    bad = dict(base, variants={"baseline": "base", "base": "c4:1", "x": "c4:0.5,nope:0.5"})
    with pytest.raises(MixkitError, match="'nope'"):
        parse_study(bad, base=tmp_path)
    bad = dict(base, schedule=dict(base["schedule"], start_step=999))
    with pytest.raises(MixkitError, match="start_step"):
        parse_study(bad, base=tmp_path)
    bad = dict(base, bogus=1)
    with pytest.raises(MixkitError, match="top level bogus: unknown key"):
        parse_study(bad, base=tmp_path)


@pytest.mark.parametrize("name", ["quickstart", "small-cpu", "pythia-70m-gpu"])
def test_shipped_configs_parse(name):
    cfg = load_study(ROOT / "experiments" / f"{name}.toml", kind="experiment")
    assert cfg.baseline == "base" and len(cfg.seeds) >= 2
    assert {"code20", "math12", "code100", "math100"} <= set(cfg.variants)
    assert 0 < cfg.schedule.start_step < cfg.schedule.steps


def test_the_cpu_study_is_sized_to_be_evidence():
    """small-cpu: a trained small vocabulary, and three seeds for every compared variant."""
    cfg = load_study(ROOT / "experiments" / "small-cpu.toml", kind="experiment")
    assert cfg.tokenizer.train.vocab_size == 4096 and cfg.model.build().vocab_size == 4096
    assert len(cfg.seeds) == 3 and cfg.variant_seeds == 3
    assert all(s.startswith(str(ROOT / "mixkit" / "samples")) for c in cfg.corpora.values() for s in c.sources), \
        "runs from a fresh clone: bundled samples only"


@pytest.mark.slow
def test_a_study_on_a_trained_tokenizer(tmp_path, monkeypatch):
    """[tokenizer] train = {...}: a tiny BPE trained on the pretraining corpus, every store and the model on it."""
    monkeypatch.chdir(tmp_path)
    table = tomllib.loads(shortened_quickstart(tmp_path).read_text())
    table["seeds"] = [1234]
    table["variants"] = {"baseline": "base", "base": "c4:1", "code20": "c4:0.8,code:0.2"}
    table["tasks"] = {"gsm8k": table["tasks"]["gsm8k"]}
    table["tokenizer"] = {"train": {"corpora": ["c4"], "vocab_size": 300}}
    table["model"].pop("vocab_size")
    config = tmp_path / "tok.toml"
    config.write_text(toml_text(table))
    cfg = load_study(config)
    assert cfg.model.build().vocab_size == 320, "the tokenizer's vocabulary padded to a multiple of 64"
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["experiment", "--config", str(config), "--out", str(out)])
    assert result.exit_code == 0, result.output
    exp = json.loads((out / "experiment.json").read_text())
    tok = exp["tokenizer"]
    assert tok["trained_on"] == ["c4"] and tok["vocab_size"] <= 300 and tok["model_vocab_size"] == 320
    trained = out / "data" / tok["file"]
    assert trained.is_file() and sha256_file(trained) == tok["sha256"]
    for name in cfg.corpora:
        assert TokenStore.open(name, out / "data").manifest["tokenizer"]["sha256"] == tok["sha256"]
    run = json.loads((out / "runs" / "code20-s1234" / "run.json").read_text())
    assert run["tokenizer"] == str(trained)
    assert f"sha256 {tok['sha256'][:12]}" in (out / "report.md").read_text()
    result = CliRunner().invoke(main, ["experiment", "--config", str(config), "--out", str(out)])
    assert result.exit_code == 0 and "train tokenizer" not in result.output, "the trained tokenizer is cached"
