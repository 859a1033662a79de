"""Damaged stores and mixes × every command that reads them: refused at open or first use, in one line.

Each damage is done the way it happens: bytes changed in place (same size, so the size
checks pass), index pointers set huge, a mix array entry set to its dtype's maximum, token
ids past the vocabulary, a manifest's ``vocab_size`` edited. The files are aged before the
first open (as a store written earlier would be), so the first open stamps them verified
and the damage comes after the stamp, the hardest case for the stamp to get right.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cli.mixkit_cli import main as mixkit_main
from cli.train_cmds import train as train_cmd
from mixkit import integrity
from mixkit.errors import MixkitError
from mixkit.mix import MixPlan, MixStream, Phase, build_mix
from mixkit.store import StoreFiles, TokenStore, write_store
from tests.support import random_docs

VOCAB = 500


def age(paths, seconds: float = 60.0) -> None:
    """Set the files' mtimes ``seconds`` into the past, as for files written earlier."""
    then = time.time_ns() - int(seconds * 1e9)
    for p in paths:
        os.utime(p, ns=(then, then))


def age_world(data_dir: Path) -> None:
    age(p for p in data_dir.rglob("*") if p.is_file() and not p.name.endswith("verified") and p.name != "verified.json")


@pytest.fixture
def world(data_dir):
    """Stores ``web`` and ``math`` and the mix ``mid`` over them, aged and opened once (stamped)."""
    rng = np.random.default_rng(0)
    write_store(data_dir / "web", random_docs(rng, 60, VOCAB, max_len=80), vocab_size=VOCAB)
    write_store(data_dir / "math", random_docs(rng, 60, VOCAB, max_len=80), vocab_size=VOCAB)
    build_mix(MixPlan([Phase(0, {"web": 0.7, "math": 0.3})], steps=5, seq_len=16, global_batch=4), "mid", data_dir)
    age_world(data_dir)
    MixStream.open("mid", data_dir)  # verifies and stamps stores and mix
    assert StoreFiles(data_dir / "web").verified.exists() and (data_dir / "mixes" / "mid" / "verified.json").exists()
    return data_dir


def one_line_error(output: str) -> str:
    """The output of a refused command: an ``Error:`` line, no traceback; returns that line."""
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, output
    return errors[0]


def refuse(*args: str) -> str:
    result = CliRunner().invoke(mixkit_main, list(args))
    assert result.exit_code != 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return one_line_error(result.output)


def refuse_train(tmp_path: Path, mix: str = "mid", *extra: str) -> str:
    args = ["--set", f"mix={mix}", "--set", f"out_dir={tmp_path / 'run'}", "--set", "model.name=tiny",
            "--set", "micro_batch=2", *extra]
    result = CliRunner().invoke(train_cmd, args)
    assert result.exit_code != 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert not (tmp_path / "run" / "metrics.jsonl").exists(), "nothing was trained"
    return one_line_error(result.output)


def store_commands(data_dir: Path, tmp_path: Path) -> dict:
    d = str(data_dir)
    return {
        "count": lambda: refuse("count", "web", "--data-dir", d),
        "distance": lambda: refuse("distance", "web", "math", "--data-dir", d, "--no-cache"),
        "build-mix": lambda: refuse("build-mix", "--name", "again", "--base", "web", "--add", "math", "--ratio", "0.3",
                                    "--steps", "3", "--seq-len", "16", "--global-batch", "4", "--data-dir", d),
        "train": lambda: refuse_train(tmp_path),
        "info": lambda: refuse("info", "web", "--data-dir", d),
    }


COMMANDS = ["count", "distance", "build-mix", "train", "info"]


