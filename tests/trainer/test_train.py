"""The training loop: overfitting, outputs, exact resume after SIGKILL, DDP equality, bad input."""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from cli.train_cmds import train as train_cmd
from mixkit.errors import MixkitError
from tests.support import FakeStream, tiny_stream, tiny_tokens
from trainer.checkpoint import latest_checkpoint, list_checkpoints, load_state, read_meta
from trainer.config import config_from_dict
from trainer.run_dir import read_metrics
from trainer.train import train

REPO = Path(__file__).resolve().parents[2]
TRAINER = str(Path(sys.executable).with_name("trainer"))


def make_cfg(out_dir, **kw):
    table = {"mix": "python:tests.support:tiny_stream", "out_dir": str(out_dir), "steps": 12, "micro_batch": 2,
             "model": {"name": "tiny"}, "optim": {"lr": 3e-3}, "checkpoint_interval": 4, "keep_last": 2}
    for key, value in kw.items():
        if "." in key:
            section, name = key.split(".")
            table.setdefault(section, {})[name] = value
        else:
            table[key] = value
    return config_from_dict(table)


def losses(out_dir):
    return [r["loss"] for r in read_metrics(Path(out_dir) / "metrics.jsonl") if "loss" in r]


def env_for_subprocess():
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    env.pop("WORLD_SIZE", None)
    return env


def test_overfits_a_tiny_batch(tmp_path):
    """Every step shows the same 4 rows: a working model + optimizer must memorise them."""
    stream = FakeStream(tiny_tokens(4 * 16 + 1, 512, seed=3), seq_len=16, global_batch=4, num_steps=80, vocab_size=512)
    cfg = make_cfg(tmp_path / "run", steps=60, micro_batch=4, checkpoint_interval=60, **{"optim.warmup": 0.05})
    result = train(cfg, stream=stream)
    assert result.last_loss < 0.5 < math.log(512) - 1 < losses(tmp_path / "run")[0]


def test_outputs_metrics_checkpoints_and_plot(tmp_path):
    out = tmp_path / "run"
    train(make_cfg(out))
    records = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in records] == list(range(12))
    first = records[0]
    assert {"step", "loss", "lr", "grad_norm", "tokens_seen", "tokens_per_s", "source_loss"} <= set(first)
    assert "mfu" not in first  # CPU: no peak FLOPs known
    assert first["tokens_seen"] == 4 * 16 and records[-1]["tokens_seen"] == 12 * 4 * 16
    assert set(first["source_loss"]) == {"web", "math"}
    # sources alternate rows, so the step loss is the mean of the two per-source losses
    assert first["loss"] == pytest.approx(sum(first["source_loss"].values()) / 2, rel=1e-6)
    # a finished run keeps its final checkpoint only, weights only: the schedule is over
    assert [p.name for p in list_checkpoints(out)] == ["step_00000012"]
    meta = read_meta(latest_checkpoint(out))
    assert meta["step"] == 12 and meta["mix_fingerprint"] == tiny_stream().fingerprint
    assert meta["config"]["model"]["name"] == "tiny" and meta["weights_only"]
    assert meta["tokenizer_sha256"] == tiny_stream().tokenizer_sha256
    assert sorted(q.name for q in latest_checkpoint(out).iterdir()) == ["meta.json", "model.safetensors"]
    assert set(load_state(latest_checkpoint(out), torch.device("cpu"))) == {"model"}
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_checkpoints_kept_are_what_continuing_and_branching_need(tmp_path):
    """Stopped before the schedule's end: the stop step's checkpoint is whole (it will be continued),
    and keep_steps stay whole; older periodic ones go. Resumed to the end: the final one is weights only."""
    out = tmp_path / "run"
    train(make_cfg(out, steps=12, stop_step=8, checkpoint_interval=2, keep_steps=[2]))
    assert [p.name for p in list_checkpoints(out)] == ["step_00000002", "step_00000008"]
    for p in list_checkpoints(out):
        assert not read_meta(p)["weights_only"]
        assert set(load_state(p, torch.device("cpu"))) == {"model", "optimizer", "scheduler", "rng"}
    train(make_cfg(out, steps=12, checkpoint_interval=2, keep_steps=[2]), resume=True)
    assert [p.name for p in list_checkpoints(out)] == ["step_00000002", "step_00000012"]
    final = latest_checkpoint(out)
    whole = list_checkpoints(out)[0]
    assert read_meta(final)["weights_only"] and not (final / "train_state.safetensors").exists()
    assert (whole / "train_state.safetensors").stat().st_size > 1.5 * (whole / "model.safetensors").stat().st_size
    # a finished run resumed again has nothing to do; its weights-only checkpoint cannot be branched from
    assert train(make_cfg(out, steps=12, checkpoint_interval=2, keep_steps=[2]), resume=True).last_loss is None
    with pytest.raises(MixkitError, match="holds the weights only"):
        train(make_cfg(tmp_path / "branch", steps=12, branch_from=str(final)))
    # keep_checkpoints is keep_last's old name
    assert make_cfg(out, keep_checkpoints=5).keep_last == 5


