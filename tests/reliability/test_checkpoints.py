"""Checkpoints are checked before use: damaged files are named, resumes fall back, branches and exports refuse.

A run stopped at step 8 of 12 (checkpoints every 2 steps, step 4 kept as a branch point) leaves
``step_00000004`` and ``step_00000008``, both whole. Each test damages a copy of that folder as
the issue's hostile tester did (256 bytes changed inside the weights file, ``step`` edited in
meta.json, a garbage or foreign state file) and runs the command that would use it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mixkit.errors import MixkitError
from tests.support import one_torch_thread  # noqa: F401  (an autouse fixture: one torch thread)
from trainer import checkpoint as ckpt
from trainer.config import config_from_dict
from trainer.export import export
from trainer.model import GPTNeoX, ModelConfig
from trainer.train import train

REPO = Path(__file__).resolve().parents[2]
TRAINER = str(Path(sys.executable).with_name("trainer"))


def make_cfg(out_dir: Path, **kw):
    table = {"mix": "python:tests.support:tiny_stream", "out_dir": str(out_dir), "steps": 12, "micro_batch": 2,
             "model": {"name": "tiny"}, "optim": {"lr": 3e-3}, "checkpoint_interval": 2, "keep_steps": [4],
             "logging": {"tensorboard": False}}
    table.update(kw)
    return config_from_dict(table)




@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """``stopped``: a run stopped at step 8 of 12; ``whole``: the same run trained to step 12 without a stop."""
    root = tmp_path_factory.mktemp("runs")
    torch.set_num_threads(1)
    train(make_cfg(root / "stopped", stop_step=8))
    train(make_cfg(root / "whole"))
    return {"stopped": root / "stopped", "whole": root / "whole"}


@pytest.fixture
def stopped(runs, tmp_path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(runs["stopped"], out)
    return out


def flip_inside(path: Path, count: int = 256) -> None:
    """Change ``count`` bytes in the middle of ``path`` (same size): what a bad disk or a stray write does."""
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid : mid + count] = bytes((b ^ 0x5A) for b in data[mid : mid + count])
    path.write_bytes(bytes(data))


def final_weights_sha(out: Path) -> str:
    return ckpt.read_meta(ckpt.latest_checkpoint(out))["files"][ckpt.MODEL_FILE]


def test_layout_has_no_pickle_and_records_every_files_sha256(stopped):
    step = ckpt.step_dir(stopped, 8)
    assert sorted(p.name for p in step.iterdir()) == ["meta.json", "model.safetensors", "train_state.safetensors"]
    meta = ckpt.read_meta(step)
    assert set(meta["files"]) == {"model.safetensors", "train_state.safetensors"}
    for name, digest in meta["files"].items():
        assert ckpt.file_sha256(step / name) == digest
    assert meta["meta_sha256"] == ckpt.meta_digest(meta)
    assert ckpt.verify_checkpoint(step)["step"] == 8


def test_damaged_weights_resume_falls_back_to_the_previous_intact_checkpoint(runs, stopped, capsys):
    flip_inside(ckpt.step_dir(stopped, 8) / ckpt.MODEL_FILE)
    capsys.readouterr()
    result = train(make_cfg(stopped), resume=True)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "damaged" in line]
    assert len(lines) == 1, err
    assert "step_00000008/model.safetensors" in lines[0] and "resuming from" in lines[0] and "step_00000004" in lines[0]
    assert result.start_step == 4 and result.end_step == 12
    # retrained from step 4, it ends where the undamaged run ended, bit for bit
    assert final_weights_sha(stopped) == final_weights_sha(runs["whole"])


def test_edited_step_in_meta_json_is_caught(runs, stopped, capsys):
    meta_path = ckpt.step_dir(stopped, 8) / ckpt.META_FILE
    meta = json.loads(meta_path.read_text())
    meta["step"] = 6
    meta_path.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    with pytest.raises(ckpt.CheckpointDamaged, match="meta.json"):
        ckpt.verify_checkpoint(ckpt.step_dir(stopped, 8))
    capsys.readouterr()
    result = train(make_cfg(stopped), resume=True)
    err = capsys.readouterr().err
    assert "step_00000008/meta.json" in err and "resuming from" in err
    assert result.start_step == 4
    assert final_weights_sha(stopped) == final_weights_sha(runs["whole"])


def test_edited_meta_with_its_digest_recomputed_still_cannot_move_the_step(stopped):
    """Someone who also recomputes meta_sha256 is caught by the folder's own step number."""
    step = ckpt.step_dir(stopped, 8)
    meta = json.loads((step / ckpt.META_FILE).read_text())
    meta["step"] = 6
    meta["meta_sha256"] = ckpt.meta_digest(meta)
    (step / ckpt.META_FILE).write_text(json.dumps(meta))
    with pytest.raises(ckpt.CheckpointDamaged, match="says step 6"):
        ckpt.verify_checkpoint(step)


