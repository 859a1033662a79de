import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mixkit.errors import MixkitError
from mixkit.store import StoreFiles, StoreWriter, TokenStore, dtype_for_vocab, holdout_name, read_index, write_store


@given(
    lengths=st.lists(st.integers(0, 50), min_size=0, max_size=30),
    vocab=st.sampled_from([2, 300, 65535, 65536, 65537, 200_000]),
    seed=st.integers(0, 2**32 - 1),
)
def test_round_trip(tmp_path_factory, lengths, vocab, seed):
    rng = np.random.default_rng(seed)
    docs = [rng.integers(0, vocab, size=n) for n in lengths]
    d = tmp_path_factory.mktemp("s")
    store = write_store(d / "x", docs, vocab_size=vocab)
    assert len(store) == len(docs)
    assert store.num_tokens == sum(lengths)
    for a, b in zip(docs, store):
        np.testing.assert_array_equal(a, b)
    store.verify()


def test_dtype_boundary():
    assert dtype_for_vocab(65535) == np.uint16
    assert dtype_for_vocab(65536) == np.uint16  # ids 0..65535 all fit
    assert dtype_for_vocab(65537) == np.int32


def test_id_too_large_is_refused(tmp_path):
    with pytest.raises(MixkitError, match="out of range"):
        write_store(tmp_path / "x", [np.array([70000])], vocab_size=100, dtype="uint16")
    assert not list(tmp_path.iterdir())


def test_truncated_bin_is_refused(tmp_path):
    store = write_store(tmp_path / "x", [np.arange(10), np.arange(5)], vocab_size=100)
    with open(store.files.bin, "r+b") as f:
        f.truncate(4)
    with pytest.raises(MixkitError, match="truncated"):
        TokenStore.open(tmp_path / "x")


def test_index_layout_matches_header(tmp_path):
    store = write_store(tmp_path / "x", [np.arange(3), np.arange(4)], vocab_size=100)
    idx = read_index(store.files.idx)
    assert list(idx.lengths) == [3, 4]
    assert list(idx.pointers) == [0, 6]
    assert list(idx.doc_idx) == [0, 1, 2]


def test_existing_store_is_not_overwritten(tmp_path):
    write_store(tmp_path / "x", [np.arange(3)], vocab_size=100)
    with pytest.raises(MixkitError, match="already exists"):
        write_store(tmp_path / "x", [np.arange(4)], vocab_size=100)
    assert TokenStore.open(tmp_path / "x").num_tokens == 3


def test_megatron_reads_our_store(tmp_path):
    pytest.importorskip("torch")
    indexed = pytest.importorskip("megatron.core.datasets.indexed_dataset")
    rng = np.random.default_rng(0)
    docs = [rng.integers(0, 50277, size=int(rng.integers(1, 300))) for _ in range(40)]
    store = write_store(tmp_path / "x", docs, vocab_size=50277)
    ds = indexed.IndexedDataset(str(store.prefix), mmap=True)
    assert len(ds) == len(docs)
    for i, d in enumerate(docs):
        np.testing.assert_array_equal(ds[i], d)
        assert ds[i].dtype == np.uint16


def test_store_files_are_named_in_one_place(tmp_path):
    files = StoreFiles.of("c4", tmp_path)
    assert files == StoreFiles.of(tmp_path / "c4.bin") == StoreFiles.of(str(tmp_path / "c4.json"))
    names = {
        "bin": "c4.bin", "idx": "c4.idx", "manifest": "c4.json", "bin_partial": "c4.bin.partial",
        "lengths_partial": "c4.lengths.partial", "idx_partial": "c4.idx.partial",
        "tokenize_state": "c4.tokenize-state.json", "counts_npy": "c4.counts.npy", "counts_json": "c4.counts.json",
    }
    for attr, name in names.items():
        assert getattr(files, attr) == tmp_path / name, attr
    assert files.holdout.manifest == tmp_path / "c4-holdout.json" and files.holdout.name == holdout_name("c4")
    assert not files.exists()
    store = write_store(files.prefix, [np.arange(3)], vocab_size=100)
    assert files.exists() and store.files == files
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c4.bin", "c4.idx", "c4.json"]


def test_detach_hands_the_output_over_and_frees_the_prefix(tmp_path):
    rng = np.random.default_rng(0)
    docs = [rng.integers(0, 300, size=int(rng.integers(0, 20))) for _ in range(30)]
    writer = StoreWriter(tmp_path / "x", np.uint16)
    writer.add_many(docs)
    detached = writer.detach()
    assert len(detached) == len(docs)
    for got, want in zip(detached.documents(0, len(docs)), docs):
        np.testing.assert_array_equal(got, want)
    again = StoreWriter(tmp_path / "x", np.uint16)  # the prefix is free for a new writer
    again.add_many(detached.documents(5, 10))
    again.finish({"tokenizer": {"sha256": "0" * 64, "vocab_size": 300}})
    detached.delete()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.bin", "x.idx", "x.json"]
    assert [list(d) for d in TokenStore.open(tmp_path / "x")] == [list(d) for d in docs[5:10]]
