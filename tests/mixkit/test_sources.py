"""Sources beyond local files: hub datasets (hf://), fsspec URLs, dataset splits, and prefixes.

Each form is read with a local stand-in (a cached dataset under a temporary HF_HOME,
``file://`` and a local HTTP server for fsspec, ``save_to_disk`` folders) and checked
against the same records read from a local file: the same store, byte for byte.
"""

from __future__ import annotations

import functools
import gzip
import http.server
import json
import threading
from pathlib import Path

import numpy as np
import pytest

from mixkit.errors import MixkitError
from mixkit.readers import DatasetFolder, HubDataset, RemoteFile, expand_sources, parse_hub, read_records
from mixkit.store import TokenStore
from mixkit.tokenize import TokenizeConfig, tokenize
from tests.support import write_jsonl

TRAIN = [{"text": f"train document {i}: " + "word " * (i % 7)} for i in range(300)]
TEST = [{"text": f"test document {i}"} for i in range(50)]


def _tokenize(tmp_path: Path, sources: list[str], name: str = "x", **kw) -> tuple[dict, TokenStore]:
    d = tmp_path / "d"
    kw.setdefault("workers", 1)
    m = tokenize(TokenizeConfig(sources, name, data_dir=str(d), quiet=True, **kw))
    return m, TokenStore.open(d / name)


def _reference(tmp_path: Path, records: list[dict], name: str = "ref") -> TokenStore:
    src = write_jsonl(tmp_path / f"{name}.jsonl", records)
    return _tokenize(tmp_path, [str(src)], name)[1]


def _same_documents(a: TokenStore, b: TokenStore) -> None:
    assert a.num_docs == b.num_docs
    assert a.prefix.with_suffix(".bin").read_bytes() == b.prefix.with_suffix(".bin").read_bytes()


# -- parsing ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "parsed"),
    [
        ("hf://allenai/c4", HubDataset("allenai/c4")),
        ("hf://allenai/c4/en", HubDataset("allenai/c4", "en")),
        ("hf://allenai/c4/en:validation", HubDataset("allenai/c4", "en", "validation")),
        ("hf://openai/gsm8k@e53f048/main:test", HubDataset("openai/gsm8k", "main", "test", "e53f048")),
        ("hf://wikitext:train", HubDataset("wikitext", None, "train")),
    ],
)
def test_hub_source_strings_round_trip(spec, parsed):
    assert parse_hub(spec) == parsed
    assert str(parsed) == spec


@pytest.mark.parametrize("spec", ["hf://", "hf://a/b/c/d", "hf://a/b:", "hf://a//b", "hf://a/b@/c", "hf://a b/c"])
def test_malformed_hub_strings_are_one_line_errors(spec):
    with pytest.raises(MixkitError, match="expected hf://OWNER/NAME|empty split"):
        parse_hub(spec)


# -- hub datasets, streamed -------------------------------------------------------------------------


def test_hub_split_streams_the_same_store_as_the_local_file(tmp_path, hub_cache):
    hub_cache.add_dataset("owner/tiny", {"train": TRAIN, "test": TEST})
    m, store = _tokenize(tmp_path, ["hf://owner/tiny:test"])
    _same_documents(store, _reference(tmp_path, TEST))
    (src,) = m["sources"]
    assert src["dataset"] == "owner/tiny" and src["config"] == "default" and src["split"] == "test"
    assert src["revision"] and "sha256" not in src and src["records"] == len(TEST)


def test_hub_dataset_with_several_splits_needs_one(tmp_path, hub_cache):
    hub_cache.add_dataset("owner/tiny", {"train": TRAIN, "test": TEST})
    with pytest.raises(MixkitError, match=r"hf://owner/tiny: has splits test, train; name one with --split"):
        _tokenize(tmp_path, ["hf://owner/tiny"])
    assert not (tmp_path / "d" / "x.json").exists()
    m, store = _tokenize(tmp_path, ["hf://owner/tiny"], split="train")
    assert store.num_docs == len(TRAIN) and m["sources"][0]["split"] == "train"
    with pytest.raises(MixkitError, match=r"no split 'dev' \(splits: test, train\)"):
        _tokenize(tmp_path, ["hf://owner/tiny:dev"], name="y")