def test_resume_with_every_checkpoint_damaged_refuses(stopped):
    for step in (4, 8):
        flip_inside(ckpt.step_dir(stopped, step) / ckpt.TRAIN_STATE_FILE)
    with pytest.raises(MixkitError, match="no intact checkpoint to resume from") as e:
        train(make_cfg(stopped), resume=True)
    assert "train_state.safetensors" in e.value.message and "\n" not in e.value.message


def test_from_refuses_a_damaged_checkpoint_naming_the_file(stopped, tmp_path):
    branch = ckpt.step_dir(stopped, 4)
    flip_inside(branch / ckpt.MODEL_FILE)
    with pytest.raises(ckpt.CheckpointDamaged, match="step_00000004/model.safetensors: damaged"):
        train(make_cfg(tmp_path / "branch", branch_from=str(branch)))
    assert not (tmp_path / "branch" / "checkpoints").exists()


@pytest.mark.slow
def test_from_on_the_command_line_is_one_line(stopped, tmp_path):
    branch = ckpt.step_dir(stopped, 4)
    flip_inside(branch / ckpt.TRAIN_STATE_FILE)
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    proc = subprocess.run([TRAINER, "train", "--set", "mix=python:tests.support:tiny_stream", "--set", "model.name=tiny",
                           "--set", "steps=12", "--set", "micro_batch=2", "--set", "optim.lr=3e-3",
                           "--set", f"out_dir={tmp_path / 'b'}",
                           "--set", "logging.tensorboard=false", "--from", str(branch)],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 1, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "train_state.safetensors" in errors[0] and "damaged" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_export_refuses_a_damaged_checkpoint(stopped, tmp_path):
    flip_inside(ckpt.step_dir(stopped, 8) / ckpt.MODEL_FILE)
    with pytest.raises(ckpt.CheckpointDamaged, match="step_00000008/model.safetensors"):
        export(ckpt.step_dir(stopped, 8), tmp_path / "hf")
    assert not (tmp_path / "hf").exists()
    # the run folder form picks its newest checkpoint: the same refusal, never an older one silently
    with pytest.raises(ckpt.CheckpointDamaged, match="model.safetensors"):
        export(stopped, tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


def test_init_from_refuses_a_damaged_checkpoint(stopped, tmp_path):
    flip_inside(ckpt.step_dir(stopped, 8) / ckpt.MODEL_FILE)
    with pytest.raises(ckpt.CheckpointDamaged, match="model.safetensors"):
        train(make_cfg(tmp_path / "init", init_from=str(ckpt.step_dir(stopped, 8))))


def forge_files(step: Path) -> None:
    """Record the current bytes' sha256 in meta.json (and its digest): damage that checksums cannot see."""
    meta = json.loads((step / ckpt.META_FILE).read_text())
    meta["files"] = {name: ckpt.file_sha256(step / name) for name in meta["files"]}
    meta["meta_sha256"] = ckpt.meta_digest(meta)
    (step / ckpt.META_FILE).write_text(json.dumps(meta))


def test_garbage_state_file_is_one_line(stopped):
    step = ckpt.step_dir(stopped, 8)
    (step / ckpt.MODEL_FILE).write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ckpt.CheckpointDamaged, match="model.safetensors: damaged"):
        ckpt.load_state(step, torch.device("cpu"))
    forge_files(step)
    with pytest.raises(MixkitError, match="not a readable safetensors file") as e:
        ckpt.load_state(step, torch.device("cpu"))
    assert "\n" not in e.value.message


def test_state_of_another_model_is_one_line(stopped, tmp_path):
    """Weights of another shape (a checkpoint file copied from another run) never reach load_state_dict."""
    step = ckpt.step_dir(stopped, 8)
    other = GPTNeoX(ModelConfig(**{**ckpt.read_meta(step)["model_config"], "d_model": 96}))
    from safetensors.torch import save_file

    save_file(other.state_dict(), str(step / ckpt.MODEL_FILE))
    forge_files(step)
    with pytest.raises(MixkitError, match=r"does not fit the model \(.* is .* there, .* in the model") as e:
        train(make_cfg(stopped), resume=True)
    assert "\n" not in e.value.message
    with pytest.raises(MixkitError, match="does not fit the model"):
        export(step, tmp_path / "hf")


def test_older_state_pt_checkpoints_are_refused_with_a_message(stopped, tmp_path):
    step = ckpt.step_dir(stopped, 8)
    for name in (ckpt.MODEL_FILE, ckpt.TRAIN_STATE_FILE):
        (step / name).unlink()
    meta = json.loads((step / ckpt.META_FILE).read_text())
    for key in ("files", "meta_sha256", "format"):
        meta.pop(key)
    (step / ckpt.META_FILE).write_text(json.dumps(meta))
    (step / ckpt.STATE_FILE).write_bytes(b"garbage, not even a pickle")
    assert ckpt.is_checkpoint(step)
    for attempt in (lambda: train(make_cfg(stopped), resume=True), lambda: export(step, tmp_path / "hf"),
                    lambda: train(make_cfg(tmp_path / "b", branch_from=str(step)))):
        with pytest.raises(MixkitError, match="older format"):
            attempt()


def test_a_damaged_newer_checkpoint_is_not_counted_when_pruning(stopped):
    """Resumed from step 4 past a damaged step 8, the run replaces step 8 when it gets there."""
    flip_inside(ckpt.step_dir(stopped, 8) / ckpt.MODEL_FILE)
    train(make_cfg(stopped, keep_last=1, stop_step=6), resume=True)
    # step 6 is the stop step: it and keep_steps stay; the damaged step 8 is left for the next resume to replace
    names = [p.name for p in ckpt.list_checkpoints(stopped)]
    assert names == ["step_00000004", "step_00000006", "step_00000008"]
    train(make_cfg(stopped), resume=True)
    assert [p.name for p in ckpt.list_checkpoints(stopped)] == ["step_00000004", "step_00000012"]
    for p in ckpt.list_checkpoints(stopped):
        ckpt.verify_checkpoint(p)


def test_a_full_disk_while_saving_is_an_os_error_naming_the_file(stopped, monkeypatch):
    """safetensors reports ENOSPC inside its own exception; the save raises it as the OSError it is."""
    from safetensors import SafetensorError

    def full(*args, **kwargs):
        raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, '
                              'message: "No space left on device" })')

    monkeypatch.setattr(ckpt, "save_file", full)
    with pytest.raises(OSError) as e:
        train(make_cfg(stopped, stop_step=10), resume=True)
    assert e.value.errno == 28 and e.value.filename.endswith("model.safetensors")
    # nothing half-written: the checkpoints are those of before, and no temporary folder is left
    assert [p.name for p in ckpt.list_checkpoints(stopped)] == ["step_00000004", "step_00000008"]
    assert not [p for p in (stopped / "checkpoints").iterdir() if p.name.startswith(".")]


def test_a_garbage_meta_json_is_damage_too(stopped, capsys):
    (ckpt.step_dir(stopped, 8) / ckpt.META_FILE).write_bytes(b'{"step": 8, "files": \xff')
    capsys.readouterr()
    assert train(make_cfg(stopped), resume=True).start_step == 4
    assert "step_00000008/meta.json: damaged (not readable JSON" in capsys.readouterr().err
