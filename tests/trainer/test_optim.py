"""LR schedule values, AdamW parameter groups, and config loading / validation."""

from __future__ import annotations

import math

import pytest
import torch

from mixkit.errors import MixkitError
from trainer.config import apply_overrides, load_config, parse_value
from trainer.model import GPTNeoX, model_config
from trainer.optim import OptimConfig, lr_at, make_optimizer, make_scheduler, param_groups


def test_lr_schedule_values():
    total, warm, hi, lo = 101, 10, 3e-4, 1e-6
    assert lr_at(0, total, warm, hi, lo) == pytest.approx(hi / 10)
    assert lr_at(4, total, warm, hi, lo) == pytest.approx(hi * 5 / 10)
    assert lr_at(9, total, warm, hi, lo) == pytest.approx(hi)
    assert lr_at(10, total, warm, hi, lo) == pytest.approx(hi)
    # halfway through the decay (step 10 + 45 of 90) the cosine is at its midpoint
    assert lr_at(55, total, warm, hi, lo) == pytest.approx((hi + lo) / 2)
    assert lr_at(100, total, warm, hi, lo) == pytest.approx(lo)
    q = lr_at(10 + 30, total, warm, hi, lo)
    assert q == pytest.approx(lo + (hi - lo) * 0.5 * (1 + math.cos(math.pi / 3)))
    decay = [lr_at(s, total, warm, hi, lo) for s in range(warm, total)]
    assert all(a >= b for a, b in zip(decay, decay[1:]))


def test_no_warmup_starts_at_max():
    assert lr_at(0, 50, 0, 1e-3, 0.0) == pytest.approx(1e-3)
    assert lr_at(49, 50, 0, 1e-3, 0.0) == pytest.approx(0.0)


def test_scheduler_drives_optimizer_lr():
    model = GPTNeoX(model_config("tiny", n_layer=1))
    cfg = OptimConfig(lr=1e-3, min_lr=1e-5, warmup=0.2)
    opt = make_optimizer(model, cfg)
    sched = make_scheduler(opt, cfg, 20)
    seen = []
    for _ in range(20):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([lr_at(s, 20, 4, 1e-3, 1e-5) for s in range(20)])
    assert cfg.warmup_steps(20) == 4 and OptimConfig(warmup=7).warmup_steps(20) == 7


def test_weight_decay_groups_follow_gpt_neox():
    model = GPTNeoX(model_config("tiny", n_layer=1))
    decay, no_decay = param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    kept = {names[id(p)] for p in no_decay["params"]}
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert "embed_in.weight" in decayed and "embed_out.weight" in decayed
    assert "layers.0.attention.query_key_value.weight" in decayed
    assert all(n.endswith("bias") or "norm" in n for n in kept)
    assert "final_layer_norm.weight" in kept and "layers.0.mlp.dense_h_to_4h.bias" in kept
    assert len(decayed) + len(kept) == len(list(model.parameters()))
    opt = make_optimizer(model, OptimConfig())
    assert opt.defaults["betas"] == (0.9, 0.95)
    assert isinstance(opt, torch.optim.AdamW)


def write(path, text):
    path.write_text(text)
    return path


def test_load_config_with_overrides(tmp_path):
    p = write(tmp_path / "run.toml", 'mix = "m"\nout_dir = "o"\nsteps = 5\n[model]\nname = "tiny"\n[optim]\nlr = 1e-3\n')
    cfg = load_config(p, ["optim.lr=2e-3", "model.n_layer=3", "compile=true", 'mix="other"', "out_dir=runs/x"])
    assert cfg.optim.lr == 2e-3 and cfg.model_config().n_layer == 3 and cfg.compile is True
    assert cfg.mix == "other" and cfg.out_dir == "runs/x" and cfg.steps == 5
    assert parse_value("3") == 3 and parse_value("abc") == "abc" and parse_value("true") is True
    assert apply_overrides({"a": {"b": 1}}, ["a.c=2"]) == {"a": {"b": 1, "c": 2}}


@pytest.mark.parametrize("text,sets,match", [
    ('out_dir = "o"', [], r"run.toml: top level mix: missing"),
    ('mix = "m"\nout_dir = "o"\nstpes = 3', [], r"run.toml: top level stpes: unknown key"),
    ('mix = "m"\nout_dir = "o"\n[optim]\nlearning_rate = 1', [], r"run.toml: \[optim\] learning_rate: unknown key"),
    ('mix = "m"\nout_dir = "o"', ["optim.lr=-1"], r"\[optim\] lr: must be positive"),
    ('mix = "m"\nout_dir = "o"', ["optim.min_lr=1"], r"\[optim\] min_lr"),
    ('mix = "m"\nout_dir = "o"', ["micro_batch=0"], "micro_batch: must be positive"),
    ('mix = "m"\nout_dir = "o"', ["steps=ten"], "steps: expected an integer, got 'ten'"),
    ('mix = "m"\nout_dir = "o"', ["precision=fp16"], "precision: expected one of"),
    ('mix = "m"\nout_dir = "o"', ["model.name=pythia-7b"], r"\[model\] name: unknown model 'pythia-7b'"),
    ('mix = "m"\nout_dir = "o"', ["model.n_head=5"], r"\[model\] d_model: 512 must be divisible by n_head"),
    ('mix = "m"\nout_dir = "o"', ["model.depth=5"], r"\[model\] depth: unknown key"),
    ('mix = "m"\nout_dir = "o"', ["lr"], "key=value"),
    ('mix = "m"\nout_dir = [', [], "invalid TOML"),
])
def test_bad_config_names_the_key(tmp_path, text, sets, match):
    p = write(tmp_path / "run.toml", text)
    with pytest.raises(MixkitError, match=match):
        load_config(p, sets)


def test_missing_config_file(tmp_path):
    with pytest.raises(MixkitError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
