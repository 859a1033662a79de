"""A finished ``tokenize``, ``merge`` or ``build-mix`` run again unchanged has nothing to do.

The output in place records the job that made it (a store's ``job_sha256``, a merge's
``merged_from`` and split, a mix's plan and input fingerprints): the same job again exits 0
with one line and rewrites nothing; any difference (an option, a source's bytes, a part, the
plan, an input store) keeps today's "already exists ... --overwrite" refusal, and
``--overwrite`` still rebuilds.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cli.mixkit_cli import main
from mixkit import integrity
from mixkit.errors import MixkitError
from mixkit.mix import MixStream
from mixkit.mix.build import build_mix, build_or_find_mix
from mixkit.mix.plan import MixPlan, Phase
from mixkit.store import StoreFiles, TokenStore
from mixkit.tokenize import TokenizeConfig, job_sha256, tokenize
from tests.support import random_docs, run_cli, run_cli_fail, write_jsonl


def _snapshot(paths: list[Path]) -> dict[str, tuple[bytes, int, int]]:
    """Bytes, modification time (ns) and inode of each file: a rewrite changes one of them."""
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns, p.stat().st_ino) for p in paths}


def _store_files(d: Path, *names: str) -> list[Path]:
    return [d / f"{n}{ext}" for n in names for ext in (".bin", ".idx", ".json")]


def _listing(d: Path) -> list[str]:
    """The folder's files, the verified stamps (written by any reader that checks a store) aside."""
    return sorted(p.name for p in d.iterdir() if not p.name.endswith(".verified"))


def _corpus(path: Path, n: int = 30, word: str = "words") -> Path:
    return write_jsonl(path, [{"text": f"document {i} " + f"{word} in a row " * (3 + i % 7)} for i in range(n)])


def _tokenize_args(src: Path, d: Path, *extra: str) -> list[str]:
    return ["tokenize", str(src), "--name", "w", "--data-dir", str(d), "--quiet", "--encoder", "hf", "--workers", "1", *extra]


# -- tokenize ----------------------------------------------------------------------------------


@pytest.mark.parametrize("holdout", [0, 5])
def test_tokenize_identical_rerun_does_nothing(tmp_path, holdout):
    src = _corpus(tmp_path / "a.jsonl")
    d = tmp_path / "d"
    extra = ["--holdout-docs", str(holdout)] if holdout else []
    run_cli(*_tokenize_args(src, d, *extra))
    names = ["w", "w-holdout"] if holdout else ["w"]
    before, listing = _snapshot(_store_files(d, *names)), _listing(d)
    out = run_cli(*_tokenize_args(src, d, *extra))
    what = "stores 'w' and 'w-holdout' are" if holdout else "store 'w' is"
    assert out == f"{what} already built from these inputs; nothing to do\n"
    assert _snapshot(_store_files(d, *names)) == before
    assert _listing(d) == listing