def test_same_seed_same_losses_other_seed_differs(tmp_path):
    train(make_cfg(tmp_path / "a", steps=4))
    train(make_cfg(tmp_path / "b", steps=4))
    train(make_cfg(tmp_path / "c", steps=4, seed=7))
    assert losses(tmp_path / "a") == losses(tmp_path / "b") != losses(tmp_path / "c")


def test_resume_after_sigkill_is_exact(tmp_path):
    """Kill `trainer train` at a random moment after a checkpoint, resume, compare every loss."""
    steps = 40
    out = tmp_path / "killed"
    config = tmp_path / "run.toml"
    config.write_text(
        f'mix = "python:tests.support:slow_tiny_stream"\nout_dir = "{out}"\nsteps = {steps}\nmicro_batch = 2\n'
        f'checkpoint_interval = 5\nkeep_checkpoints = 2\n[model]\nname = "tiny"\n[optim]\nlr = 3e-3\n'
    )
    fast = ["--set", "mix=python:tests.support:tiny_stream"]
    reference = tmp_path / "reference"
    done = subprocess.run([TRAINER, "train", "--config", str(config), *fast, "--set", f"out_dir={reference}"],
                          cwd=REPO, env=env_for_subprocess(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rng = random.Random(os.getpid())
    wait_for = rng.choice([5, 10, 15, 20])
    proc = subprocess.Popen([TRAINER, "train", "--config", str(config)], cwd=REPO, env=env_for_subprocess(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        ckpt = latest_checkpoint(out)
        if ckpt is not None and int(ckpt.name.split("_")[1]) >= wait_for:
            break
        time.sleep(0.005)
    time.sleep(rng.uniform(0.0, 0.08))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    stopped_at = int(latest_checkpoint(out).name.split("_")[1])
    assert stopped_at < steps
    resumed = subprocess.run([TRAINER, "train", "--config", str(config), "--resume", *fast],
                             cwd=REPO, env=env_for_subprocess(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"trained steps {stopped_at}..{steps}" in resumed.stderr
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl")] == list(range(steps))
    assert losses(out) == losses(reference)


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    out = tmp_path / "run"
    cfg = make_cfg(out, steps=20, checkpoint_interval=1, **{"optim.lr": 1e30, "optim.min_lr": 1e29, "optim.warmup": 0})
    with pytest.raises(MixkitError, match=r"non-finite loss .* at step (\d+).*last good checkpoint"):
        train(cfg)
    logged = losses(out)
    assert logged and all(math.isfinite(x) for x in logged)
    assert int(latest_checkpoint(out).name.split("_")[1]) == len(logged)


def test_resume_refuses_checkpoint_of_another_config(tmp_path):
    out = tmp_path / "run"
    train(make_cfg(out, steps=4))
    with pytest.raises(MixkitError, match="model.n_layer differs"):
        train(make_cfg(out, steps=4, **{"model.n_layer": 3}), resume=True)
    with pytest.raises(MixkitError, match="optim.lr differs"):
        train(make_cfg(out, steps=4, **{"optim.lr": 1e-3}), resume=True)
    with pytest.raises(MixkitError, match="seed"):
        train(make_cfg(out, steps=4, seed=99), resume=True)
    other = FakeStream(tiny_tokens(3000, 512, seed=9), seq_len=16, global_batch=4, num_steps=50, vocab_size=512)
    with pytest.raises(MixkitError, match="another mix"):
        train(make_cfg(out, steps=4), resume=True, stream=other)
    with pytest.raises(MixkitError, match="--resume"):
        train(make_cfg(out, steps=4))
    assert train(make_cfg(out, steps=4), resume=True).start_step == 4  # same config: nothing left to do


@pytest.mark.parametrize("kw,stream_kw,match", [
    ({"model.vocab_size": 256}, {}, "model.vocab_size is 256"),
    ({"tokenizer_sha256": "ab" * 32}, {}, "tokenizer sha256"),
    ({"steps": 500}, {}, "only 400 steps"),
    ({"grad_accum": 3}, {}, "grad_accum 3"),
    ({"model.max_seq_len": 8}, {}, "max_seq_len"),
])
def test_bad_combinations_are_refused(tmp_path, kw, stream_kw, match):
    with pytest.raises(MixkitError, match=match):
        train(make_cfg(tmp_path / "run", **kw))


@pytest.mark.parametrize("mix,match", [
    ("no-such-mix", "no-such-mix"),
    ("python:tests.support:nothing_here", "cannot import"),
    ("python:json:dumps_nothing", "cannot import"),
])
def test_missing_mix_is_a_clear_cli_error(tmp_path, data_dir, mix, match):
    result = CliRunner().invoke(train_cmd, ["--set", f"mix={mix}", "--set", f"out_dir={tmp_path / 'o'}",
                                            "--set", "model.name=tiny"])
    assert result.exit_code == 1, result.output
    assert match in result.output and "Traceback" not in result.output


def test_cli_reports_bad_key_and_unknown_model(tmp_path):
    r = CliRunner().invoke(train_cmd, ["--set", "mix=m", "--set", f"out_dir={tmp_path}", "--set", "model.name=gpt5"])
    assert r.exit_code == 1 and "unknown model 'gpt5'" in r.output
    r = CliRunner().invoke(train_cmd, ["--set", "mix=m", "--set", f"out_dir={tmp_path}", "--set", "optim.lrr=1"])
    assert r.exit_code == 1 and "[optim] lrr: unknown key" in r.output


def test_two_process_ddp_equals_one_process(tmp_path):
    """torchrun, gloo on CPU: 2 ranks × 2 rows each vs 1 rank × 2 micro-batches of 2 rows."""
    steps = 6
    single = tmp_path / "single"
    train(make_cfg(single, steps=steps, micro_batch=2))
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "cli.trainer_cli", "train", "--set", "mix=python:tests.support:tiny_stream",
           "--set", f"out_dir={out}", "--set", f"steps={steps}", "--set", "micro_batch=2", "--set", "model.name=tiny",
           "--set", "optim.lr=3e-3", "--set", "checkpoint_interval=4", "--set", "logging.log_interval=2"]
    proc = subprocess.run(cmd, cwd=REPO, env=env_for_subprocess(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # only rank 0 prints and logs: each progress line once, one TensorBoard event file, one summary line
    progress = [ln for ln in proc.stderr.splitlines() if ln.startswith("ddp step")]
    assert [ln.split(" |")[0] for ln in progress] == ["ddp step 2/6", "ddp step 4/6", "ddp step 6/6"], proc.stderr[-3000:]
    assert len(list((out / "tensorboard").glob("events.out.tfevents.*"))) == 1
    assert proc.stderr.count("trained steps 0..6") == 1
    a, b = losses(single), losses(out)
    assert len(a) == len(b) == steps
    assert b == pytest.approx(a, rel=1e-5, abs=1e-6)
    per_source = [r["source_loss"] for r in read_metrics(out / "metrics.jsonl")]
    assert per_source == [pytest.approx(r["source_loss"], rel=1e-5) for r in read_metrics(single / "metrics.jsonl")]
    assert json.loads((out / "checkpoints" / "step_00000006" / "meta.json").read_text())["world_size"] == 2


def test_end_to_end_on_a_built_mix(tmp_path, data_dir, make_store):
    """Token stores → `build_mix` → `trainer train` by mix name, a few steps, per-source losses logged."""
    import numpy as np

    from mixkit.mix import MixPlan, Phase, build_mix
    from tests.support import random_docs

    rng = np.random.default_rng(0)
    make_store("web", random_docs(rng, 60, 500, max_len=80), vocab_size=500)
    make_store("math", random_docs(rng, 60, 500, max_len=80), vocab_size=500)
    build_mix(MixPlan([Phase(0, {"web": 0.7, "math": 0.3})], steps=5, seq_len=16, global_batch=4), "mid", data_dir)
    out = tmp_path / "run"
    args = ["--set", "mix=mid", "--set", f"out_dir={out}", "--set", "model.name=tiny", "--set", "micro_batch=2"]
    result = CliRunner().invoke(train_cmd, args)
    assert result.exit_code == 0, result.output
    records = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in records] == list(range(5))
    assert set().union(*(r["source_loss"] for r in records)) <= {"web", "math"}
    assert all(math.isfinite(r["loss"]) for r in records)
    # the model's vocabulary must cover the mix's tokenizer
    small = CliRunner().invoke(train_cmd, [*args[:2], "--set", f"out_dir={tmp_path / 'small'}", *args[4:],
                                           "--set", "model.vocab_size=256"])
    assert small.exit_code == 1 and "model.vocab_size is 256" in small.output


def test_init_from_a_hugging_face_directory(tmp_path):
    """Midtraining starts from saved weights: step 0's loss is that of the saved model on batch 0."""
    import torch

    from trainer.hf import to_hf
    from trainer.model import GPTNeoX, model_config

    torch.manual_seed(11)
    start = GPTNeoX(model_config("tiny"))
    to_hf(start, tmp_path / "hf")
    rows = torch.from_numpy(tiny_stream().batch(0))
    with torch.no_grad():
        expected = start(rows[:, :-1], rows[:, 1:])[0].item()
    train(make_cfg(tmp_path / "run", steps=2, micro_batch=4, init_from=str(tmp_path / "hf")))
    assert losses(tmp_path / "run")[0] == pytest.approx(expected, rel=1e-5)
    with pytest.raises(MixkitError, match="model.n_layer differs"):
        train(make_cfg(tmp_path / "run2", steps=2, init_from=str(tmp_path / "hf"), **{"model.n_layer": 3}))
