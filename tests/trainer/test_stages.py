"""Stages: branching equals one run, SFT end to end, evaluation losses, answer-only gradients."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mixkit.mix import MixPlan, Phase, build_mix
from mixkit.presets import TextSpec
from mixkit.samples import sample_path
from mixkit.tokenize import TokenizeConfig, tokenize
from trainer.checkpoint import load_state
from trainer.evaluate import heldout_loss, masked_nll, task_loss
from trainer.model import GPTNeoX, model_config
from trainer.run_dir import read_metrics
from trainer.sft_data import IGNORE_INDEX, SFTSet, collate
from trainer.stage_runner import run_stages
from trainer.stages import run_config_from_dict

MODEL = {"name": "tiny", "vocab_size": 50304, "max_seq_len": 64, "d_model": 32, "n_head": 2}
STEPS, SPLIT = 8, 4


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    tokenize(TokenizeConfig([str(sample_path("c4"))], "c4", TextSpec(preset="c4"), data_dir=str(d), holdout_docs=10, quiet=True))
    tokenize(TokenizeConfig([str(sample_path("code"))], "code", TextSpec(preset="code"), data_dir=str(d), quiet=True))
    shape = {"steps": STEPS, "seq_len": 32, "global_batch": 4, "seed": 7}
    build_mix(MixPlan([Phase(0, {"c4": 1.0})], **shape), "base", d)
    build_mix(MixPlan([Phase(0, {"c4": 1.0}), Phase(SPLIT, {"c4": 0.7, "code": 0.3})], **shape), "code30", d)
    return d


def run_table(data, out, stages, **extra):
    table = {"name": out.name, "out_dir": str(out), "data_dir": str(data), "model": dict(MODEL), "seed": 3,
             "micro_batch": 2, "optim": {"lr": 3e-3, "warmup": 2}, "checkpoint_interval": 2, "stages": stages,
             "eval_batch": 4, **extra}
    return run_config_from_dict(table)


def losses(path):
    return [r["loss"] for r in read_metrics(path) if "loss" in r]


def test_branching_from_a_base_checkpoint_equals_one_run(data, tmp_path):
    one = run_table(data, tmp_path / "one", [{"kind": "pretrain", "name": "pretrain", "mix": "code30"}])
    run_stages(one, log=lambda *_: None)
    base = run_table(data, tmp_path / "base", [{"kind": "pretrain", "name": "pretrain", "mix": "base", "until": SPLIT}])
    run_stages(base, log=lambda *_: None)
    branch_point = tmp_path / "base" / "pretrain" / "checkpoints" / f"step_{SPLIT:08d}"
    assert branch_point.is_dir()
    mid = run_table(data, tmp_path / "mid", [{"kind": "midtrain", "name": "midtrain", "mix": "code30"}])
    run_stages(mid, branch_from=str(branch_point), log=lambda *_: None)

    full = losses(tmp_path / "one" / "pretrain" / "metrics.jsonl")
    first = losses(tmp_path / "base" / "pretrain" / "metrics.jsonl")
    second = losses(tmp_path / "mid" / "midtrain" / "metrics.jsonl")
    assert len(full) == STEPS and len(first) == SPLIT and len(second) == STEPS - SPLIT
    assert first + second == full, "same losses, bit for bit, at every step"
    a = load_state(tmp_path / "one" / "pretrain" / "checkpoints" / f"step_{STEPS:08d}", torch.device("cpu"))
    b = load_state(tmp_path / "mid" / "midtrain" / "checkpoints" / f"step_{STEPS:08d}", torch.device("cpu"))
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k


def test_branching_onto_a_mix_with_another_prefix_is_refused(data, tmp_path):
    from mixkit.errors import MixkitError

    other = MixPlan([Phase(0, {"c4": 0.5, "code": 0.5})], steps=STEPS, seq_len=32, global_batch=4, seed=7)
    build_mix(other, "other", data, overwrite=True)
    base = run_table(data, tmp_path / "base", [{"kind": "pretrain", "name": "pretrain", "mix": "base", "until": SPLIT}])
    run_stages(base, log=lambda *_: None)
    mid = run_table(data, tmp_path / "mid", [{"kind": "midtrain", "name": "midtrain", "mix": "other"}])
    with pytest.raises(MixkitError, match="differs from the one"):
        run_stages(mid, branch_from=str(tmp_path / "base" / "pretrain" / "checkpoints" / f"step_{SPLIT:08d}"), log=lambda *_: None)


def test_all_stages_with_sft_and_results(data, tmp_path):
    tasks = {"gsm8k": {"train": str(sample_path("gsm8k_train")), "val": str(sample_path("gsm8k_test")),
                       "max_examples": 12, "val_size": 6}}
    stages = [
        {"kind": "pretrain", "name": "pretrain", "mix": "base", "until": SPLIT},
        {"kind": "midtrain", "name": "midtrain", "mix": "code30", "eval_interval": 2},
        {"kind": "sft", "name": "sft", "tasks": ["gsm8k"], "lr": 1e-3, "seq_len": 48, "micro_batch": 4, "epochs": 2},
    ]
    cfg = run_table(data, tmp_path / "run", stages, tasks=tasks, heldout="c4-holdout", heldout_docs=5)
    messages = []
    results = run_stages(cfg, log=messages.append)
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved == json.loads(json.dumps(results))
    assert json.loads((tmp_path / "run" / "run.json").read_text()) == json.loads(json.dumps(cfg.source))
    assert [s["name"] for s in saved["stages"]] == ["pretrain", "midtrain"]
    assert saved["stages"][1]["start_step"] == SPLIT and saved["stages"][1]["end_step"] == STEPS
    assert set(saved["evals"]) == {"pretrain", "midtrain"}
    assert saved["heldout"] == {"store": "c4-holdout", "documents": 5}
    sft = saved["sft"]["gsm8k"]
    assert sft["steps"] == 6 and sft["train_examples"] == 12 and sft["val_examples"] == 6
    assert np.isfinite(sft["val_loss"]) and np.isfinite(sft["heldout_loss"])
    assert sft["truncated"]["train_prompt"] > 0, "48 tokens cannot hold GSM8K examples: truncation is counted"
    assert any("truncated" in m for m in messages), "and reported"
    evals = [r for r in read_metrics(tmp_path / "run" / "midtrain" / "metrics.jsonl") if "eval_heldout_loss" in r]
    assert [r["step"] for r in evals] == [5], "every 2 steps within the stage (steps 4..7), the end is in results.json"
    assert set(evals[0]["eval_task_loss"]) == {"gsm8k"}
    sft_log = read_metrics(tmp_path / "run" / "sft-gsm8k" / "metrics.jsonl")
    assert [r["step"] for r in sft_log if "loss" in r] == list(range(6))
    # A second run finds everything done and changes nothing.
    before = (tmp_path / "run" / "results.json").read_bytes()
    messages.clear()
    run_stages(cfg, log=messages.append)
    assert (tmp_path / "run" / "results.json").read_bytes() == before
    assert any("skipped" in m for m in messages)


def _model(seed=0):
    torch.manual_seed(seed)
    return GPTNeoX(model_config("tiny", vocab_size=50, max_seq_len=32))


def test_heldout_loss_equals_a_direct_computation(tmp_path):
    from mixkit.store import write_store

    rng = np.random.default_rng(1)
    docs = [rng.integers(1, 50, size=n) for n in (5, 20, 41, 2)]
    store = write_store(tmp_path / "h", docs, vocab_size=50)
    model = _model()
    got = heldout_loss(model, store, seq_len=16, batch_size=3, device=torch.device("cpu"))
    total, count = 0.0, 0
    with torch.no_grad():
        for d in docs:
            for s in range(0, len(d) - 1, 16):
                w = torch.tensor(d[s : s + 17], dtype=torch.long)
                logits = model(w[None, :-1])[0]
                total += F.cross_entropy(logits, w[1:], reduction="sum").item()
                count += len(w) - 1
    assert got == pytest.approx(total / count, rel=1e-5)
    assert heldout_loss(model, store, 16, 1, torch.device("cpu")) == pytest.approx(got, rel=1e-6), "batch size does not matter"


def test_task_loss_counts_answer_tokens_only():
    data = SFTSet([np.array([5, 6, 7, 8, 9, 1]), np.array([3, 4, 1])], np.array([3, 1]))
    model = _model()
    got = task_loss(model, data, batch_size=2, device=torch.device("cpu"))
    with torch.no_grad():
        l0 = model(torch.tensor([[5, 6, 7, 8, 9]]))[0]
        l1 = model(torch.tensor([[3, 4]]))[0]
        nll = F.cross_entropy(l0[2:], torch.tensor([8, 9, 1]), reduction="sum") + F.cross_entropy(l1, torch.tensor([4, 1]), reduction="sum")
    assert got == pytest.approx(nll.item() / 5, rel=1e-5)


def test_prompt_tokens_carry_no_gradient():
    data = SFTSet([np.array([5, 6, 7, 8, 9, 1])], np.array([3]))
    inputs, labels = collate(data, np.array([0]), pad_id=0)
    x, y = torch.from_numpy(inputs), torch.from_numpy(labels)
    model = _model()
    s, n = masked_nll(model, x, y)
    assert n == 3
    s.backward()
    ours = {k: p.grad.clone() for k, p in model.named_parameters()}
    model.zero_grad()
    # Reference: logits at every position, then weights that zero the prompt positions.
    logits = model(x)[0]
    per_pos = F.cross_entropy(logits, torch.where(y[0] == IGNORE_INDEX, 0, y[0]), reduction="none")
    weights = (y[0] != IGNORE_INDEX).float()
    ref = (per_pos * weights).sum()
    assert s.item() == pytest.approx(ref.item(), rel=1e-5)
    ref.backward()
    for k, p in model.named_parameters():
        torch.testing.assert_close(ours[k], p.grad, rtol=1e-4, atol=1e-6)
