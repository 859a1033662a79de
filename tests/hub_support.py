"""Local stand-ins for the Hugging Face hub: a temporary HF_HOME with cached datasets and tokenizers.

The test machines have no hub access, so the hub's own libraries are pointed at a cache
built here, offline, exactly where they look for one:

- a dataset ``OWNER/NAME`` loaded once from local data files and stored where ``datasets``
  keeps a hub dataset it has prepared (``HF_DATASETS_CACHE/OWNER___NAME/...``); offline,
  ``datasets`` serves it from there;
- a model repository ``OWNER/NAME`` laid out as ``huggingface_hub`` caches one
  (``HF_HUB_CACHE/models--OWNER--NAME/snapshots/COMMIT/...`` and ``refs/main``).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class HubCache:
    home: Path

    @property
    def hub(self) -> Path:
        return self.home / "hub"

    @property
    def datasets(self) -> Path:
        return self.home / "datasets"

    def add_dataset(self, repo_id: str, splits: dict[str, list[dict]]) -> None:
        """Cache ``repo_id`` with these splits (one JSON-lines file each)."""
        import datasets

        owner, name = repo_id.split("/")
        src = self.home / "sources" / name
        (src / "data").mkdir(parents=True)
        for split, rows in splits.items():
            with open(src / "data" / f"{split}.jsonl", "w", encoding="utf-8") as f:
                for row in rows:
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
        datasets.load_dataset(str(src), cache_dir=str(self.datasets))
        (self.datasets / name).rename(self.datasets / f"{owner}___{name}")
        shutil.rmtree(src)

    def add_model_files(self, repo_id: str, files: dict[str, bytes], commit: str = COMMIT) -> Path:
        """Cache the files of a model repository at ``commit`` (also its ``main``); returns the snapshot."""
        repo = self.hub / f"models--{repo_id.replace('/', '--')}"
        snapshot = repo / "snapshots" / commit
        snapshot.mkdir(parents=True)
        for name, data in files.items():
            (snapshot / name).write_bytes(data)
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / "main").write_text(commit)
        return snapshot


def offline_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> HubCache:
    """An empty HF_HOME, offline, for this process (the libraries' constants) and its children (the env)."""
    import datasets
    import huggingface_hub.constants as hub_constants

    from mixkit import readers

    home = tmp_path / "hf_home"
    home.mkdir()
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", home / "datasets")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(readers, "_HUB_BUILDERS", {})
    datasets.disable_progress_bars()
    return HubCache(home)
