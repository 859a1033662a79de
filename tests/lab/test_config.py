"""The study config is checked whole at load: a typo in any table is one line naming file, table and key."""

from __future__ import annotations

import copy

import pytest
from click.testing import CliRunner

from cli.mixkit_cli import main
from lab.config import load_study
from mixkit.errors import MixkitError
from tests.support import ROOT, toml_text, tomllib

QUICKSTART = tomllib.loads((ROOT / "experiments" / "quickstart.toml").read_text())


def sweep_table() -> dict:
    table = copy.deepcopy(QUICKSTART)
    table["schedule"].pop("start_step")
    del table["variants"]
    table["sweep"] = {"datasets": ["code"], "start_step": [0.25, 0.5], "ratio": [0.2, 0.5]}
    return table


# (table path, the typo'd key): one per table of an experiment config, and the sweep's own table.
TYPOS = [
    ((), "seeeds"),
    (("corpora", "code"), "presett"),
    (("schedule",), "stpes"),
    (("tasks", "gsm8k"), "val_siz"),
    (("model",), "n_layers"),
    (("optim",), "lrr"),
    (("train",), "micro_batc"),
    (("sft",), "epoch"),
]


def _with_typo(table: dict, path: tuple[str, ...], key: str) -> dict:
    table = copy.deepcopy(table)
    t = table
    for part in path:
        t = t[part]
    t[key] = 1
    return table


@pytest.mark.parametrize("path, key", TYPOS + [(("sweep",), "ratios")])
def test_typo_in_any_table_is_refused_at_load(tmp_path, path, key):
    base = sweep_table() if path == ("sweep",) else QUICKSTART
    config = tmp_path / "study.toml"
    config.write_text(toml_text(_with_typo(base, path, key)))
    with pytest.raises(MixkitError) as e:
        load_study(config)
    message = e.value.message
    table = f"[{'.'.join(path)}]" if path else "top level"
    assert message.startswith(f"{config}: {table} {key}: unknown key"), message
    assert "\n" not in message


@pytest.mark.parametrize("path, value, words", [
    (("schedule", "steps"), "60", "[schedule] steps: expected an integer"),
    (("optim", "lr"), -1.0, "[optim]"),
    (("sft", "seq_len"), 0, "[sft]"),
    (("model", "name"), "pythia-3b", "[model]"),
    (("corpora", "code", "preset"), "nope", "[corpora.code] preset: unknown 'nope'"),
    (("tasks", "gsm8k", "target"), "nope", "[tasks.gsm8k] target: names 'nope'"),
    (("variants", "code20"), "c4:0.8,nope:0.2", "[variants] code20: mixes 'nope'"),
    (("variants", "code20"), "c4:x", "[variants] code20:"),
    (("train", "device"), "tpu", "[train] device: expected one of"),
    (("metric",), "nope", "top level metric: must be one of"),
    (("protocol",), "some", "top level protocol: must be one of all, paper"),
])
def test_bad_values_are_located(tmp_path, path, value, words):
    table = copy.deepcopy(QUICKSTART)
    t = table
    for part in path[:-1]:
        t = t[part]
    t[path[-1]] = value
    config = tmp_path / "study.toml"
    config.write_text(toml_text(table))
    with pytest.raises(MixkitError) as e:
        load_study(config)
    assert words in e.value.message and "\n" not in e.value.message


def test_the_command_refuses_before_any_work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "study.toml"
    config.write_text(toml_text(_with_typo(QUICKSTART, ("sft",), "epoch")))
    result = CliRunner().invoke(main, ["experiment", "--config", str(config), "--out", str(tmp_path / "out")])
    assert result.exit_code != 0
    assert "[sft] epoch: unknown key" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists(), "nothing tokenized, nothing written"


def test_kind_of_config_is_checked(tmp_path):
    config = tmp_path / "sweep.toml"
    config.write_text(toml_text(sweep_table()))
    with pytest.raises(MixkitError, match="run it with `mixkit sweep`"):
        load_study(config, kind="experiment")
    assert load_study(config, kind="sweep").start_steps == [15, 30]
    with pytest.raises(MixkitError, match=r"needs a \[sweep\] table"):
        load_study(ROOT / "experiments" / "quickstart.toml", kind="sweep")


def test_variants_keep_the_baseline_first_and_the_config_order():
    cfg = load_study(ROOT / "experiments" / "quickstart.toml")
    assert cfg.variant_names[:3] == ["base", "code20", "math12"]
    assert all(v.start_step == 30 for v in cfg.variants.values())
    assert cfg.mixture("code20").shares == pytest.approx({"c4": 0.8, "code": 0.2})
