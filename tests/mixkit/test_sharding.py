"""Sharding by documents: every shard of one file is non-empty, merge equals one run, for every format."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mixkit.errors import MixkitError
from mixkit.merge import merge
from mixkit.presets import TextSpec
from mixkit.readers import Part, count_records, read_records
from mixkit.sharding import shard_parts
from mixkit.store import StoreWriter, TokenStore
from mixkit.tokenize import TokenizeConfig, tokenize
from tests.support import write_jsonl

SHARD_COUNTS = (1, 2, 3, 7)
# Documents of uneven lengths (so byte ranges and record ranges differ), one blank-ish one.
RECORDS = [{"text": f"document {i}: " + "word " * (i * 7 % 23) + ("ünï ✓" if i % 5 == 0 else "")} for i in range(30)]
RECORDS[11] = {"text": "   "}  # empty after stripping: counted as skipped, not a document


def _write_source(kind: str, d: Path) -> tuple[list[str], dict]:
    """``(source strings, extra TokenizeConfig keys)`` for one source set of the given kind."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import zstandard

    d.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in RECORDS).encode()
    text_lines = "".join(r["text"] + "\n" for r in RECORDS).encode()
    if kind == "jsonl":
        return [str(write_jsonl(d / "r.jsonl", RECORDS))], {}
    if kind == "jsonl.gz":
        (d / "r.jsonl.gz").write_bytes(gzip.compress(lines, mtime=0))
        return [str(d / "r.jsonl.gz")], {}
    if kind == "jsonl.zst":
        (d / "r.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(lines))
        return [str(d / "r.jsonl.zst")], {}
    if kind == "json":
        (d / "r.json").write_text(json.dumps(RECORDS, ensure_ascii=False, indent=1))
        return [str(d / "r.json")], {}
    if kind == "json.gz":
        (d / "r.json.gz").write_bytes(gzip.compress(json.dumps(RECORDS).encode(), mtime=0))
        return [str(d / "r.json.gz")], {}
    if kind == "parquet-row-groups":
        pq.write_table(pa.Table.from_pylist(RECORDS), d / "r.parquet", row_group_size=4)
        return [str(d / "r.parquet")], {}
    if kind == "parquet-one-row-group":
        pq.write_table(pa.Table.from_pylist(RECORDS), d / "r.parquet")
        assert pq.ParquetFile(d / "r.parquet").num_row_groups == 1
        return [str(d / "r.parquet")], {}
    if kind == "txt-lines":
        (d / "r.txt").write_bytes(text_lines)
        return [str(d / "r.txt")], {"lines": True}
    if kind == "txt.zst-lines":
        (d / "r.txt.zst").write_bytes(zstandard.ZstdCompressor().compress(text_lines))
        return [str(d / "r.txt.zst")], {"lines": True}
    if kind == "txt-files":  # one document per file: the file is the unit
        for i, r in enumerate(RECORDS):
            (d / f"doc{i:02d}.txt").write_text(r["text"])
        return [str(d / "*.txt")], {}
    import datasets

    if kind == "datasets-folder":
        datasets.Dataset.from_list(RECORDS).save_to_disk(str(d / "hf"))
        return [str(d / "hf")], {}
    if kind == "datasets-split":
        datasets.DatasetDict({"train": datasets.Dataset.from_list(RECORDS), "test": datasets.Dataset.from_list(RECORDS[:3])}).save_to_disk(str(d / "hf"))
        return [f"{d / 'hf'}:train"], {}
    raise AssertionError(kind)


KINDS = ("jsonl", "jsonl.gz", "jsonl.zst", "json", "json.gz", "parquet-row-groups", "parquet-one-row-group",
         "txt-lines", "txt.zst-lines", "txt-files", "datasets-folder", "datasets-split")


def _tokenize(sources, name, d: Path, **kw) -> dict:
    return tokenize(TokenizeConfig(sources, name, TextSpec(field="text"), data_dir=str(d), quiet=True, on_error="skip", **kw))


@pytest.mark.parametrize("kind", KINDS)
def test_one_source_splits_into_non_empty_shards_that_merge_to_one_run(tmp_path, kind):
    sources, extra = _write_source(kind, tmp_path / "src")
    d = tmp_path / "d"
    single = _tokenize(sources, "all", d, **extra)
    for k in SHARD_COUNTS:
        parts = [_tokenize(sources, f"k{k}s{i}", d, num_shards=k, shard_index=i, **extra) for i in range(k)]
        assert all(p["documents"] > 0 for p in parts), [p["documents"] for p in parts]
        assert sum(p["documents"] for p in parts) == single["documents"]
        # Balanced: no shard holds more than about twice its share of the documents.
        assert max(p["documents"] for p in parts) <= 2 * single["documents"] / k + 2
        merged = merge(f"merged{k}", [f"k{k}s{i}" for i in reversed(range(k))], data_dir=d)
        for ext in (".bin", ".idx"):
            assert (d / f"merged{k}{ext}").read_bytes() == (d / f"all{ext}").read_bytes(), (kind, k)
        assert merged["fingerprint"] == single["fingerprint"]
        if k > 1:  # (one store is merged as a plain concatenation, naming its part)
            assert merged["sources"] == single["sources"]
        assert merged["skipped"] == single["skipped"]
        assert merged["all_sources"] == single["all_sources"]


def test_a_mixed_source_set_with_an_empty_file_merges_to_one_run(tmp_path):
    srcs = []
    for kind in ("jsonl", "jsonl.gz", "parquet-one-row-group", "json"):
        srcs += _write_source(kind, tmp_path / kind)[0]
    (tmp_path / "empty.jsonl").write_bytes(b"")
    srcs.insert(2, str(tmp_path / "empty.jsonl"))
    d = tmp_path / "d"
    single = _tokenize(srcs, "all", d)
    for k in (2, 5):
        parts = [_tokenize(srcs, f"k{k}s{i}", d, num_shards=k, shard_index=i) for i in range(k)]
        assert all(p["documents"] > 0 for p in parts)
        merged = merge(f"m{k}", [f"k{k}s{i}" for i in range(k)], data_dir=d)
        assert (d / f"m{k}.bin").read_bytes() == (d / "all.bin").read_bytes()
        assert (d / f"m{k}.idx").read_bytes() == (d / "all.idx").read_bytes()
        assert merged["sources"] == single["sources"]


@given(
    lengths=st.lists(st.integers(0, 60), min_size=1, max_size=40),
    num_shards=st.integers(1, 9),
    trailing_newline=st.booleans(),
)
def test_byte_ranges_partition_the_lines_in_order(tmp_path_factory, lengths, num_shards, trailing_newline):
    """The lines that start in each shard's byte range, shard after shard, are the file's lines."""
    path = tmp_path_factory.mktemp("lines") / "r.txt"
    data = "\n".join("x" * n for n in lengths) + ("\n" if trailing_newline else "")
    path.write_text(data)
    whole = [r.fields["text"] for r in read_records(path, lines=True)]
    pieces = []
    for i in range(num_shards):
        for part in shard_parts([path], num_shards, i, lines=True):
            pieces += [r.fields["text"] for r in read_records(part.source, lines=True, part=part.part)]
    assert pieces == whole


@given(n=st.integers(1, 50), num_shards=st.integers(2, 9))
def test_record_ranges_partition_a_compressed_file_evenly(tmp_path_factory, n, num_shards):
    path = tmp_path_factory.mktemp("gz") / "r.jsonl.gz"
    path.write_bytes(gzip.compress(b"".join(b'{"text": "d%d"}\n' % i for i in range(n)), mtime=0))
    assert count_records(path) == n
    ranges = [p.part for i in range(num_shards) for p in shard_parts([path], num_shards, i)]
    got = [r.fields["text"] for p in ranges for r in read_records(path, part=p)]
    assert got == [f"d{i}" for i in range(n)]
    sizes = [p.stop - p.start for p in ranges if p is not None] or [n]
    if n >= num_shards:
        assert len(ranges) == num_shards and min(sizes) >= 1 and max(sizes) - min(sizes) <= 1


def test_a_line_starting_exactly_at_the_cut_goes_to_the_later_shard(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_bytes(b'{"text": "a"}\n{"text": "b"}\n')  # 14 bytes each: the cut at 14 is a line start
    first = [r.fields["text"] for r in read_records(path, part=Part("bytes", 0, 14))]
    second = [r.fields["text"] for r in read_records(path, part=Part("bytes", 14, 28))]
    assert (first, second) == (["a"], ["b"])
    origins = [r.origin for r in read_records(path, part=Part("bytes", 14, 28))]
    assert origins == [f"{path}:line at byte 14"]


def test_a_shard_with_no_records_says_so(tmp_path):
    src = write_jsonl(tmp_path / "r.jsonl", [{"text": "only " * 50}, {"text": "b"}])
    with pytest.raises(MixkitError, match="shard 1 of 3 .* holds no records .* use fewer shards"):
        _tokenize([str(src)], "s", tmp_path / "d", num_shards=3, shard_index=1)


def test_merge_refuses_shards_that_miss_a_source(tmp_path):
    from mixkit.merge import _joined_sources, _segments

    srcs = [str(write_jsonl(tmp_path / f"f{i}.jsonl", RECORDS[:5])) for i in range(3)]
    d = tmp_path / "d"
    for i in range(2):
        _tokenize(srcs, f"s{i}", d, num_shards=2, shard_index=i)
    segments = _segments([TokenStore.open(d / "s0"), TokenStore.open(d / "s1")])
    assert [s["documents"] for s in _joined_sources(segments, 3)] == [5, 5, 5]
    with pytest.raises(MixkitError, match="no part of source 0"):
        _joined_sources([seg for seg in segments if seg[3]["index"] != 0], 3)


@pytest.mark.parametrize("kind", ["jsonl", "jsonl.gz", "parquet-row-groups"])
def test_an_interrupted_shard_resumes_byte_identical(tmp_path, kind, monkeypatch):
    sources, extra = _write_source(kind, tmp_path / "src")
    d = tmp_path / "d"
    kw = dict(num_shards=3, shard_index=1, batch_bytes=40, checkpoint_seconds=0, workers=1, **extra)
    ref = _tokenize(sources, "ref", d / "ref", **kw)
    real_add = StoreWriter.add_packed
    calls = {"n": 0}

    def interrupted(self, tokens, lengths):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_add(self, tokens, lengths)

    monkeypatch.setattr(StoreWriter, "add_packed", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _tokenize(sources, "ref", d / "run", **kw)
    monkeypatch.setattr(StoreWriter, "add_packed", real_add)
    assert (d / "run" / "ref.tokenize-state.json").exists()
    resumed = _tokenize(sources, "ref", d / "run", **kw)
    assert resumed["resumed"] is True
    for ext in (".bin", ".idx"):
        assert (d / "run" / f"ref{ext}").read_bytes() == (d / "ref" / f"ref{ext}").read_bytes()
    assert resumed["sources"] == ref["sources"]


def test_unsharded_runs_read_no_parts(tmp_path):
    sources, _ = _write_source("jsonl", tmp_path)
    assert [p.part for p in shard_parts([Path(s) for s in sources], 1, 0)] == [None]
    m = _tokenize(sources, "x", tmp_path / "d")
    assert all("shard_part" not in s for s in m["sources"])


@pytest.mark.parametrize("name", ["r.jsonl", "r.jsonl.zst"])
def test_an_fsspec_url_is_split_like_a_local_file(tmp_path, name):
    sources, _ = _write_source(name.removeprefix("r."), tmp_path / "src")
    url = Path(sources[0]).resolve().as_uri()  # file:///...: read through fsspec
    d = tmp_path / "d"
    single = _tokenize([url], "all", d)
    parts = [_tokenize([url], f"s{i}", d, num_shards=3, shard_index=i) for i in range(3)]
    assert all(p["documents"] > 0 for p in parts)
    merged = merge("m", ["s0", "s1", "s2"], data_dir=d)
    assert merged["fingerprint"] == single["fingerprint"] and merged["sources"] == single["sources"]


@pytest.mark.slow
def test_the_slurm_array_example_shards_and_merges_to_one_run(tmp_path, monkeypatch):
    """examples/slurm/tokenize.sh against a fake Slurm: an array of shards, then the merge after them."""
    import os
    import subprocess
    import sys

    from tests.support import ROOT, fake_slurm

    slurm = fake_slurm(tmp_path, monkeypatch)
    monkeypatch.chdir(tmp_path)
    sources, _ = _write_source("jsonl.gz", tmp_path / "src")
    d = tmp_path / "d"
    env = dict(os.environ, NAME="c4", SOURCES=sources[0], NUM_SHARDS="3", DATA_DIR=str(d), TOKENIZE_ARGS="--field text",
               MIXKIT=f"{sys.executable} -m cli.mixkit_cli")
    result = subprocess.run(["bash", str(ROOT / "examples" / "slurm" / "tokenize.sh")], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    array, merge_job = slurm.jobs
    assert array["options"]["array"] == "0-2" and array["tasks"] == {"0": "COMPLETED", "1": "COMPLETED", "2": "COMPLETED"}
    assert merge_job["dependencies"] == [["afterok", array["id"]]] and merge_job["state"] == "COMPLETED"
    assert f"merge: job {merge_job['id']} → store c4" in result.stdout
    single = _tokenize(sources, "single", tmp_path / "single")
    for ext in (".bin", ".idx"):
        assert (d / f"c4{ext}").read_bytes() == (tmp_path / "single" / f"single{ext}").read_bytes()
    assert json.loads((d / "c4.json").read_text())["sources"] == single["sources"]
    assert sorted(p.name for p in d.iterdir()) == ["c4.bin", "c4.idx", "c4.json"], "the shards are removed after the merge"


def test_hub_datasets_go_whole_to_one_shard_each(tmp_path):
    """A streamed hub dataset has no size to cut: the j-th goes to shard j mod K; local files are still cut."""
    from mixkit.readers import HubDataset

    local = write_jsonl(tmp_path / "r.jsonl", RECORDS)
    sources = [HubDataset("org/a"), local, HubDataset("org/b")]
    got = {i: [(p.index, p.part is not None) for p in shard_parts(sources, 2, i)] for i in range(2)}
    assert got == {0: [(0, False), (1, True)], 1: [(1, True), (2, False)]}
    ranges = [p.part for i in range(2) for p in shard_parts(sources, 2, i) if p.index == 1]
    assert ranges[0].stop == ranges[1].start and ranges[0].start == 0 and ranges[1].stop == local.stat().st_size


def test_only_the_shard_reading_a_file_from_its_start_hashes_it(tmp_path, monkeypatch):
    """Hashing a large file in each of K shards would read it K times: later parts record size and mtime."""
    import mixkit.tokenize as tokenize_module

    src = write_jsonl(tmp_path / "r.jsonl", RECORDS)
    hashed: list[int] = []
    real = tokenize_module.sha256_file

    def counting(path, *a, **kw):
        if Path(path) == src:
            hashed.append(1)
        return real(path, *a, **kw)

    monkeypatch.setattr(tokenize_module, "sha256_file", counting)
    parts = [_tokenize([str(src)], f"s{i}", tmp_path / "d", num_shards=3, shard_index=i) for i in range(3)]
    assert len(hashed) == 1
    assert "sha256" in parts[0]["sources"][0] and all("mtime_ns" in p["sources"][0] for p in parts[1:])
    single = _tokenize([str(src)], "all", tmp_path / "d")
    assert merge("m", ["s0", "s1", "s2"], data_dir=tmp_path / "d")["sources"] == single["sources"]
