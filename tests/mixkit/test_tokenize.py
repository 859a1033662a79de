"""`mixkit tokenize`: round trips, formats, determinism, shards, bad input."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mixkit.errors import MixkitError
from mixkit.presets import TextSpec
from mixkit.readers import Record
from mixkit.store import TokenStore
from mixkit.tokenize import TokenizeConfig, tokenize
from tests.support import run_cli, run_cli_fail, write_jsonl

RECORDS = [
    {"question": "What is 2+2?", "answer": "It is 4.\n#### 4"},
    {"question": "Ünïcödé — ok?", "answer": "yes ✓ 🎉"},
    {"question": "Tabs\tand <|endoftext|> inside", "answer": "  spaces  "},
    {"question": "Last", "answer": "one"},
] * 5


def test_round_trip_decodes_to_the_documents(tmp_path, tokenizer_path):
    from tokenizers import Tokenizer

    src = write_jsonl(tmp_path / "g.jsonl", RECORDS)
    m = tokenize(TokenizeConfig([str(src)], "g", TextSpec(preset="gsm8k"), data_dir=str(tmp_path / "d"), quiet=True))
    assert m["documents"] == len(RECORDS)
    store = TokenStore.open(tmp_path / "d" / "g")
    tok = Tokenizer.from_file(str(tokenizer_path))
    spec = TextSpec(preset="gsm8k")
    for rec, doc in zip(RECORDS, store):
        assert doc[-1] == 0 and (doc[:-1] != 0).all(), "exactly one EOS, at the end"
        assert tok.decode(doc[:-1].tolist(), skip_special_tokens=False) == spec.text(Record(rec, "x"))


def test_bundled_sample_round_trip(tmp_path, samples_dir, tokenizer_path):
    from tokenizers import Tokenizer

    m = tokenize(TokenizeConfig([str(samples_dir / "math.jsonl.gz")], "math", TextSpec(preset="math"), data_dir=str(tmp_path), quiet=True))
    store = TokenStore.open(tmp_path / "math")
    assert store.num_docs == m["documents"] == 1000
    tok = Tokenizer.from_file(str(tokenizer_path))
    with gzip.open(samples_dir / "math.jsonl.gz", "rt") as f:
        first = json.loads(f.readline())
    assert tok.decode(store[0][:-1].tolist()) == f"Problem: {first['problem']}\nSolution: {first['solution']}"


def _all_formats(tmp_path: Path, records) -> dict[str, Path]:
    import pyarrow as pa
    import pyarrow.parquet as pq
    import zstandard

    d = tmp_path / "formats"
    d.mkdir()
    paths = {
        "jsonl": write_jsonl(d / "r.jsonl", records),
        "gz": write_jsonl(d / "r.jsonl.gz", records, gzip.open),
    }
    raw = (d / "r.jsonl").read_bytes()
    (d / "r.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(raw))
    paths["zst"] = d / "r.jsonl.zst"
    (d / "r.json").write_text(json.dumps(records, ensure_ascii=False, indent=1))
    paths["json"] = d / "r.json"
    pq.write_table(pa.Table.from_pylist(records), d / "r.parquet", row_group_size=3)
    paths["parquet"] = d / "r.parquet"
    import datasets

    datasets.Dataset.from_list(records).save_to_disk(str(d / "hf"))
    paths["hf"] = d / "hf"
    return paths


def test_every_format_gives_the_same_store(tmp_path):
    paths = _all_formats(tmp_path, RECORDS)
    fingerprints = {}
    for fmt, path in paths.items():
        m = tokenize(TokenizeConfig([str(path)], "x", TextSpec(template="{question}\n{answer}"), data_dir=str(tmp_path / fmt), quiet=True))
        fingerprints[fmt] = m["fingerprint"]
        assert m["documents"] == len(RECORDS)
    assert len(set(fingerprints.values())) == 1, fingerprints


def test_json_array_streams_across_chunk_boundaries(tmp_path):
    from mixkit.readers import read_json_array

    recs = [{"text": "x" * (i * 7 % 50), "n": i * 1.5} for i in range(200)]
    path = tmp_path / "a.json"
    path.write_text(json.dumps(recs))
    got = [r.fields for r in read_json_array(path, chunk_size=17)]
    assert got == recs


def test_txt_per_file_and_per_line(tmp_path):
    (tmp_path / "a.txt").write_text("first doc\nstill first\n")
    (tmp_path / "b.txt").write_text("second doc\n\nthird line\n")
    m = tokenize(TokenizeConfig([str(tmp_path / "*.txt")], "files", data_dir=str(tmp_path / "d"), quiet=True))
    assert m["documents"] == 2
    m = tokenize(TokenizeConfig([str(tmp_path / "*.txt")], "lines", lines=True, data_dir=str(tmp_path / "d"), quiet=True))
    assert m["documents"] == 4 and m["skipped"]["empty"] == 1


def test_megatron_reads_a_tokenized_store(tmp_path, samples_dir):
    indexed = pytest.importorskip("megatron.core.datasets.indexed_dataset")
    tokenize(TokenizeConfig([str(samples_dir / "code.jsonl.gz")], "code", TextSpec(preset="code"), data_dir=str(tmp_path), quiet=True))
    ours = TokenStore.open(tmp_path / "code")
    theirs = indexed.IndexedDataset(str(tmp_path / "code"), mmap=True)
    assert len(theirs) == len(ours)
    for i in range(len(ours)):
        np.testing.assert_array_equal(theirs[i], ours[i])


def _cli_subprocess(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli.mixkit_cli", *args], capture_output=True, text=True, **kw)


def test_same_bytes_whatever_the_workers(tmp_path, samples_dir):
    digests = set()
    for workers in (1, 2):
        d = tmp_path / f"w{workers}"
        r = _cli_subprocess("tokenize", str(samples_dir / "qa.jsonl.gz"), "--name", "qa", "--preset", "qa",
                            "--workers", str(workers), "--data-dir", str(d), "--quiet", "--batch-bytes", "20000")
        assert r.returncode == 0, r.stderr
        digests.add((d / "qa.bin").read_bytes() + (d / "qa.idx").read_bytes())
    assert len(digests) == 1


def test_shards_merge_to_the_single_run(tmp_path):
    srcs = []
    for i in range(5):
        recs = [{"text": f"file {i} doc {j} " + "word " * (i + j)} for j in range(7 + i)]
        srcs.append(str(write_jsonl(tmp_path / f"part{i}.jsonl", recs)))
    d = tmp_path / "d"
    run_cli("tokenize", *srcs, "--name", "all", "--data-dir", str(d), "--quiet")
    parts = []
    for k in range(3):
        run_cli("tokenize", *srcs, "--name", f"s{k}", "--num-shards", "3", "--shard-index", str(k), "--data-dir", str(d), "--quiet")
        parts.append(f"s{k}")
    # Any order of the parts: the shard metadata puts documents back in source order.
    run_cli("merge", "merged", *reversed(parts), "--data-dir", str(d))
    for ext in (".bin", ".idx"):
        assert (d / f"merged{ext}").read_bytes() == (d / f"all{ext}").read_bytes()
    merged, single = TokenStore.open(d / "merged"), TokenStore.open(d / "all")
    assert merged.fingerprint == single.fingerprint
    assert merged.manifest["sources"] == single.manifest["sources"]


def test_holdout_is_disjoint_and_deterministic(tmp_path):
    recs = [{"text": f"document number {i}"} for i in range(40)]
    src = write_jsonl(tmp_path / "r.jsonl", recs)
    fps = []
    for run in range(2):
        d = tmp_path / f"d{run}"
        tokenize(TokenizeConfig([str(src)], "c4", holdout_docs=7, holdout_seed=3, data_dir=str(d), quiet=True))
        train, hold = TokenStore.open(d / "c4"), TokenStore.open(d / "c4-holdout")
        assert len(train) == 33 and len(hold) == 7
        seen = {tuple(x) for x in train}
        assert not seen & {tuple(x) for x in hold}
        fps.append((train.fingerprint, hold.fingerprint))
    assert fps[0] == fps[1]


def test_existing_store_needs_overwrite(tmp_path):
    """Another job for an existing name is refused; the same job again has nothing to do
    (more in tests/mixkit/test_rerun.py)."""
    src = write_jsonl(tmp_path / "r.jsonl", [{"text": "a"}])
    d = str(tmp_path / "d")
    run_cli("tokenize", str(src), "--name", "x", "--data-dir", d, "--quiet")
    assert "nothing to do" in run_cli("tokenize", str(src), "--name", "x", "--data-dir", d, "--quiet")
    out = run_cli_fail("tokenize", str(src), "--name", "x", "--data-dir", d, "--quiet", "--no-eos")
    assert "already exists" in out and "--overwrite" in out
    run_cli("tokenize", str(src), "--name", "x", "--data-dir", d, "--quiet", "--overwrite")


def _word_tokenizer(tmp_path: Path, vocab_size: int) -> Path:
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit

    vocab = {"<|endoftext|>": 0, "[UNK]": 1, **{f"w{i}": i for i in range(2, vocab_size)}}
    tok = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = WhitespaceSplit()
    path = tmp_path / f"words{vocab_size}.json"
    tok.save(str(path))
    return path


@pytest.mark.parametrize(("vocab", "dtype"), [(65536, "uint16"), (65537, "int32")])
def test_dtype_at_the_uint16_boundary(tmp_path, vocab, dtype):
    tok = _word_tokenizer(tmp_path, vocab)
    src = write_jsonl(tmp_path / "r.jsonl", [{"text": f"w2 w{vocab - 1} w3"}])
    m = tokenize(TokenizeConfig([str(src)], "x", tokenizer=str(tok), data_dir=str(tmp_path / "d"), quiet=True))
    assert m["dtype"] == dtype
    store = TokenStore.open(tmp_path / "d" / "x")
    assert store[0].tolist() == [2, vocab - 1, 3, 0], "the largest id survives, no truncation"


def test_local_dataset_folder_of_data_files(tmp_path):
    folder = tmp_path / "my_dataset"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", [{"text": f"train doc {i}"} for i in range(4)])
    m = tokenize(TokenizeConfig([str(folder)], "local", data_dir=str(tmp_path / "d"), quiet=True))
    assert m["documents"] == 4


def test_info_checks_the_files_and_list_shows_the_stores(tmp_path):
    src = write_jsonl(tmp_path / "r.jsonl", [{"text": "some text"}, {"text": "more text"}])
    d = str(tmp_path / "d")
    run_cli("tokenize", str(src), "--name", "x", "--data-dir", d, "--quiet")
    out = run_cli("info", "x", "--data-dir", d)
    assert "documents        2" in out and "ok (files match the manifest)" in out
    assert "x " in run_cli("list", "--data-dir", d)
    bin_path = tmp_path / "d" / "x.bin"
    data = bytearray(bin_path.read_bytes())
    data[0] ^= 0xFF  # same size, other content
    bin_path.write_bytes(bytes(data))
    assert "fingerprint differs" in run_cli_fail("info", "x", "--data-dir", d)


@pytest.mark.parametrize("table, message", [
    ({"name": "c4"}, "[corpora.c4] sources: missing (required)"),
    ({"sources": [], "name": "c4"}, "[corpora.c4] sources: no input sources given"),
    ({"sources": ["a"], "name": "a/b"}, "[corpora.c4] name: 'a/b' is not a valid store name"),
    ({"sources": ["a"], "name": "c4", "on_error": "ignore"}, "[corpora.c4] on_error: expected one of 'raise', 'skip'"),
    ({"sources": ["a"], "name": "c4", "workers": 0}, "[corpora.c4] workers: must be at least 1"),
    ({"sources": ["a"], "name": "c4", "num_shards": 2, "holdout_docs": 5}, "[corpora.c4] holdout_docs: applies to a whole corpus"),
    ({"sources": ["a"], "name": "c4", "text": {"preset": "c4", "field": "x"}}, "[corpora.c4.text] preset: give only one of"),
    ({"sources": ["a"], "name": "c4", "text": {"preset": "c5"}}, "[corpora.c4.text] preset: unknown preset 'c5'"),
    ({"sources": ["a"], "name": "c4", "text": {"template": "no fields"}}, "[corpora.c4.text] template: 'no fields' names no field"),
    ({"sources": ["a"], "name": "c4", "batch_bytes": "big"}, "[corpora.c4] batch_bytes: expected an integer"),
])
def test_config_from_a_table_is_checked_whole_and_located(table, message):
    from mixkit.config import ConfigError, Where, from_table

    with pytest.raises(ConfigError) as e:
        from_table(TokenizeConfig, table, Where("corpora.toml", "corpora.c4"))
    assert e.value.message.startswith("corpora.toml: ") and message in e.value.message


def test_config_from_a_table_builds_what_the_constructor_builds():
    from mixkit.config import from_table

    cfg = from_table(TokenizeConfig, {"sources": ["a.jsonl"], "name": "c4", "text": {"preset": "c4"}, "checkpoint_seconds": 2})
    assert cfg == TokenizeConfig(["a.jsonl"], "c4", TextSpec(preset="c4"), checkpoint_seconds=2.0)


def test_no_holdout_on_a_shard_is_the_library_rule(tmp_path):
    src = write_jsonl(tmp_path / "r.jsonl", [{"text": "a"}])
    out = run_cli_fail("tokenize", str(src), "--name", "x", "--num-shards", "2", "--holdout-docs", "3", "--data-dir", str(tmp_path))
    assert "holdout_docs: applies to a whole corpus: give it to `mixkit merge`, not to a shard" in out
    with pytest.raises(MixkitError, match="not to a shard"):
        TokenizeConfig([str(src)], "x", num_shards=2, holdout_docs=3)