def test_hub_dataset_with_one_split_is_read_as_it_is(tmp_path, hub_cache):
    hub_cache.add_dataset("owner/only", {"train": TEST})
    m, store = _tokenize(tmp_path, ["hf://owner/only"])
    assert store.num_docs == len(TEST) and m["sources"][0]["split"] == "train"


def test_hub_dataset_not_available_offline_is_one_line(tmp_path, hub_cache):
    with pytest.raises(MixkitError, match=r"^hf://owner/absent:train: cannot load from the Hugging Face hub \(") as e:
        _tokenize(tmp_path, ["hf://owner/absent:train"])
    assert "\n" not in str(e.value)


def test_interrupted_hub_run_resumes_to_the_same_bytes(tmp_path, hub_cache, monkeypatch):
    """A run stopped after a few checkpoints restarts where it stopped (the stream's order is stable)."""
    from mixkit import readers
    from mixkit.store import StoreWriter

    hub_cache.add_dataset("owner/tiny", {"train": TRAIN, "test": TEST})
    ref = _reference(tmp_path, TRAIN)
    calls = {"n": 0}
    add = StoreWriter.add_packed

    def interrupted(self, tokens, lengths):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        add(self, tokens, lengths)

    monkeypatch.setattr(StoreWriter, "add_packed", interrupted)
    kw = {"split": "train", "batch_bytes": 500, "checkpoint_seconds": 0.0}
    with pytest.raises(KeyboardInterrupt):
        _tokenize(tmp_path, ["hf://owner/tiny"], **kw)
    state = json.loads((tmp_path / "d" / "x.tokenize-state.json").read_text())
    assert state["position"][1] > 0, "stopped inside the dataset, after a checkpoint"
    monkeypatch.setattr(StoreWriter, "add_packed", add)
    monkeypatch.setattr(readers, "_HUB_BUILDERS", {})  # as a new process would
    m, store = _tokenize(tmp_path, ["hf://owner/tiny"], **kw)
    assert m["resumed"]
    _same_documents(store, ref)


# -- fsspec URLs ----------------------------------------------------------------------------------


