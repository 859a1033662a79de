"""``--tokenizer``: a tokenizer.json, a tokenizer folder or a hub id, with the EOS its config names.

The hub is stood in for by a temporary, offline HF_HOME holding a cached repository; a
folder is written by ``transformers``' own ``save_pretrained``. Whatever the form, the
store records the sha256 of the tokenizer.json used and the same ids come out.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from mixkit.errors import MixkitError
from mixkit.samples import DEFAULT_TOKENIZER
from mixkit.store import TokenStore
from mixkit.tokenize import TokenizeConfig, load_tokenizer, tokenize
from mixkit.tokenizer_files import looks_like_repo_id, resolve_tokenizer
from tests.support import COMMIT, write_jsonl

DOCS = [{"text": f"document {i} <|endoftext|> <|padding|> inside"} for i in range(6)]
PADDING_ID = 1  # GPT-NeoX-20B's <|padding|>; <|endoftext|> is 0
NEOX_SHA = hashlib.sha256(DEFAULT_TOKENIZER.read_bytes()).hexdigest()


def _store(tmp_path: Path, tokenizer: str | None, name: str = "x", **kw) -> tuple[dict, TokenStore]:
    src = write_jsonl(tmp_path / "docs.jsonl", DOCS)
    d = tmp_path / "d"
    m = tokenize(TokenizeConfig([str(src)], name, tokenizer=tokenizer, data_dir=str(d), quiet=True, **kw))
    return m, TokenStore.open(d / name)


def _folder(tmp_path: Path, config: dict | None, special: dict | None = None) -> Path:
    folder = tmp_path / "tok"
    folder.mkdir()
    (folder / "tokenizer.json").write_bytes(DEFAULT_TOKENIZER.read_bytes())
    if config is not None:
        (folder / "tokenizer_config.json").write_text(json.dumps(config))
    if special is not None:
        (folder / "special_tokens_map.json").write_text(json.dumps(special))
    return folder


def test_a_folder_is_its_tokenizer_json_with_the_eos_of_its_config(tmp_path):
    folder = _folder(tmp_path, {"eos_token": "<|padding|>"})
    m, store = _store(tmp_path, str(folder))
    _, plain = _store(tmp_path, str(DEFAULT_TOKENIZER), name="plain")
    assert m["tokenizer"]["sha256"] == NEOX_SHA and m["tokenizer"]["source"] == str(folder)
    assert m["eos"] == {"appended": True, "id": PADDING_ID, "token": "<|padding|>"}
    for ours, ref in zip(store, plain):
        assert ours[-1] == PADDING_ID and ref[-1] == 0
        assert ours[:-1].tolist() == ref[:-1].tolist(), "the same ids; special-token text stays plain text"


@pytest.mark.parametrize(
    ("config", "special", "eos"),
    [
        ({"eos_token": {"content": "<|padding|>", "lstrip": False}}, None, "<|padding|>"),  # an AddedToken
        ({"model_max_length": 2048}, {"eos_token": "<|padding|>"}, "<|padding|>"),  # only the map names it
        ({"eos_token": None}, None, "<|endoftext|>"),  # none named: the fallback
        (None, None, "<|endoftext|>"),
    ],
)
def test_eos_is_looked_up_in_the_config_files_in_order(tmp_path, config, special, eos):
    folder = _folder(tmp_path, config, special)
    assert resolve_tokenizer(str(folder)).eos_token == (None if eos == "<|endoftext|>" else eos)
    _, info = load_tokenizer(str(folder))
    assert info.eos_token == eos and info.eos_id == (PADDING_ID if eos == "<|padding|>" else 0)
    _, beside = load_tokenizer(str(folder / "tokenizer.json"))
    assert beside.eos_token == eos, "a file named tokenizer.json reads the config beside it"


def test_a_folder_saved_by_transformers(tmp_path):
    transformers = pytest.importorskip("transformers")
    hf = transformers.PreTrainedTokenizerFast(tokenizer_file=str(DEFAULT_TOKENIZER), eos_token="<|padding|>")
    folder = tmp_path / "saved"
    hf.save_pretrained(str(folder))
    m, store = _store(tmp_path, str(folder))
    assert m["tokenizer"]["sha256"] == hashlib.sha256((folder / "tokenizer.json").read_bytes()).hexdigest()
    assert m["eos"]["token"] == "<|padding|>"
    text = DOCS[0]["text"]
    assert store[0].tolist() == hf(text, add_special_tokens=False, split_special_tokens=True)["input_ids"] + [hf.eos_token_id]


def test_a_hub_id_from_the_local_cache(tmp_path, hub_cache):
    hub_cache.add_model_files("EleutherAI/pythia-70m", {
        "tokenizer.json": DEFAULT_TOKENIZER.read_bytes(),
        "tokenizer_config.json": json.dumps({"eos_token": "<|endoftext|>", "bos_token": "<|endoftext|>"}).encode(),
    })
    m, store = _store(tmp_path, "EleutherAI/pythia-70m")
    _, plain = _store(tmp_path, str(DEFAULT_TOKENIZER), name="plain")
    assert m["tokenizer"]["sha256"] == NEOX_SHA and m["tokenizer"]["source"] == f"EleutherAI/pythia-70m@{COMMIT}"
    assert m["encoder"]["name"] == plain.manifest["encoder"]["name"], "the fast encoder's self-test decides as for the file"
    assert store.prefix.with_suffix(".bin").read_bytes() == plain.prefix.with_suffix(".bin").read_bytes()
    for spec in (f"EleutherAI/pythia-70m@{COMMIT}", "hf://EleutherAI/pythia-70m"):
        assert resolve_tokenizer(spec).json_path.read_bytes() == DEFAULT_TOKENIZER.read_bytes()


def test_hub_eos_comes_from_the_same_snapshot(tmp_path, hub_cache):
    hub_cache.add_model_files("owner/tok", {
        "tokenizer.json": DEFAULT_TOKENIZER.read_bytes(),
        "special_tokens_map.json": json.dumps({"eos_token": {"content": "<|padding|>"}}).encode(),
    })
    m, store = _store(tmp_path, "owner/tok")
    assert m["eos"]["token"] == "<|padding|>" and all(doc[-1] == PADDING_ID for doc in store)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("owner/absent", "tokenizer owner/absent: not in the local HF cache and the hub cannot be reached"),
        ("missing.json", "tokenizer missing.json: no such file or folder"),
        ("./no/such/dir", "tokenizer ./no/such/dir: no such file or folder"),
    ],
)
def test_tokenizers_that_cannot_be_found_are_one_line(tmp_path, hub_cache, spec, message):
    with pytest.raises(MixkitError, match=message) as e:
        load_tokenizer(spec)
    assert "\n" not in str(e.value)


def test_a_folder_without_tokenizer_json_is_refused(tmp_path):
    folder = tmp_path / "slow"
    folder.mkdir()
    (folder / "tokenizer_config.json").write_text("{}")
    with pytest.raises(MixkitError, match="has no tokenizer.json .*save_pretrained"):
        load_tokenizer(str(folder))


def test_an_eos_the_vocabulary_lacks_needs_no_eos(tmp_path):
    folder = _folder(tmp_path, {"eos_token": "</s>"})
    with pytest.raises(MixkitError, match=r"has no </s> token; use --no-eos"):
        _store(tmp_path, str(folder))
    m, store = _store(tmp_path, str(folder), eos=False)
    assert m["eos"] == {"appended": False, "id": None, "token": None}


def test_repo_ids_and_paths_are_told_apart():
    assert looks_like_repo_id("EleutherAI/pythia-70m") and looks_like_repo_id("gpt2") and looks_like_repo_id("a/b@v1.0")
    assert not looks_like_repo_id("tok.json") and not looks_like_repo_id("/abs/tok") and not looks_like_repo_id("a/b/c")

