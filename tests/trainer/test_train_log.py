"""Training logs off a terminal: plain progress lines, TensorBoard's loss curve, W&B when asked."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

from trainer.config import config_from_dict
from trainer.run_dir import read_metrics, tensorboard_dir
from trainer.train import train
from trainer.train_log import LoggingConfig, TrainLogger, flatten_scalars, format_duration, progress_line

REPO = Path(__file__).resolve().parents[2]
TRAINER = str(Path(sys.executable).with_name("trainer"))
LINE = re.compile(r"^run step (\d+)/12 \| loss \d+\.\d{4} \| lr \d\.\d\de[-+]\d\d \| [\d,]+ tok/s \| ETA \d+s$")


def cfg(out, **logging):
    return config_from_dict({"mix": "python:tests.support:tiny_stream", "out_dir": str(out), "steps": 12,
                             "micro_batch": 4, "model": {"name": "tiny"}, "checkpoint_interval": 6,
                             "logging": logging})


def test_piped_stderr_gets_a_line_every_log_interval(tmp_path):
    """`trainer train ... 2>&1 | cat`: stderr is a pipe, not a terminal."""
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    env.pop("WORLD_SIZE", None)
    env.pop("RANK", None)
    out = tmp_path / "run"
    proc = subprocess.run([TRAINER, "train", "--set", "mix=python:tests.support:tiny_stream",
                           "--set", f"out_dir={out}", "--set", "steps=12", "--set", "micro_batch=4",
                           "--set", "model.name=tiny", "--set", "logging.log_interval=5"],
                          cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("run step")]
    assert all(LINE.match(ln) for ln in lines), lines
    assert [int(LINE.match(ln).group(1)) for ln in lines] == [5, 10, 12]
    assert "\r" not in proc.stdout, "no progress bar in a pipe"


def test_tensorboard_events_hold_the_loss_curve(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    train(cfg(out))
    events = EventAccumulator(str(tensorboard_dir(out)))
    events.Reload()
    logged = [(r["step"], r["loss"]) for r in read_metrics(out / "metrics.jsonl") if "loss" in r]
    got = [(e.step, e.value) for e in events.Scalars("loss")]
    assert [s for s, _ in got] == [s for s, _ in logged] == list(range(12))
    assert [v for _, v in got] == pytest.approx([v for _, v in logged], rel=1e-6)
    assert {"lr", "grad_norm", "tokens_per_s", "source_loss/web", "source_loss/math"} <= set(events.Tags()["scalars"])


def test_resumed_run_keeps_one_curve(tmp_path):
    """A resumed run purges the events from its first step on: the curve has no doubled stretch."""
    import shutil

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from trainer.checkpoint import list_checkpoints

    out = tmp_path / "run"
    first = cfg(out)
    first.stop_step, first.keep_steps = 9, [6]
    train(first)  # checkpoints at 6 and 9; losing 9 (a kill) makes the resumed run redo steps 6..8
    shutil.rmtree(list_checkpoints(out)[-1])
    again = cfg(out)
    again.keep_steps = [6]
    train(again, resume=True)
    events = EventAccumulator(str(tensorboard_dir(out)))
    events.Reload()
    assert [e.step for e in events.Scalars("loss")] == list(range(12))


def test_tensorboard_off_writes_no_events(tmp_path):
    train(cfg(tmp_path / "run", tensorboard=False))
    assert not tensorboard_dir(tmp_path / "run").exists()


def test_wandb_when_asked_and_installed(tmp_path, monkeypatch):
    calls = []

    class Run:
        def log(self, scalars, step):
            calls.append(("log", step, scalars))

        def finish(self):
            calls.append(("finish",))

    def init(**kw):
        calls.append(("init", kw))
        return Run()

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=init))
    train(cfg(tmp_path / "run", wandb=True, wandb_project="proj"))
    assert calls[0][0] == "init" and calls[0][1]["project"] == "proj" and calls[0][1]["dir"] == str(tmp_path / "run")
    assert calls[0][1]["config"]["steps"] == 12
    steps = [c[1] for c in calls if c[0] == "log" and "loss" in c[2]]
    assert steps == list(range(12)) and calls[-1] == ("finish",)
    calls.clear()
    train(cfg(tmp_path / "off"))
    assert calls == [], "not asked for: not used"


def test_wandb_missing_or_failing_never_stops_training(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb raises ImportError
    train(cfg(tmp_path / "a", wandb=True))
    assert "wandb package is not installed" in capsys.readouterr().err

    def init(**kw):
        raise RuntimeError("api.wandb.ai unreachable\nmore")

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=init))
    result = train(cfg(tmp_path / "b", wandb=True))
    assert result.end_step == 12 and "wandb did not start (api.wandb.ai unreachable)" in capsys.readouterr().err


def test_logger_pieces(tmp_path):
    assert format_duration(12.4) == "12s" and format_duration(250) == "4m10s" and format_duration(3720) == "1h02m"
    assert flatten_scalars({"step": 3, "stage": "sft:x", "loss": 1.0, "ok": True, "nan": float("nan"),
                            "eval_task_loss": {"gsm8k": 2.0}}) == {"loss": 1.0, "eval_task_loss/gsm8k": 2.0}
    line = progress_line("pretrain", 120, 600, {"loss": 3.45211, "lr": 2.95e-4, "tokens_per_s": 12345.6, "mfu": 0.3123}, 250)
    assert line == "pretrain step 120/600 | loss 3.4521 | lr 2.95e-04 | 12,346 tok/s | MFU 31.2% | ETA 4m10s"
    # a logger on another rank is silent; rank 0's writes lines at the interval and at the end
    stream = io.StringIO()
    quiet = TrainLogger(LoggingConfig(log_interval=2, tensorboard=False), tmp_path, total=5, enabled=False, stream=stream)
    loud = TrainLogger(LoggingConfig(log_interval=2, tensorboard=False), tmp_path, total=5, desc="x", stream=stream)
    for step in range(5):
        for logger in (quiet, loud):
            logger.log({"step": step, "loss": 1.0, "lr": 0.1})
            logger.log({"step": step, "eval_loss": 2.0})  # not a training step: no line
    quiet.close()
    loud.close()
    assert [ln.split(" |")[0] for ln in stream.getvalue().splitlines()] == ["x step 2/5", "x step 4/5", "x step 5/5"]
