"""Trainer configs: every table built by ``from_table``, checked whole at load, errors naming file, table and key."""

from __future__ import annotations

import dataclasses
import re

import pytest

from mixkit.config import Where, from_table, to_table
from mixkit.errors import MixkitError
from trainer.config import TrainConfig, apply_overrides, config_from_dict, load_config
from trainer.model import MODEL_CONFIGS, ModelConfig, ModelSpec
from trainer.optim import OptimConfig
from trainer.sft import SFTConfig
from trainer.sft_data import TaskConfig
from trainer.stages import RunConfig, SFTStageConfig, TrainStageConfig, load_run_config, run_config_from_dict

STAGED = '''
name = "r"
out_dir = "OUT"
heldout = "c4-holdout"
[model]
name = "tiny"
max_seq_len = 64
[optim]
lr = 1e-3
[[stages]]
name = "pretrain"
kind = "pretrain"
mix = "base"
until = 4
[[stages]]
name = "midtrain"
kind = "midtrain"
mix = "code20"
[[stages]]
name = "sft"
kind = "sft"
tasks = ["gsm8k"]
seq_len = 48
lr = 1e-4
[tasks.gsm8k]
train = "train.jsonl"
val = "test.jsonl"
'''


def staged(tmp_path, replace: tuple[str, str] | None = None):
    text = STAGED.replace("OUT", str(tmp_path / "run"))
    if replace is not None:
        assert replace[0] in text
        text = text.replace(*replace, 1)
    path = tmp_path / "run.toml"
    path.write_text(text)
    return path


def test_a_staged_config_loads_typed(tmp_path):
    cfg = load_run_config(staged(tmp_path))
    assert [type(s) for s in cfg.stages] == [TrainStageConfig, TrainStageConfig, SFTStageConfig]
    assert cfg.model == ModelSpec(name="tiny", max_seq_len=64) and cfg.model.build().n_layer == MODEL_CONFIGS["tiny"].n_layer
    assert cfg.optim == OptimConfig(lr=1e-3)
    assert cfg.stages[2].sft == SFTConfig(seq_len=48, lr=1e-4) and cfg.stages[2].tasks == ["gsm8k"]
    assert cfg.tasks["gsm8k"].name == "gsm8k" and cfg.tasks["gsm8k"].preset == "gsm8k"
    assert cfg.tasks["gsm8k"].train == ["train.jsonl"] and cfg.tasks["gsm8k"].val == ["test.jsonl"]
    assert cfg.source["stages"][0]["until"] == 4, "the table as given, for run.json"
    assert not (tmp_path / "run").exists(), "loading does no work"


# A typo in each table of a staged config, and bad values: refused at load, located as FILE: [TABLE] KEY.
@pytest.mark.parametrize("replace,message", [
    (('heldout = "c4-holdout"', 'heldot = "c4-holdout"'), "top level heldot: unknown key (known: "),
    (('max_seq_len = 64', 'max_seqlen = 64'), "[model] max_seqlen: unknown key (known: "),
    (('lr = 1e-3', 'lrr = 1e-3'), "[optim] lrr: unknown key (known: "),
    (('until = 4', 'untill = 4'), "[stages.pretrain] untill: unknown key (known: "),
    (('mix = "code20"', 'mix = "code20"\nlr = 1e-3'), "[stages.midtrain] lr: unknown key (known: "),
    (('seq_len = 48', 'seqlen = 48'), "[stages.sft] seqlen: unknown key (known: "),
    (('val = "test.jsonl"', 'vall = "test.jsonl"'), "[tasks.gsm8k] vall: unknown key (known: "),
    (('seq_len = 48', 'seq_len = 128'), "top level stages.sft.seq_len: 128 is above the model's max_seq_len 64"),
    (('heldout = "c4-holdout"', 'eval_seq_len = 65'), "top level eval_seq_len: 65 is above the model's max_seq_len 64"),
    (('tasks = ["gsm8k"]', 'tasks = ["gsm8k", "code"]'), "top level stages.sft.tasks: names task 'code' but there is no [tasks.code]"),
    (('kind = "midtrain"', 'kind = "midtrian"'), "[stages.midtrain] kind: expected one of pretrain, midtrain, sft"),
    (('mix = "code20"', 'mix = ""'), "[stages.midtrain] mix: required for a midtrain stage"),
    (('until = 4', 'until = -4'), "[stages.pretrain] until: must be >= 0"),
    (('until = 4', 'until = "4"'), "[stages.pretrain] until: expected an integer, got '4'"),
    (('lr = 1e-4', 'lr = -1e-4'), "[stages.sft] lr: must be positive"),
    (('lr = 1e-4', 'schedule = "linear"'), "[stages.sft] schedule: expected one of 'constant', 'cosine'"),
    (('name = "midtrain"', 'name = "pretrain"'), "top level stages: stage names must be unique"),
    (('name = "midtrain"', 'name = "sft-x"'), "[stages.sft-x] name: must be a simple folder name"),
    (('val = "test.jsonl"', 'preset = "nope"'), "[tasks.gsm8k] preset: unknown 'nope'"),
    (('name = "tiny"', 'name = "gpt5"'), "[model] name: unknown model 'gpt5'"),
    (('lr = 1e-3', 'lr = 0'), "[optim] lr: must be positive"),
    (('heldout = "c4-holdout"', 'precision = "fp16"'), "top level precision: expected one of 'auto', 'fp32', 'bf16'"),
])
def test_typos_and_bad_values_are_refused_at_load_with_their_place(tmp_path, replace, message):
    path = staged(tmp_path, replace)
    with pytest.raises(MixkitError, match=re.escape(f"{path}: {message}")):
        load_run_config(path)
    assert not (tmp_path / "run").exists(), "refused before any work"


