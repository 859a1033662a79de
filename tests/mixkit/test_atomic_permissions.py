"""Every file and folder mixkit and the trainer write gets the umask's permissions (not tempfile's 0600/0700).

Each umask is tried in a fresh process (the umask is process-wide): it writes a token store,
atomic files and folders, a short training run (checkpoints, metrics, plot, TensorBoard) and
a Hugging Face export, then reports the mode of everything under its folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

WRITER = r"""
import json, os, sys
from pathlib import Path
os.umask(int(sys.argv[2], 8))
import numpy as np
import torch
torch.set_num_threads(1)
from mixkit import atomic
from mixkit.store import write_store
from trainer.config import config_from_dict
from trainer.hf import to_hf
from trainer.model import GPTNeoX, model_config
from trainer.train import train

root = Path(sys.argv[1])
write_store(root / "data" / "web", [np.array([5, 6, 7, 0]), np.array([8, 9, 0])], vocab_size=100)
atomic.write_json(root / "files" / "a.json", {"x": 1})
with atomic.atomic_dir(root / "files" / "folder") as tmp:
    (tmp / "inside.txt").write_text("x")
    atomic.write_text(tmp / "nested" / "atomic.txt", "y")
cfg = config_from_dict({"mix": "python:tests.support:tiny_stream", "out_dir": str(root / "run"), "steps": 2,
                        "micro_batch": 4, "model": {"name": "tiny"}, "checkpoint_interval": 1})
train(cfg)
to_hf(GPTNeoX(model_config("tiny")), root / "hf")
modes = {}
for dirpath, dirnames, filenames in os.walk(root):
    for name in dirnames + filenames:
        p = Path(dirpath) / name
        modes[str(p.relative_to(root))] = [p.is_dir(), os.stat(p).st_mode & 0o777]
print(json.dumps(modes))
"""


@pytest.mark.parametrize("umask,file_mode,dir_mode", [("022", 0o644, 0o755), ("002", 0o664, 0o775)])
def test_written_files_and_folders_follow_the_umask(tmp_path, umask, file_mode, dir_mode):
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    env.pop("WORLD_SIZE", None)
    proc = subprocess.run([sys.executable, "-c", WRITER, str(tmp_path / "out"), umask], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    modes = json.loads(proc.stdout.strip().splitlines()[-1])
    # what the writer must have produced, so the check below cannot pass on an empty folder
    for expected in ("data/web.bin", "data/web.idx", "data/web.json", "files/a.json", "files/folder",
                     "files/folder/nested/atomic.txt", "run/metrics.jsonl", "run/checkpoints/step_00000002",
                     "run/checkpoints/step_00000002/meta.json", "hf/model.safetensors", "hf/config.json"):
        assert expected in modes, sorted(modes)
    wrong = {p: oct(m) for p, (is_dir, m) in modes.items() if m != (dir_mode if is_dir else file_mode)}
    assert not wrong, f"umask {umask}: {wrong}"