def test_file_url_gives_the_same_store_as_the_path(tmp_path):
    import zstandard

    raw = b"".join(json.dumps(r).encode() + b"\n" for r in TRAIN)
    (tmp_path / "a.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(raw))
    (tmp_path / "b.jsonl.gz").write_bytes(gzip.compress(raw))
    for name in ("a.jsonl.zst", "b.jsonl.gz"):
        url = (tmp_path / name).as_uri()
        m, store = _tokenize(tmp_path, [url], name=name.split(".")[0])
        _same_documents(store, _reference(tmp_path, TRAIN, name=f"ref-{name.split('.')[0]}"))
        assert m["sources"][0]["path"] == url and m["sources"][0]["ukey"] and m["sources"][0]["bytes"] > 0


def test_file_url_glob_and_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    d = tmp_path / "in"
    d.mkdir()
    pq.write_table(pa.Table.from_pylist(TRAIN[:100]), d / "p1.parquet", row_group_size=30)
    pq.write_table(pa.Table.from_pylist(TRAIN[100:]), d / "p2.parquet", row_group_size=30)
    sources = expand_sources([f"{d.as_uri()}/p*.parquet"])
    assert sources == [RemoteFile((d / "p1.parquet").as_uri()), RemoteFile((d / "p2.parquet").as_uri())]
    _, store = _tokenize(tmp_path, [f"{d.as_uri()}/p*.parquet"])
    _same_documents(store, _reference(tmp_path, TRAIN))


def test_url_failures_are_one_line(tmp_path):
    missing = (tmp_path / "none.jsonl").as_uri()
    with pytest.raises(MixkitError, match=f"input {missing} does not exist"):
        expand_sources([missing])
    with pytest.raises(MixkitError, match="no input files match"):
        expand_sources([f"{tmp_path.as_uri()}/*.jsonl"])
    with pytest.raises(MixkitError, match="not a URL fsspec can read"):
        expand_sources(["nosuchprotocol://bucket/x.jsonl"])
    with pytest.raises(MixkitError, match=r"is a directory"):
        expand_sources([tmp_path.as_uri()])


@pytest.fixture
def http_root(tmp_path):
    """A local HTTP server over a folder (fsspec's HTTP file system is the one https:// uses)."""
    pytest.importorskip("aiohttp")
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def test_http_url_gives_the_same_store_as_the_path(tmp_path, http_root):
    root, base = http_root
    (root / "c.jsonl.gz").write_bytes(gzip.compress(b"".join(json.dumps(r).encode() + b"\n" for r in TEST)))
    m, store = _tokenize(tmp_path, [f"{base}/c.jsonl.gz"])
    _same_documents(store, _reference(tmp_path, TEST))
    assert m["sources"][0]["records"] == len(TEST)
    with pytest.raises(MixkitError, match=f"input {base}/absent.jsonl does not exist"):
        expand_sources([f"{base}/absent.jsonl"])


def test_unreachable_host_and_missing_backend_are_one_line():
    pytest.importorskip("aiohttp")
    with pytest.raises(MixkitError, match=r"^https://127\.0\.0\.1:9/x\.jsonl: cannot reach \("):
        expand_sources(["https://127.0.0.1:9/x.jsonl"])
    try:
        import gcsfs  # noqa: F401
    except ImportError:
        with pytest.raises(MixkitError, match=r"^gs://bucket/x\.jsonl: reading gs:// URLs needs a package that is not installed"):
            expand_sources(["gs://bucket/x.jsonl"])


# -- datasets folders: splits are never merged ------------------------------------------------------------


@pytest.fixture
def dataset_dict(tmp_path) -> Path:
    import datasets

    folder = tmp_path / "dd"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(TRAIN), "test": datasets.Dataset.from_list(TEST)}).save_to_disk(str(folder))
    return folder


def test_dataset_dict_without_a_split_is_refused(tmp_path, dataset_dict):
    with pytest.raises(MixkitError, match=r"dd: has splits test, train; name one with --split or .*dd:SPLIT \(splits are never merged\)"):
        _tokenize(tmp_path, [str(dataset_dict)])
    assert not (tmp_path / "d" / "x.json").exists()


def test_dataset_dict_split_by_option_or_in_the_source(tmp_path, dataset_dict):
    m, store = _tokenize(tmp_path, [str(dataset_dict)], split="test")
    _same_documents(store, _reference(tmp_path, TEST))
    assert m["sources"][0]["split"] == "test" and m["split"] == "test"
    m, store = _tokenize(tmp_path, [f"{dataset_dict}:train"], name="y")
    assert store.num_docs == len(TRAIN) and m["sources"][0]["path"] == f"{dataset_dict}:train"
    assert expand_sources([f"{dataset_dict}:train"]) == [DatasetFolder(dataset_dict, "train")]
    with pytest.raises(MixkitError, match=r"no split 'dev'"):
        list(read_records(DatasetFolder(dataset_dict, "dev")))


def test_a_split_named_for_a_plain_dataset_must_match(tmp_path):
    import datasets

    folder = tmp_path / "plain"
    datasets.Dataset.from_list(TEST).save_to_disk(str(folder))
    assert sum(1 for _ in read_records(folder, split="train")) == len(TEST), "a job-wide split does not apply"
    with pytest.raises(MixkitError, match="holds one dataset without splits, not the split 'train'"):
        list(read_records(DatasetFolder(folder, "train")))


# -- a deterministic prefix: --max-docs and --max-tokens --------------------------------------------------------


MIXED = [{"text": f"doc {i} " + "x " * (i % 11)} if i % 13 else {"text": "   "} for i in range(240)]
MIXED[50] = {"body": "no text field"}