def test_sft_stages_come_last_and_stages_are_required():
    base = {"name": "r", "out_dir": "o", "model": {"name": "tiny"}}
    sft = {"kind": "sft", "tasks": ["gsm8k"], "seq_len": 64}
    tasks = {"gsm8k": {"train": "x"}}
    with pytest.raises(MixkitError, match=r"stages.pretrain.kind: pretrain/midtrain stages must come before"):
        run_config_from_dict({**base, "tasks": tasks, "stages": [sft, {"kind": "pretrain", "mix": "m"}]})
    with pytest.raises(MixkitError, match=r"top level stages: missing \(required\)"):
        run_config_from_dict(base)
    with pytest.raises(MixkitError, match=r"\[stages\[0\]\] kind: missing"):
        run_config_from_dict({**base, "stages": [{"mix": "m"}]})


def test_set_reaches_a_stage_by_name(tmp_path):
    path = staged(tmp_path)
    cfg = load_run_config(path, ["stages.sft.lr=2e-4", "stages.pretrain.until=2", "tasks.gsm8k.val_size=3",
                                 "optim.lr=5e-4", "model.n_layer=1", "seed=9"])
    assert cfg.stages[2].sft.lr == 2e-4 and cfg.stages[0].until == 2 and cfg.tasks["gsm8k"].val_size == 3
    assert cfg.optim.lr == 5e-4 and cfg.model.build().n_layer == 1 and cfg.seed == 9
    with pytest.raises(MixkitError, match=r"\[stages.sft\] seq_len: must be positive"):
        load_run_config(path, ["stages.sft.seq_len=0"])
    with pytest.raises(MixkitError, match="no table named 'finetune' in 'stages'"):
        load_run_config(path, ["stages.finetune.lr=1"])
    with pytest.raises(MixkitError, match="'stages' is a list; name one of its tables"):
        load_run_config(path, ["stages.lr=1"])
    table = {"stages": [{"kind": "sft"}]}
    assert apply_overrides(table, ["stages.sft.lr=1"]) == {"stages": [{"kind": "sft", "lr": 1}]}
    assert table == {"stages": [{"kind": "sft"}]}, "the table given is not changed"


def test_each_typed_config_builds_standalone_from_a_table():
    where = Where("exp.toml", "optim")
    assert from_table(OptimConfig, {"lr": 1e-3, "warmup": 10}, where) == OptimConfig(lr=1e-3, warmup=10.0)
    assert from_table(SFTConfig, {"epochs": 2}, Where("exp.toml", "sft")).epochs == 2
    assert from_table(ModelSpec, {"name": "tiny", "d_model": 32, "n_head": 2}, Where("exp.toml", "model")).build() == \
        dataclasses.replace(MODEL_CONFIGS["tiny"], d_model=32, n_head=2)
    task = from_table(TaskConfig, {"train": "a.jsonl", "val_size": 4}, Where("exp.toml", "tasks.gsm8k"), name="gsm8k")
    assert task.train == ["a.jsonl"] and task.preset == "gsm8k"
    with pytest.raises(MixkitError, match=r"exp.toml: \[optim\] beta2: must be in \[0, 1\)"):
        from_table(OptimConfig, {"beta2": 1.0}, where)
    with pytest.raises(MixkitError, match=r"exp.toml: \[model\] d_model: 64 must be divisible by n_head \(3\)"):
        from_table(ModelSpec, {"name": "tiny", "n_head": 3}, Where("exp.toml", "model"))


def test_model_spec_mirrors_model_config():
    """Every ModelConfig field can be replaced from the [model] table, and nothing else."""
    spec = [f.name for f in dataclasses.fields(ModelSpec)]
    assert spec == ["name"] + [f.name for f in dataclasses.fields(ModelConfig)]
    assert to_table(ModelSpec(name="tiny", n_layer=3)) == {"name": "tiny", "n_layer": 3}


def test_the_default_model_is_written_once():
    default = ModelSpec().name
    assert default == "pythia-70m"
    assert config_from_dict({"mix": "m", "out_dir": "o"}).model.name == default
    run = run_config_from_dict({"name": "r", "out_dir": "o", "stages": [{"kind": "pretrain", "mix": "m"}]})
    assert run.model.name == default


def test_train_config_as_checkpoints_record_it(tmp_path):
    """meta.json's `config`: every TrainConfig key, `model` only as given (name plus replaced fields)."""
    cfg = config_from_dict({"mix": "m", "out_dir": "o", "model": {"name": "tiny", "n_layer": 1}, "optim": {"lr": 1}})
    d = cfg.to_dict()
    assert set(d) == {f.name for f in dataclasses.fields(TrainConfig)}
    assert d["model"] == {"name": "tiny", "n_layer": 1}
    assert d["optim"] == dataclasses.asdict(OptimConfig(lr=1.0)) and isinstance(d["optim"]["lr"], float)
    assert config_from_dict(d) == cfg, "the recorded config loads back to the same config"
    (tmp_path / "t.toml").write_text('mix = "m"\nout_dir = "o"\n[optim]\nlr = 1\n')
    assert load_config(tmp_path / "t.toml").optim.lr == 1.0


def test_run_config_train_config_carries_the_run_settings():
    run = run_config_from_dict({"name": "r", "out_dir": "o", "model": {"name": "tiny"}, "micro_batch": 4, "seed": 5,
                                "stages": [{"kind": "pretrain", "mix": "m", "until": 3, "grad_accum": 2}]})
    assert isinstance(run, RunConfig)
    t = run.train_config(run.stages[0], "o/pretrain", "")
    assert (t.mix, t.out_dir, t.micro_batch, t.grad_accum, t.stop_step, t.seed) == ("m", "o/pretrain", 4, 2, 3, 5)
    assert t.model is run.model and t.optim is run.optim
