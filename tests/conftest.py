"""Shared fixtures: synthetic token stores, the bundled samples, and the larger shared data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

from mixkit.samples import DEFAULT_TOKENIZER, SAMPLES_DIR
from mixkit.store import TokenStore, write_store

settings.register_profile("ci", max_examples=30, deadline=None)
settings.register_profile("dev", max_examples=60, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    """A fresh data directory, also set as ``MIXKIT_DATA_DIR`` for code that reads the env."""
    d = tmp_path / "data"
    d.mkdir()
    monkeypatch.setenv("MIXKIT_DATA_DIR", str(d))
    return d


@pytest.fixture
def make_store(data_dir):
    """``make_store(name, docs, vocab_size=...)`` writes a synthetic store in ``data_dir``."""

    def _make(name: str, docs, vocab_size: int = 1000, **kw) -> TokenStore:
        return write_store(data_dir / name, docs, vocab_size=vocab_size, **kw)

    return _make


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    return SAMPLES_DIR


@pytest.fixture(scope="session")
def tokenizer_path() -> Path:
    return DEFAULT_TOKENIZER


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The larger shared sample corpora; tests that need them skip when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("shared sample data not present")
    return SHARED_DATA


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """A temporary, offline HF_HOME standing in for the hub (see tests/support.py)."""
    from tests.support import offline_hub_cache

    return offline_hub_cache(tmp_path, monkeypatch)