def test_tokenize_identity_is_the_bytes_not_the_modification_time(tmp_path):
    src = _corpus(tmp_path / "a.jsonl")
    d = tmp_path / "d"
    run_cli(*_tokenize_args(src, d))
    before = _snapshot(_store_files(d, "w"))
    os.utime(src, ns=(src.stat().st_atime_ns, src.stat().st_mtime_ns + 5_000_000_000))  # touched, same bytes
    assert "already built" in run_cli(*_tokenize_args(src, d))
    # Same size, same modification time, other bytes: a different job.
    stat = src.stat()
    text = src.read_text()
    src.write_text(text.replace("words", "wordz"))
    os.utime(src, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert src.stat().st_size == stat.st_size and src.stat().st_mtime_ns == stat.st_mtime_ns
    out = run_cli_fail(*_tokenize_args(src, d))
    assert "store 'w' already exists" in out and "(use --overwrite to replace it)" in out
    assert _snapshot(_store_files(d, "w")) == before


@pytest.mark.parametrize(
    "first, second",
    [
        ([], ["--no-eos"]),
        ([], ["--max-docs", "10"]),
        (["--holdout-docs", "5"], ["--holdout-docs", "5", "--holdout-seed", "1"]),
        (["--holdout-docs", "5"], []),
        ([], ["--holdout-docs", "5"]),
    ],
)
def test_tokenize_rerun_with_another_option_still_needs_overwrite(tmp_path, first, second):
    src = _corpus(tmp_path / "a.jsonl")
    d = tmp_path / "d"
    run_cli(*_tokenize_args(src, d, *first))
    before = _snapshot(_store_files(d, "w"))
    out = run_cli_fail(*_tokenize_args(src, d, *second))
    assert "already exists" in out and "--overwrite" in out and "Traceback" not in out
    assert _snapshot(_store_files(d, "w")) == before
    assert not [p for p in d.iterdir() if p.name.endswith((".partial", ".tmp", ".tokenize-state.json"))]


@pytest.mark.parametrize("index", [0, 1])
def test_tokenize_shard_rerun_does_nothing(tmp_path, index):
    """A shard that reads a later part of a file records the file by size and modification time
    (it does not hash the whole file): its rerun compares that, and the first part's the sha256."""
    src = _corpus(tmp_path / "a.jsonl", 40)
    d = tmp_path / "d"
    shard = ["--num-shards", "2", "--shard-index", str(index)]
    run_cli(*_tokenize_args(src, d, *shard))
    recorded = json.loads((d / "w.json").read_text())["sources"][0]
    assert ("sha256" in recorded) == (index == 0)
    before = _snapshot(_store_files(d, "w"))
    assert "nothing to do" in run_cli(*_tokenize_args(src, d, *shard))
    assert _snapshot(_store_files(d, "w")) == before
    assert "already exists" in run_cli_fail(*_tokenize_args(src, d, "--num-shards", "2", "--shard-index", str(1 - index)))


def test_tokenize_other_sources_still_need_overwrite(tmp_path):
    a, b = _corpus(tmp_path / "a.jsonl"), _corpus(tmp_path / "b.jsonl")
    d = tmp_path / "d"
    run_cli(*_tokenize_args(a, d))
    assert "already exists" in run_cli_fail(*_tokenize_args(b, d))  # same bytes, another path: another job


def test_tokenize_overwrite_still_rebuilds(tmp_path):
    src = _corpus(tmp_path / "a.jsonl")
    d = tmp_path / "d"
    run_cli(*_tokenize_args(src, d))
    for p in _store_files(d, "w"):  # dated in the past: a file written anew has a new time (inodes may be reused)
        os.utime(p, ns=(10**18, 10**18))
    before = _snapshot(_store_files(d, "w"))
    out = run_cli(*_tokenize_args(src, d, "--overwrite"))
    assert "nothing to do" not in out and out.startswith("w: 30 documents")
    after = _snapshot(_store_files(d, "w"))
    assert {k: v[0] for k, v in after.items()} == {k: v[0] for k, v in before.items()}, "the same bytes again"
    assert all(after[k][1] != before[k][1] for k in after), "each file written anew"


def test_a_damaged_or_older_store_is_not_taken_for_built(tmp_path):
    """The output must open checked, and a manifest written before stores recorded their job
    (no ``job_sha256``) stays readable but needs ``--overwrite``."""
    src = _corpus(tmp_path / "a.jsonl")
    d = tmp_path / "d"
    run_cli(*_tokenize_args(src, d))
    files = StoreFiles(d / "w")
    manifest = json.loads(files.manifest.read_text())
    older = {k: v for k, v in manifest.items() if k not in ("job_sha256", "manifest_checksum")}
    older["manifest_checksum"] = integrity.manifest_checksum(older)
    files.manifest.write_text(json.dumps(older))
    assert TokenStore.open("w", d).num_docs == 30
    assert "already exists" in run_cli_fail(*_tokenize_args(src, d))
    files.manifest.write_text(json.dumps(manifest))
    with open(files.bin, "r+b") as f:
        f.truncate(files.bin.stat().st_size - 2)
    assert "already exists" in run_cli_fail(*_tokenize_args(src, d))


def test_job_sha256_is_the_recorded_identity(tmp_path):
    """The manifest's ``job_sha256`` names the sources by their bytes: the job description with
    each local file's sha256 and size in place of its modification time."""
    src = _corpus(tmp_path / "a.jsonl")
    m = tokenize(TokenizeConfig([str(src)], "w", data_dir=str(tmp_path / "d"), quiet=True, encoder="hf", workers=1))
    job = {"sources": [], "limit": [None, None]}
    entry = {"index": 0, "path": str(src), "bytes": m["sources"][0]["bytes"], "sha256": m["sources"][0]["sha256"], "documents": 30}
    assert job_sha256(job, [entry]) == job_sha256(job, [{**entry, "documents": 7, "tokens": 1}]), "counts are no identity"
    assert job_sha256(job, [entry]) != job_sha256(job, [{**entry, "sha256": "0" * 64}])
    assert job_sha256(job, [entry]) != job_sha256({**job, "limit": [5, None]}, [entry])
    assert isinstance(m["job_sha256"], str) and len(m["job_sha256"]) == 64
    again = tokenize(TokenizeConfig([str(src)], "w", data_dir=str(tmp_path / "d"), quiet=True, encoder="hf", workers=1))
    assert again["already_built"] and again["fingerprint"] == m["fingerprint"]


# -- merge -------------------------------------------------------------------------------------


@pytest.fixture
def parts(make_store):
    rng = np.random.default_rng(11)
    make_store("p0", random_docs(rng, 20, 1000, 30))
    make_store("p1", random_docs(rng, 25, 1000, 30))


@pytest.mark.parametrize("holdout", [0, 6])
def test_merge_identical_rerun_does_nothing(data_dir, parts, holdout):
    extra = ["--holdout-docs", str(holdout)] if holdout else []
    run_cli("merge", "m", "p0", "p1", "--data-dir", str(data_dir), *extra)
    names = ["m", "m-holdout"] if holdout else ["m"]
    before, listing = _snapshot(_store_files(data_dir, *names)), _listing(data_dir)
    out = run_cli("merge", "m", "p0", "p1", "--data-dir", str(data_dir), *extra)
    what = "stores 'm' and 'm-holdout' are" if holdout else "store 'm' is"
    assert out == f"{what} already merged from these parts; nothing to do\n"
    assert _snapshot(_store_files(data_dir, *names)) == before
    assert _listing(data_dir) == listing


@pytest.mark.parametrize(
    "second",
    [["p1", "p0"], ["p0"], ["p0", "p1", "--holdout-docs", "6"], ["p0", "p1", "--holdout-docs", "6", "--holdout-seed", "2"]],
)
def test_merge_of_other_parts_or_split_still_needs_overwrite(data_dir, parts, second):
    first = ["p0", "p1", "--holdout-docs", "6"] if second[-1] == "2" else ["p0", "p1"]
    run_cli("merge", "m", *first, "--data-dir", str(data_dir))
    before = _snapshot(_store_files(data_dir, "m"))
    out = run_cli_fail("merge", "m", *second, "--data-dir", str(data_dir))
    assert "store 'm' already exists" in out and "--overwrite" in out
    assert _snapshot(_store_files(data_dir, "m")) == before


def test_merge_of_a_changed_part_still_needs_overwrite_and_overwrite_rebuilds(data_dir, parts, make_store):
    run_cli("merge", "m", "p0", "p1", "--data-dir", str(data_dir))
    make_store("p1", random_docs(np.random.default_rng(12), 25, 1000, 30), overwrite=True)  # same name, other content
    before = _snapshot(_store_files(data_dir, "m"))
    assert "already exists" in run_cli_fail("merge", "m", "p0", "p1", "--data-dir", str(data_dir))
    assert _snapshot(_store_files(data_dir, "m")) == before
    out = run_cli("merge", "m", "p0", "p1", "--data-dir", str(data_dir), "--overwrite")
    assert "from 2 parts" in out
    merged = TokenStore.open("m", data_dir)
    assert [e["fingerprint"] for e in merged.manifest["merged_from"]] == [TokenStore.open(p, data_dir).fingerprint for p in ("p0", "p1")]


# -- build-mix ---------------------------------------------------------------------------------


SHAPE = ["--steps", "6", "--seq-len", "8", "--global-batch", "4", "--seed", "3"]


def _build(*args: str):
    return CliRunner().invoke(main, ["build-mix", *args], catch_exceptions=False)


def _mix_snapshot(data_dir: Path, name: str) -> dict[str, tuple[bytes, int, int]]:
    return _snapshot(sorted(p for p in (data_dir / "mixes" / name).iterdir() if p.name != "verified.json"))


def test_build_mix_identical_rerun_does_nothing(data_dir, parts):
    args = ["--base", "p0", "--add", "p1", "--ratio", "0.5", "--start-step", "2", "--name", "x", *SHAPE]
    assert _build(*args).exit_code == 0
    before = _mix_snapshot(data_dir, "x")
    r = _build(*args)
    assert r.exit_code == 0 and r.output == "mix 'x' is already built from this plan and these stores; nothing to do\n"
    assert _mix_snapshot(data_dir, "x") == before
    assert sorted(p.name for p in (data_dir / "mixes").iterdir()) == ["x"]


def test_build_mix_library_says_what_it_did(data_dir, parts):
    plan = MixPlan([Phase(0, {"p0": 1})], steps=4, seq_len=8, global_batch=2, seed=1)
    first = build_or_find_mix(plan, "y", data_dir)
    assert first.already_built is False
    assert build_or_find_mix(plan, "y", data_dir) == (first.path, True)
    assert build_mix(plan, "y", data_dir) == first.path
    with pytest.raises(MixkitError, match="already exists"):
        build_mix(MixPlan([Phase(0, {"p0": 1})], steps=4, seq_len=8, global_batch=2, seed=2), "y", data_dir)


@pytest.mark.parametrize("change", [["--seed", "4"], ["--steps", "5"], ["--allow-repeat"]])
def test_build_mix_with_another_plan_still_needs_overwrite(data_dir, parts, change):
    assert _build("--base", "p0", "--name", "x", *SHAPE).exit_code == 0
    before = _mix_snapshot(data_dir, "x")
    r = CliRunner().invoke(main, ["build-mix", "--base", "p0", "--name", "x", *SHAPE, *change])
    assert r.exit_code == 1 and "mix 'x' already exists" in r.output and "--overwrite" in r.output
    assert _mix_snapshot(data_dir, "x") == before


def test_build_mix_of_a_changed_store_still_needs_overwrite_and_overwrite_rebuilds(data_dir, parts, make_store):
    args = ["--base", "p0", "--name", "x", *SHAPE]
    assert _build(*args).exit_code == 0
    make_store("p0", random_docs(np.random.default_rng(13), 20, 1000, 30), overwrite=True)
    before = _mix_snapshot(data_dir, "x")
    r = CliRunner().invoke(main, ["build-mix", *args])
    assert r.exit_code == 1 and "already exists" in r.output and "Traceback" not in r.output
    assert _mix_snapshot(data_dir, "x") == before
    r = _build(*args, "--overwrite")
    assert r.exit_code == 0 and r.output.startswith("wrote mix 'x'")
    assert MixStream.open("x", data_dir).stores[0].fingerprint == TokenStore.open("p0", data_dir).fingerprint
