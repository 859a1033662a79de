"""``mixkit tokenize`` options for sources and tokenizers from the Hugging Face ecosystem.

``--tokenizer`` with a folder or hub id, ``--split``, ``--max-docs``, ``--max-tokens``, and
the one-line refusal of a ``DatasetDict`` read without a split; the hub is a temporary,
offline HF_HOME (tests/support.py).
"""

from __future__ import annotations

import json

import pytest

from mixkit.samples import DEFAULT_TOKENIZER
from mixkit.store import TokenStore
from tests.support import outputs, run_cli, run_cli_fail, write_jsonl

TRAIN = [{"text": f"train document {i}"} for i in range(300)]
TEST = [{"text": f"test document {i}"} for i in range(50)]


@pytest.fixture
def dataset_dict(tmp_path):
    import datasets

    folder = tmp_path / "dd"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(TRAIN), "test": datasets.Dataset.from_list(TEST)}).save_to_disk(str(folder))
    return folder


def test_dataset_dict_needs_split(tmp_path, dataset_dict):
    d = tmp_path / "d"
    out = run_cli_fail("tokenize", str(dataset_dict), "--name", "x", "--data-dir", str(d), "--quiet")
    assert f"Error: {dataset_dict}: has splits test, train; name one with --split" in out and "Traceback" not in out
    assert outputs(d) == []
    assert "50 documents" in run_cli("tokenize", str(dataset_dict), "--split", "test", "--name", "x", "--data-dir", str(d), "--quiet")
    assert "300 documents" in run_cli("tokenize", f"{dataset_dict}:train", "--name", "y", "--data-dir", str(d), "--quiet")


def test_hub_source_with_split_and_max_docs(tmp_path, hub_cache):
    hub_cache.add_dataset("owner/tiny", {"train": TRAIN, "test": TEST})
    d = tmp_path / "d"
    out = run_cli("tokenize", "hf://owner/tiny", "--split", "train", "--max-docs", "20", "--name", "x", "--data-dir", str(d), "--quiet")
    assert "20 documents" in out
    manifest = json.loads((d / "x.json").read_text())
    assert manifest["sources"][0]["dataset"] == "owner/tiny" and manifest["sources"][0]["records"] == 20
    assert manifest["limit"] == {"max_docs": 20, "max_tokens": None, "reached": True}
    out = run_cli_fail("tokenize", "hf://owner/tiny", "--name", "y", "--data-dir", str(d), "--quiet")
    assert "Error: hf://owner/tiny: has splits test, train" in out


def test_max_tokens_keeps_the_store_within_budget(tmp_path):
    src = write_jsonl(tmp_path / "t.jsonl", TRAIN)
    d = tmp_path / "d"
    run_cli("tokenize", str(src), "--max-tokens", "100", "--name", "x", "--data-dir", str(d), "--quiet")
    store = TokenStore.open(d / "x")
    assert 100 - max(len(doc) for doc in store) < store.num_tokens <= 100
    out = run_cli_fail("tokenize", str(src), "--max-tokens", "0", "--name", "y", "--data-dir", str(d))
    assert "max_tokens: must be at least 1" in out


def test_tokenizer_folder_and_hub_id(tmp_path, hub_cache):
    hub_cache.add_model_files("owner/tok", {"tokenizer.json": DEFAULT_TOKENIZER.read_bytes()})
    folder = tmp_path / "tok"
    folder.mkdir()
    (folder / "tokenizer.json").write_bytes(DEFAULT_TOKENIZER.read_bytes())
    src = write_jsonl(tmp_path / "docs.jsonl", TEST)
    d = str(tmp_path / "d")
    assert "50 documents" in run_cli("tokenize", str(src), "--name", "f", "--tokenizer", str(folder), "--data-dir", d, "--quiet")
    assert "50 documents" in run_cli("tokenize", str(src), "--name", "h", "--tokenizer", "owner/tok", "--data-dir", d, "--quiet")
    out = run_cli_fail("tokenize", str(src), "--name", "n", "--tokenizer", "owner/none", "--data-dir", d, "--quiet")
    assert "Error: tokenizer owner/none: not in the local HF cache" in out and "Traceback" not in out