@pytest.mark.parametrize("max_docs", [1, 7, 60, 150, 221, 10_000])
def test_max_docs_is_the_first_documents(tmp_path, max_docs):
    src = write_jsonl(tmp_path / "m.jsonl", MIXED)
    full = _tokenize(tmp_path, [str(src)], name="full", on_error="skip", batch_bytes=300)[1]
    m, store = _tokenize(tmp_path, [str(src)], on_error="skip", batch_bytes=300, max_docs=max_docs)
    n = min(max_docs, full.num_docs)
    assert store.num_docs == n
    assert [d.tolist() for d in store] == [full[i].tolist() for i in range(n)]
    # The counts are of the records read up to the last document kept.
    doc_records = [i for i, r in enumerate(MIXED, 1) if r.get("text", "").strip()]
    records = doc_records[n - 1] if n < full.num_docs else len(MIXED)
    assert m["sources"][0]["records"] == records
    assert m["skipped"]["empty"] == sum(1 for r in MIXED[:records] if "text" in r and not r["text"].strip())
    assert m["skipped"].get("missing field", 0) == (1 if records > 50 else 0)
    assert m["limit"] == {"max_docs": max_docs, "max_tokens": None, "reached": n < full.num_docs or max_docs == n}


@pytest.mark.parametrize("max_tokens", [5, 100, 777, 2000, 10**7])
def test_max_tokens_is_the_longest_prefix_within_the_budget(tmp_path, max_tokens):
    src = write_jsonl(tmp_path / "m.jsonl", TRAIN)
    full = _tokenize(tmp_path, [str(src)], name="full", batch_bytes=400)[1]
    lengths = np.array([len(d) for d in full])
    n = int(np.searchsorted(np.cumsum(lengths), max_tokens, side="right"))
    if n == 0:
        with pytest.raises(MixkitError, match="no documents"):
            _tokenize(tmp_path, [str(src)], batch_bytes=400, max_tokens=max_tokens)
        return
    m, store = _tokenize(tmp_path, [str(src)], batch_bytes=400, max_tokens=max_tokens)
    assert store.num_docs == n and store.num_tokens <= max_tokens
    assert [d.tolist() for d in store] == [full[i].tolist() for i in range(n)]
    assert m["sources"][0]["records"] == n


def test_limits_with_encoder_processes_cut_at_the_same_document(tmp_path):
    """With batches in flight in worker processes, the cut is where one process puts it."""
    src = write_jsonl(tmp_path / "m.jsonl", TRAIN)
    for kw in ({"max_tokens": 777}, {"max_docs": 60}):
        one = _tokenize(tmp_path, [str(src)], name="one", batch_bytes=400, overwrite=True, **kw)[1]
        two = _tokenize(tmp_path, [str(src)], name="two", batch_bytes=400, overwrite=True, workers=2, **kw)[1]
        assert two.manifest["encoder"]["name"] == "fast", "the process pool is in use"
        _same_documents(two, one)


def test_max_docs_stops_reading_a_long_stream(tmp_path, hub_cache):
    hub_cache.add_dataset("owner/tiny", {"train": TRAIN})
    read = {"n": 0}
    from mixkit import readers

    original = readers.read_hub

    def counting(*args, **kwargs):
        for record in original(*args, **kwargs):
            read["n"] += 1
            yield record

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(readers, "read_hub", counting)
        m, store = _tokenize(tmp_path, ["hf://owner/tiny"], max_docs=10)
    assert store.num_docs == 10 and read["n"] == 10
    _same_documents(store, _reference(tmp_path, TRAIN[:10]))


def test_a_local_folder_never_stands_in_for_a_hub_dataset(tmp_path, hub_cache, monkeypatch):
    hub_cache.add_dataset("owner/tiny", {"train": TRAIN})
    (tmp_path / "owner" / "tiny").mkdir(parents=True)
    write_jsonl(tmp_path / "owner" / "tiny" / "train.jsonl", TEST)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(MixkitError, match="a local folder owner/tiny shadows the hub dataset"):
        _tokenize(tmp_path, ["hf://owner/tiny"])