def change_tokens_in_place(data_dir: Path) -> None:
    path = data_dir / "web.bin"
    tokens = np.fromfile(path, dtype="<u2")
    tokens[len(tokens) // 2] = (tokens[len(tokens) // 2] + 1) % VOCAB  # still a valid id, same size
    tokens.tofile(path)


def set_pointer_huge(data_dir: Path) -> None:
    path = data_dir / "web.idx"
    raw = bytearray(path.read_bytes())
    n_docs = int(np.frombuffer(raw[18:26], "<u8")[0])
    at = 34 + 4 * n_docs + 8 * 1  # the pointer of document 1
    raw[at : at + 8] = np.array([10**12], "<i8").tobytes()
    path.write_bytes(bytes(raw))


def edit_vocab_size(data_dir: Path) -> None:
    path = data_dir / "web.json"
    manifest = json.loads(path.read_text())
    manifest["tokenizer"]["vocab_size"] = 100
    path.write_text(json.dumps(manifest))


DAMAGES = {"tokens changed in place": (change_tokens_in_place, "web.bin"),
           "idx pointer set huge": (set_pointer_huge, "web.idx"),
           "manifest vocab_size edited": (edit_vocab_size, "web.json")}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("damage", list(DAMAGES))
def test_damaged_store_is_refused_by_every_command(world, tmp_path, damage, command):
    do, named = DAMAGES[damage]
    do(world)
    line = store_commands(world, tmp_path)[command]()
    assert named in line, line


@pytest.mark.parametrize("command", ["count", "distance", "build-mix", "train", "info"])
def test_out_of_vocabulary_ids_are_refused_before_use(data_dir, tmp_path, command):
    rng = np.random.default_rng(1)
    docs = random_docs(rng, 60, VOCAB, max_len=80)
    write_store(data_dir / "math", docs, vocab_size=VOCAB)
    docs[3][0] = VOCAB + 7  # the tokenizer says 500 ids; the data holds 507
    with pytest.raises(MixkitError, match="token id 507"):  # written, then refused by the first reader
        write_store(data_dir / "web", docs, vocab_size=VOCAB)
    if command == "train":  # a mix needs stores that open, so build it first from sound ones, then swap web
        write_store(data_dir / "good", random_docs(rng, 60, VOCAB, max_len=80), vocab_size=VOCAB)
        build_mix(MixPlan([Phase(0, {"good": 1.0})], steps=3, seq_len=16, global_batch=4), "mid", data_dir)
        for suffix in (".bin", ".idx", ".json"):
            os.replace(data_dir / f"web{suffix}", data_dir / f"good{suffix}")
        line = refuse_train(tmp_path)
        assert "token id 507" in line and ("good" in line or "fingerprint" in line), line
        return
    line = store_commands(data_dir, tmp_path)[command]()
    assert "store 'web'" in line and "token id 507" in line and "[0, 500)" in line, line


def test_out_of_vocabulary_ids_of_an_old_store_are_found_by_the_content_check(data_dir):
    """A store written before ``max_token_id`` was recorded: the first content check measures it."""
    docs = random_docs(np.random.default_rng(2), 30, VOCAB)
    docs[0][0] = VOCAB
    write_store(data_dir / "old", docs, vocab_size=VOCAB + 1)
    make_old(data_dir / "old.json", vocab_size=VOCAB)
    with pytest.raises(MixkitError, match=r"store 'old': token id 500 is outside the vocabulary \[0, 500\)"):
        TokenStore.open("old", data_dir)


def test_the_trainer_refuses_ids_its_model_does_not_have(world, tmp_path):
    """The stores' largest id (recorded at finish) against model.vocab_size, before the first step."""
    top = max(TokenStore.open(n, world).max_token_id for n in ("web", "math"))
    line = refuse_train(tmp_path, "mid", "--set", f"model.vocab_size={top}")
    assert "model.vocab_size" in line


# -- mixes ----------------------------------------------------------------------------------------------


def set_to_dtype_max(path: Path, index: int = 3) -> None:
    arr = np.load(path, mmap_mode="r+")
    arr.reshape(-1)[index] = np.iinfo(arr.dtype).max
    arr.flush()
    del arr


MIX_DAMAGES = ["dataset_index.npy", "dataset_sample_index.npy", "d0_doc_idx.npy", "d0_sample_idx.npy", "d0_shuffle_idx.npy"]


@pytest.mark.parametrize("no_verify", [False, True])
@pytest.mark.parametrize("fname", MIX_DAMAGES)
def test_mix_array_at_its_dtype_max_is_refused_at_open(world, tmp_path, fname, no_verify):
    """Found by the structure check, so even with --no-verify (which used to segfault the trainer)."""
    set_to_dtype_max(world / "mixes" / "mid" / fname)
    extra = ("--no-verify",) if no_verify else ()
    args = ["--set", "mix=mid", "--set", f"out_dir={tmp_path / 'run'}", "--set", "model.name=tiny",
            "--set", "micro_batch=2", *extra]
    result = CliRunner().invoke(train_cmd, args)
    assert result.exit_code != 0 and result.exception is None or isinstance(result.exception, SystemExit)
    line = one_line_error(result.output)
    assert f"mid/{fname}" in line, line
    assert ("--no-verify:" in result.output) == no_verify
    assert fname in refuse("inspect", "mid", "--data-dir", str(world))


def test_mix_array_changed_within_range_is_refused_by_its_checksum(world, tmp_path):
    path = world / "mixes" / "mid" / "d0_shuffle_idx.npy"
    arr = np.load(path, mmap_mode="r+")
    arr[0], arr[1] = int(arr[1]), int(arr[0])  # a valid permutation still, but not the one built
    arr.flush()
    del arr
    line = refuse_train(tmp_path)
    assert "d0_shuffle_idx.npy differs from its recorded sha256" in line, line


def test_edited_mix_manifest_is_refused(world, tmp_path):
    path = world / "mixes" / "mid" / "mix.json"
    manifest = json.loads(path.read_text())
    manifest["num_steps"] = 50
    path.write_text(json.dumps(manifest))
    assert "mid/mix.json" in refuse_train(tmp_path)


def test_the_batch_kernel_never_reads_out_of_bounds(world):
    """Damage the structure check cannot see (offsets inside the longest document but past their
    own, dataset ids and sample numbers swapped in memory): the kernel stops with a clear error."""
    path = world / "mixes" / "mid" / "d0_sample_idx.npy"
    arr = np.load(path, mmap_mode="r+")
    longest = int(np.max(TokenStore.open("web", world).doc_lengths))
    arr[:, 1] = longest
    arr.flush()
    del arr
    stream = MixStream.open("mid", world, verify=False)
    with pytest.raises(MixkitError, match=r"mix 'mid' .*global sample \d+ of dataset 'web' points outside"):
        for step in range(stream.num_steps):
            stream.batch(step)

    fresh = MixStream.open("mid", world, verify=False)
    fresh._sn = np.array(fresh._sn)
    fresh._sn[0] = np.iinfo(np.int64).max
    with pytest.raises(MixkitError, match="global sample 0 of dataset"):
        fresh.batch(0)
    with pytest.raises(MixkitError, match="global sample 0 of dataset"):
        fresh.samples(0, 2)
    fresh._ds = np.array(fresh._ds)
    fresh._ds[5] = np.iinfo(np.int16).max
    with pytest.raises(MixkitError, match="global sample [05] of dataset id|global sample 0 of dataset"):
        fresh.batch(1)


# -- stamps and old stores ------------------------------------------------------------------------------


def test_second_open_reads_nothing(world, monkeypatch):
    """The stamp: with the files unchanged, neither the structure nor the content is checked again."""

    def boom(*_a, **_k):
        raise AssertionError("checked again despite a valid stamp")

    monkeypatch.setattr(integrity, "verify_store_content", boom)
    monkeypatch.setattr(integrity, "check_store_structure", boom)
    monkeypatch.setattr(MixStream, "_check_structure", boom)
    monkeypatch.setattr(MixStream, "_check_content", boom)
    stream = MixStream.open("mid", world)
    assert stream.max_token_id is not None
    TokenStore.open("web", world)


def test_a_young_file_is_checked_again(data_dir, monkeypatch):
    """Files changed less than RACY_SECONDS before the check get no stamp (mtime granularity)."""
    write_store(data_dir / "s", random_docs(np.random.default_rng(3), 10, VOCAB), vocab_size=VOCAB)
    TokenStore.open("s", data_dir)
    assert not StoreFiles(data_dir / "s").verified.exists()
    calls = []
    real = integrity.verify_store_content
    monkeypatch.setattr(integrity, "verify_store_content", lambda *a: calls.append(1) or real(*a))
    TokenStore.open("s", data_dir)
    assert calls == [1]


def test_no_verify_skips_the_content_check_and_says_so(world, monkeypatch):
    change_tokens_in_place(world)
    result = CliRunner().invoke(mixkit_main, ["count", "web", "--data-dir", str(world), "--no-verify", "--no-cache"])
    assert result.exit_code == 0, result.output
    assert "--no-verify: stores and mixes are used without checking" in result.output
    assert integrity.content_checks_enabled(), "the switch is reset when the command ends"
    assert "web.bin" in refuse("count", "web", "--data-dir", str(world))


def make_old(manifest_path: Path, **changes) -> None:
    """Turn a manifest into one written before checksums existed (and apply ``changes`` to its tokenizer)."""
    manifest = json.loads(manifest_path.read_text())
    for key in ("checksums", "max_token_id", "manifest_checksum"):
        manifest.pop(key)
    manifest["tokenizer"].update(changes)
    manifest_path.write_text(json.dumps(manifest))


def test_an_old_store_is_checked_against_its_fingerprint(data_dir):
    write_store(data_dir / "old", random_docs(np.random.default_rng(4), 40, VOCAB), vocab_size=VOCAB)
    make_old(data_dir / "old.json")
    age([data_dir / "old.bin", data_dir / "old.idx"])
    store = TokenStore.open("old", data_dir)
    assert store.max_token_id == max(int(d.max()) for d in store)
    assert json.loads(StoreFiles(data_dir / "old").verified.read_text())["max_token_id"] == store.max_token_id
    change_tokens_in_place_named(data_dir / "old.bin")
    with pytest.raises(MixkitError, match=r"old\.bin or old\.idx differs from the store's fingerprint"):
        TokenStore.open("old", data_dir)


def change_tokens_in_place_named(path: Path) -> None:
    tokens = np.fromfile(path, dtype="<u2")
    tokens[0] = (tokens[0] + 1) % VOCAB
    tokens.tofile(path)


def test_checksums_name_the_damaged_chunk(tmp_path, monkeypatch):
    """Chunks of 64 MB in practice; 1 KB here so the store has several."""
    monkeypatch.setattr(integrity, "CHUNK_BYTES", 1024)
    write_store(tmp_path / "s", random_docs(np.random.default_rng(5), 100, VOCAB, max_len=60), vocab_size=VOCAB)
    manifest = json.loads((tmp_path / "s.json").read_text())
    assert manifest["checksums"]["chunk_bytes"] == 1024 and len(manifest["checksums"]["bin"]) > 3
    assert manifest["checksums"]["bin"] == integrity.chunk_checksums(tmp_path / "s.bin", 1024)
    tokens = np.fromfile(tmp_path / "s.bin", dtype="<u2")
    tokens[1500] ^= 1  # byte 3000: the third chunk
    tokens.tofile(tmp_path / "s.bin")
    with pytest.raises(MixkitError, match=r"s\.bin differs from its checksum in bytes \[2048, 3072\)"):
        TokenStore.open(tmp_path / "s")
