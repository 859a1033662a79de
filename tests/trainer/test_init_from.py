"""init_from: a Hugging Face folder with pytorch_model.bin, a hub id at a revision (from the local
Hugging Face cache, offline), one of our checkpoints; refusals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mixkit.errors import MixkitError
from tests.support import tiny_stream
from trainer.config import config_from_dict
from trainer.hf import from_hf, is_hub_id, resolve_pretrained, to_hf
from trainer.model import GPTNeoX, model_config
from trainer.run_dir import read_metrics
from trainer.train import train

transformers = pytest.importorskip("transformers")
REPO = Path(__file__).resolve().parents[2]


def cfg(out, **kw):
    return config_from_dict({"mix": "python:tests.support:tiny_stream", "out_dir": str(out), "steps": 2,
                             "micro_batch": 4, "model": {"name": "tiny"}, "logging": {"tensorboard": False}, **kw})


def first_loss(model: GPTNeoX) -> float:
    rows = torch.from_numpy(tiny_stream().batch(0))
    with torch.no_grad():
        return model(rows[:, :-1], rows[:, 1:])[0].item()


def pytorch_bin_folder(path: Path, seed: int = 5) -> GPTNeoX:
    """A GPTNeoXForCausalLM saved the pre-safetensors way (config.json + pytorch_model.bin), as many
    hub checkpoints are; returns the same weights as our model (through transformers)."""
    torch.manual_seed(seed)
    staging = path.with_name(f"{path.name}-safetensors")
    to_hf(GPTNeoX(model_config("tiny")), staging)
    hf = transformers.AutoModelForCausalLM.from_pretrained(staging)
    path.mkdir()
    hf.config.save_pretrained(path)
    torch.save(hf.state_dict(), path / "pytorch_model.bin")
    return from_hf(hf)


def test_init_from_a_pytorch_model_bin_folder(tmp_path):
    folder = tmp_path / "bin"
    reference = pytorch_bin_folder(folder)
    assert not (folder / "model.safetensors").exists()
    loaded = from_hf(folder)
    for k, v in reference.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    # transformers reads the same folder to the same logits
    hf = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    idx = torch.randint(0, 512, (2, 16))
    with torch.no_grad():
        assert (hf(idx).logits - loaded.eval()(idx)).abs().max().item() <= 1e-4
    train(cfg(tmp_path / "run", init_from=str(folder)))
    assert read_metrics(tmp_path / "run" / "metrics.jsonl")[0]["loss"] == pytest.approx(first_loss(reference), rel=1e-5)


def test_init_from_one_of_our_checkpoints(tmp_path):
    train(cfg(tmp_path / "a"))
    from trainer.checkpoint import latest_checkpoint, load_weights

    start = GPTNeoX(model_config("tiny"))
    load_weights(start, latest_checkpoint(tmp_path / "a"))
    train(cfg(tmp_path / "b", init_from=str(latest_checkpoint(tmp_path / "a"))))
    assert read_metrics(tmp_path / "b" / "metrics.jsonl")[0]["loss"] == pytest.approx(first_loss(start), rel=1e-5)


def hub_cache(home: Path, repo: str, revision: str, source: Path) -> str:
    """Lay out ``home`` as huggingface_hub's cache holding ``repo`` at ``revision``: blobs, a
    snapshot of symlinks to them, and refs/REVISION naming the commit."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    root = home / "hub" / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True)
    (root / "refs" / revision).write_text(commit)
    snap = root / "snapshots" / commit
    snap.mkdir(parents=True)
    (root / "blobs").mkdir()
    for f in source.iterdir():
        blob = root / "blobs" / f"blob-{f.name}"
        blob.write_bytes(f.read_bytes())
        os.symlink(os.path.relpath(blob, snap), snap / f.name)
    return commit


RESOLVE = """
import json, sys
from trainer.hf import from_hf, resolve_pretrained
from mixkit.errors import MixkitError
try:
    path = resolve_pretrained(sys.argv[1], sys.argv[2])
except MixkitError as e:
    print(json.dumps({"error": e.message}))
else:
    model = from_hf(path)
    print(json.dumps({"path": str(path), "sum": float(sum(p.double().sum() for p in model.state_dict().values()))}))
"""


def resolve_offline(home: Path, name: str, revision: str) -> dict:
    env = dict(os.environ, HF_HOME=str(home), HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    env.pop("HF_HUB_CACHE", None)
    proc = subprocess.run([sys.executable, "-c", RESOLVE, name, revision], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_hub_id_at_a_revision_from_the_local_cache_offline(tmp_path):
    reference = pytorch_bin_folder(tmp_path / "weights")
    home = tmp_path / "hf-home"
    commit = hub_cache(home, "EleutherAI/pythia-tiny", "step100000", tmp_path / "weights")
    got = resolve_offline(home, "EleutherAI/pythia-tiny", "step100000")
    assert got.get("path", "").endswith(f"snapshots/{commit}"), got
    assert got["sum"] == pytest.approx(float(sum(p.double().sum() for p in reference.state_dict().values())))
    missing = resolve_offline(home, "EleutherAI/pythia-tiny", "step1")
    assert "cannot get EleutherAI/pythia-tiny@step1 from the Hugging Face hub or its cache" in missing["error"]
    assert "\n" not in missing["error"]


def test_refusals(tmp_path):
    assert is_hub_id("EleutherAI/pythia-70m") and not is_hub_id("./runs/x") and not is_hub_id("a/b/c")
    to_hf(GPTNeoX(model_config("tiny")), tmp_path / "hf")
    with pytest.raises(MixkitError, match="a revision .* applies to hub ids only"):
        resolve_pretrained(tmp_path / "hf", "step1")
    with pytest.raises(MixkitError, match="no such folder"):
        resolve_pretrained(tmp_path / "nowhere" / "x" / "y")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "config.json").write_text((tmp_path / "hf" / "config.json").read_text())
    with pytest.raises(MixkitError, match="no weights to load .*pytorch_model.bin"):
        from_hf(tmp_path / "empty")
