"""Numba unigram counts against np.bincount, the cache, mixture distributions, and the paper protocol against the released script."""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mixkit
import mixkit.unigram as C
from mixkit.errors import MixkitError
from mixkit.mixture import Mixture
from mixkit.store import write_store
from tests.support import encode_store, random_docs, read_jsonl


def reference_counts(docs, vocab, *, sel=None, cap=None, drop_eos=None):
    """Pure NumPy: bincount of the selected documents, each without its trailing EOS, capped."""
    chosen = [docs[i] for i in (range(len(docs)) if sel is None else sel)]
    parts = []
    for d in chosen:
        d = np.asarray(d)
        if drop_eos is not None and d.size and d[-1] == drop_eos:
            d = d[:-1]
        if cap is not None:
            d = d[:cap]
        parts.append(d)
    flat = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    return np.bincount(flat.astype(np.int64), minlength=vocab)


# -- the kernel --------------------------------------------------------------------------------


@given(
    n=st.integers(0, 5000),
    vocab=st.integers(1, 70000),
    dtype=st.sampled_from(["uint8", "uint16", "int32", "int64"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_histogram_equals_bincount(n, vocab, dtype, seed):
    info = np.iinfo(dtype)
    vocab = min(vocab, int(info.max) + 1)
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, vocab, size=n).astype(dtype)
    got = C.histogram(tokens, vocab)
    assert got.dtype == np.int64 and got.shape == (vocab,)
    np.testing.assert_array_equal(got, np.bincount(tokens.astype(np.int64), minlength=vocab))


@given(seed=st.integers(0, 2**32 - 1), n_ranges=st.integers(0, 40), block=st.integers(1, 50))
def test_histogram_ranges_and_blocking(seed, n_ranges, block):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, 300, size=1000).astype(np.uint16)
    starts = rng.integers(0, 1000, size=n_ranges)
    ends = np.minimum(starts + rng.integers(0, 200, size=n_ranges), 1000)
    expected = np.zeros(300, np.int64)
    for s, e in zip(starts, ends):
        expected += np.bincount(tokens[s:e], minlength=300)
    old = C.BLOCK_TOKENS
    C.BLOCK_TOKENS = block  # force ranges to be batched and long ranges to be cut
    try:
        got = C.histogram(tokens, 300, starts, ends)
    finally:
        C.BLOCK_TOKENS = old
    np.testing.assert_array_equal(got, expected)


@given(seed=st.integers(0, 2**32 - 1), offset=st.integers(0, 7), n=st.integers(0, 5000), n_ranges=st.integers(0, 12))
def test_four_token_uint16_kernel_equals_bincount(seed, offset, n, n_ranges):
    """Tokens read four at a time, a 64-byte line per step: aligned or not, range ends inside a
    word, ranges shorter than a word or than a line, ranges of one token."""
    rng = np.random.default_rng(seed)
    base = rng.zipf(1.3, size=n + 8).clip(max=65535).astype(np.uint16)
    tokens = base[offset : offset + n]
    assert (C._quad_view(tokens) is not None) == (tokens.ctypes.data % 8 == 0 and n >= 4)
    np.testing.assert_array_equal(C.histogram(tokens, 65536), np.bincount(tokens, minlength=65536))
    starts = rng.integers(0, max(n, 1), size=n_ranges)
    ends = np.minimum(starts + rng.integers(0, 300, size=n_ranges), n)
    expected = np.zeros(65536, np.int64)
    for s_, e_ in zip(starts, ends):
        expected += np.bincount(tokens[s_:e_], minlength=65536)
    np.testing.assert_array_equal(C.histogram(tokens, 65536, starts, ends), expected)


def test_histogram_refuses_ids_outside_vocab():
    with pytest.raises(MixkitError, match="outside the vocabulary"):
        C.histogram(np.array([1, 2, 500], np.uint16), 100)
    with pytest.raises(MixkitError, match="outside the vocabulary"):
        C.histogram(np.array([1, -3], np.int32), 100)
    with pytest.raises(MixkitError, match="outside the vocabulary"):
        C.histogram(np.array([1, 100], np.int32), 100)


# -- store counts --------------------------------------------------------------------------------


@given(
    n_docs=st.integers(1, 60),
    vocab=st.sampled_from([5, 300, 50277, 70000]),
    sample=st.one_of(st.none(), st.integers(1, 80)),
    cap=st.one_of(st.none(), st.integers(1, 50)),
    count_eos=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_store_counts_equal_numpy_reference(n_docs, vocab, sample, cap, count_eos, seed):
    rng = np.random.default_rng(seed)
    docs = random_docs(rng, n_docs, vocab, max_len=120)
    with tempfile.TemporaryDirectory() as d:
        store = write_store(Path(d) / "s", docs, vocab_size=vocab)
        assert store.dtype == (np.uint16 if vocab <= 65536 else np.int32)
        got = mixkit.counts(store, docs=sample, seed=seed, max_tokens_per_doc=cap, count_eos=count_eos, cache=False)
    sel = None
    if sample is not None and sample < n_docs:
        sel = np.sort(np.random.default_rng(seed).choice(n_docs, size=sample, replace=False))
    ref = reference_counts(docs, vocab, sel=sel, cap=cap, drop_eos=None if count_eos else 0)
    assert got.shape == (vocab,) and got.dtype == np.int64
    np.testing.assert_array_equal(got, ref)


def test_eos_kept_when_the_store_appended_none(make_store):
    docs = [np.array([0, 1, 0]), np.array([2, 0])]
    store = make_store("noeos", docs, vocab_size=10, eos_id=None)
    np.testing.assert_array_equal(mixkit.counts(store), np.bincount(np.concatenate(docs), minlength=10))


def test_empty_documents_and_empty_store(make_store):
    store = make_store("holes", [np.array([], np.int64), np.array([3, 0]), np.array([], np.int64)], vocab_size=10)
    np.testing.assert_array_equal(mixkit.counts(store, max_tokens_per_doc=5), np.bincount([3], minlength=10))
    empty = make_store("empty", [], vocab_size=10)
    with pytest.raises(MixkitError, match="empty"):
        mixkit.counts(empty)


def test_counts_by_name_and_path_through_the_lazy_function(make_store, data_dir):
    from mixkit import counts

    assert counts is C.counts  # the function, also after ``import mixkit.unigram``
    docs = random_docs(np.random.default_rng(0), 20, 50)
    make_store("byname", docs, vocab_size=50)
    np.testing.assert_array_equal(mixkit.counts("byname"), reference_counts(docs, 50, drop_eos=0))
    np.testing.assert_array_equal(mixkit.counts(str(data_dir / "byname")), reference_counts(docs, 50, drop_eos=0))
    with pytest.raises(MixkitError, match="no token store named 'nope'"):
        mixkit.counts("nope")


@pytest.mark.parametrize("bad", [dict(docs=0), dict(docs=-2), dict(max_tokens_per_doc=0), dict(seed=-1)])
def test_bad_options(make_store, bad):
    store = make_store("o", [np.array([1, 0])], vocab_size=5)
    with pytest.raises(MixkitError):
        mixkit.counts(store, **bad)


def test_counts_of_real_text_equal_bincount(tmp_path, samples_dir):
    texts = [r["question"] + "\n" + r["answer"] for r in read_jsonl(samples_dir / "gsm8k_test.jsonl.gz")]
    store = encode_store(tmp_path / "gsm8k_test", texts)
    docs = list(store)
    np.testing.assert_array_equal(mixkit.counts(store, cache=False), reference_counts(docs, 50277, drop_eos=0))
    np.testing.assert_array_equal(
        mixkit.counts(store, docs=100, seed=7, max_tokens_per_doc=64, cache=False),
        reference_counts(
            docs, 50277, sel=np.sort(np.random.default_rng(7).choice(len(docs), 100, replace=False)), cap=64, drop_eos=0
        ),
    )


def test_counts_of_shared_c4_equal_bincount(tmp_path, shared_data):
    texts = [r["text"] for r in read_jsonl(shared_data / "web" / "c4_sample.jsonl")]
    store = encode_store(tmp_path / "c4", texts)
    tokens = np.asarray(store.tokens).astype(np.int64)
    np.testing.assert_array_equal(mixkit.counts(store, count_eos=True), np.bincount(tokens, minlength=50277))


# -- cache ------------------------------------------------------------------------------------------


def test_cache_is_reused_and_checked(make_store, monkeypatch):
    docs = random_docs(np.random.default_rng(1), 30, 100)
    store = make_store("cached", docs, vocab_size=100)
    first = mixkit.counts(store)
    npy, meta_path = C.cache_paths(store)
    meta = json.loads(meta_path.read_text())
    assert meta["fingerprint"] == store.fingerprint and meta["options"]["docs"] is None
    assert meta["tokens_counted"] == int(first.sum())

    def boom(*a, **k):
        raise AssertionError("recounted although the cache matched")

    with monkeypatch.context() as m:
        m.setattr(C, "compute_counts", boom)
        np.testing.assert_array_equal(mixkit.counts(store), first)
    calls = []
    real = C.compute_counts
    monkeypatch.setattr(C, "compute_counts", lambda *a, **k: calls.append(1) or real(*a, **k))
    capped = mixkit.counts(store, max_tokens_per_doc=3)  # other options: recount
    assert calls and json.loads(meta_path.read_text())["options"]["max_tokens_per_doc"] == 3
    np.testing.assert_array_equal(capped, reference_counts(docs, 100, cap=3, drop_eos=0))
    calls.clear()
    npy.write_bytes(npy.read_bytes()[:-8] + b"\x01" * 8)  # corrupt the counts: the sha256 no longer matches
    np.testing.assert_array_equal(mixkit.counts(store, max_tokens_per_doc=3), capped)
    assert calls


def test_count_store_follows_the_cache_policy(make_store):
    docs = random_docs(np.random.default_rng(8), 20, 60)
    store = make_store("policy", docs, vocab_size=60)
    options = C.CountOptions(max_tokens_per_doc=7)
    expected = reference_counts(docs, 60, cap=7, drop_eos=0)
    steps = [
        (dict(cache=False), "not cached", None),
        (dict(), "counted", store.files.counts_npy),
        (dict(), "cached", store.files.counts_npy),
        (dict(force=True), "counted", store.files.counts_npy),
        (dict(cache=False, force=True), "not cached", None),
    ]
    for kwargs, how, cache_file in steps:
        r = C.count_store(store, options, **kwargs)
        assert (r.how, r.cache_file) == (how, cache_file), kwargs
        np.testing.assert_array_equal(r.counts, expected)


def test_cache_invalidates_when_store_changes(make_store):
    rng = np.random.default_rng(2)
    old_docs, new_docs = random_docs(rng, 20, 100), random_docs(rng, 25, 100)
    store = make_store("changing", old_docs, vocab_size=100)
    np.testing.assert_array_equal(mixkit.counts(store), reference_counts(old_docs, 100, drop_eos=0))
    store = make_store("changing", new_docs, vocab_size=100, overwrite=True)
    np.testing.assert_array_equal(mixkit.counts(store), reference_counts(new_docs, 100, drop_eos=0))
    assert json.loads(C.cache_paths(store)[1].read_text())["fingerprint"] == store.fingerprint


def test_cache_bytes_are_deterministic(make_store):
    docs = random_docs(np.random.default_rng(3), 40, 300)
    store = make_store("det", docs, vocab_size=300)
    mixkit.counts(store, docs=10, seed=4)
    npy, meta = C.cache_paths(store)
    first = (npy.read_bytes(), meta.read_bytes())
    npy.unlink()
    meta.unlink()
    mixkit.counts(store, docs=10, seed=4)
    assert (npy.read_bytes(), meta.read_bytes()) == first


# -- mixtures ------------------------------------------------------------------------------------------


def test_specs_are_mixture_expressions(make_store, data_dir):
    for name in ("c4", "code"):
        make_store(name, [np.array([1, 2, 0])], vocab_size=10)

    def parts(spec):
        return [(s.name, w) for s, w in C.open_spec(spec)]

    assert parts("c4:0.8,code:0.2") == [("c4", 0.8), ("code", 0.2)]
    assert parts(f" c4 : 3 , {data_dir}/code=1") == [("c4", 3.0), ("code", 1.0)]
    assert parts("c4") == parts(str(data_dir / "c4")) == [("c4", 1.0)]
    assert parts("c4:0,code:1") == [("c4", 0.0), ("code", 1.0)]
    assert parts(Mixture.parse({"code": 2})) == [("code", 2.0)]
    for bad, msg in [
        ("c4:-0.1,code:1", "non-negative"),
        ("c4:0,code:0", "all zero"),
        ("c4:abc,code:1", "not a number"),
        ("c4:1,,code:1", "NAME:WEIGHT"),
        (":1,code:1", "no name"),
        ("c4:nan", "non-negative"),
        ("c4:1,c4:2", "named twice"),
    ]:
        with pytest.raises(MixkitError, match=msg):
            C.open_spec(bad)


def test_token_weighted_mixture_equals_concatenated_store(make_store):
    rng = np.random.default_rng(5)
    a_docs, b_docs, c_docs = random_docs(rng, 30, 200), random_docs(rng, 10, 200, max_len=500), random_docs(rng, 5, 200)
    a, b, c = make_store("a", a_docs, vocab_size=200), make_store("b", b_docs, vocab_size=200), make_store("c", c_docs, vocab_size=200)
    both = make_store("abc", a_docs + b_docs + c_docs, vocab_size=200)
    weights = {s.name: int(mixkit.counts(s).sum()) for s in (a, b, c)}
    expr = ",".join(f"{k}:{v}" for k, v in weights.items())
    mixed = C.distribution(expr).probs
    concat = mixkit.counts(both)
    np.testing.assert_allclose(mixed, concat / concat.sum(), rtol=1e-12, atol=1e-15)
    assert C.distribution("abc").probs.sum() == pytest.approx(1.0)


def test_document_weighted_mixture(make_store):
    rng = np.random.default_rng(6)
    a_docs, b_docs = random_docs(rng, 30, 50, max_len=10), random_docs(rng, 10, 50, max_len=300)
    a, b = make_store("a", a_docs, vocab_size=50), make_store("b", b_docs, vocab_size=50)
    ca, cb = mixkit.counts(a), mixkit.counts(b)
    # 1 document of a per document of b: token mass follows mean document lengths.
    la, lb = ca.sum() / 30, cb.sum() / 10
    expected = (la * ca / ca.sum() + lb * cb / cb.sum()) / (la + lb)
    np.testing.assert_allclose(C.distribution("a:1,b:1", mix_by="docs").probs, expected, rtol=1e-12)
    np.testing.assert_allclose(C.distribution("a:1,b:1").probs, 0.5 * ca / ca.sum() + 0.5 * cb / cb.sum(), rtol=1e-12)
    np.testing.assert_allclose(C.distribution("a:0,b:2").probs, cb / cb.sum(), rtol=1e-12)
    with pytest.raises(MixkitError, match="mix_by"):
        C.distribution("a:1,b:1", mix_by="bytes")


def test_mixture_bad_inputs(make_store):
    make_store("x", [np.array([1, 2, 0])], vocab_size=10)
    make_store("other_vocab", [np.array([1, 2, 0])], vocab_size=20)
    make_store("empty", [], vocab_size=10)
    with pytest.raises(MixkitError, match="different tokenizers"):
        C.distribution("x:1,other_vocab:1")
    with pytest.raises(MixkitError, match="different tokenizers"):
        C.distributions(["x", "other_vocab"])
    with pytest.raises(MixkitError, match="empty"):
        C.distribution("x:1,empty:1")
    with pytest.raises(MixkitError, match="no token store named 'missing'"):
        C.distribution("x:1,missing:1")
    with pytest.raises(MixkitError, match="non-negative"):
        C.distribution("x:-1")
    make_store("only_eos", [np.array([0]), np.array([0])], vocab_size=10)
    with pytest.raises(MixkitError, match="no tokens left"):
        C.distribution("only_eos")


# -- the paper protocol ---------------------------------------------------------------------------------
#
# The reference below transcribes the released script's procedure
# (util_scripts/dataset_similarity_syntactic.py, --method token --enable_mixture_weights) in plain
# Python over token lists: a seeded sample of 1,000 documents per dataset, each text tokenized
# without special tokens and truncated to 512 tokens, empty texts dropped; a mixture is
# create_mixed_dataset(c4_data, specialty_data, c4_proportion, specialty_proportion) and its
# distribution is the Counter of all the mixed documents' tokens.


def script_sample(docs, seed, eos=0):
    """The documents of one dataset as the script held them: sampled, without EOS, first 512 tokens, non-empty."""
    n = len(docs)
    order = np.random.default_rng(seed).choice(n, size=min(1000, n), replace=False)
    texts = []
    for i in order:
        d = [int(t) for t in docs[i]]
        if d and d[-1] == eos:
            d = d[:-1]  # mixkit tokenize appends the EOS; the script's tokenizer added none
        d = d[:512]  # truncation=True, max_length=512
        if d:  # `if txt:`
            texts.append(d)
    return texts


def script_create_mixed_dataset(c4_data, specialty_data, c4_proportion, specialty_proportion):
    total_samples = len(specialty_data)
    c4_samples = int(total_samples * c4_proportion / specialty_proportion)
    sampled_c4 = c4_data[: min(c4_samples, len(c4_data))]  # random.sample: a uniform subset (ours: the first drawn)
    return sampled_c4 + specialty_data, len(sampled_c4)


def script_distribution(texts, vocab):
    freq = Counter(t for d in texts for t in d)
    v = np.zeros(vocab, np.float64)
    for t, c in freq.items():
        v[t] = c
    return v / v.sum()


def long_docs(rng, n, vocab, lo=1, hi=900):
    """Documents of ``lo..hi`` tokens plus EOS 0, so that the 512-token cut binds on some."""
    out = []
    for _ in range(n):
        d = rng.integers(1, vocab, size=int(rng.integers(lo, hi + 1)))
        out.append(np.append(d, 0))
    return out


@settings(max_examples=15, deadline=None)
@given(n_docs=st.integers(2, 1300), seed=st.integers(0, 2**32 - 1))
def test_paper_counts_of_a_store_equal_the_script(n_docs, seed):
    rng = np.random.default_rng(seed)
    docs = long_docs(rng, n_docs, 300, hi=40)
    docs[0] = np.append(rng.integers(1, 300, size=700), 0)  # one document longer than 512 tokens
    docs[-1] = np.array([0])  # one empty document (only its EOS)
    with tempfile.TemporaryDirectory() as d:
        store = write_store(Path(d) / "s", docs, vocab_size=300)
        got = mixkit.counts(store, protocol="paper", seed=seed, cache=False)
        dist = C.distribution(str(Path(d) / "s"), protocol="paper", seed=seed)
        assert not C.cache_paths(store)[0].exists()
    texts = script_sample(docs, seed)
    np.testing.assert_allclose(got / got.sum(), script_distribution(texts, 300), rtol=1e-12, atol=0)
    np.testing.assert_array_equal(dist.probs, got / got.sum())
    assert dist.options == C.CountOptions(protocol="paper", seed=seed)
    assert dist.documents == (len(texts),)  # the sampled documents with tokens left


@pytest.mark.parametrize("specialty", [0.05, 0.12, 0.2, 0.5, 0.8])
@pytest.mark.parametrize("sizes", [(60, 25), (25, 60), (1200, 1100)])
def test_paper_mixture_equals_the_scripts_create_mixed_dataset(make_store, specialty, sizes):
    """Both regimes: the cap at C4's sample (small specialty shares) and fewer C4 documents (large ones)."""
    n_c4, n_code = sizes
    rng = np.random.default_rng(n_c4 + n_code)
    short = 30 if max(sizes) > 1000 else 900
    c4_docs, code_docs = long_docs(rng, n_c4, 500, hi=short), long_docs(rng, n_code, 500, hi=short)
    make_store("c4", c4_docs, vocab_size=500)
    make_store("code", code_docs, vocab_size=500)
    c4_prop = 1.0 - specialty
    expr = f"c4:{c4_prop!r},code:{specialty!r}"
    got = C.distribution(expr, protocol="paper", seed=11)
    mixed, c4_taken = script_create_mixed_dataset(
        script_sample(c4_docs, 11), script_sample(code_docs, 11), c4_prop, specialty
    )
    np.testing.assert_allclose(got.probs, script_distribution(mixed, 500), rtol=1e-12, atol=0)
    n_c4_sample, n_code_sample = min(1000, n_c4), min(1000, n_code)
    assert got.documents == (c4_taken, n_code_sample)
    assert c4_taken == min(n_c4_sample, int(n_code_sample * c4_prop / specialty))


def test_paper_mixtures_of_the_paper_are_one_to_one_by_documents(make_store):
    """80/20, 88/12 and 95/5 all take C4's whole 1,000-document sample: the mixture pools both samples."""
    rng = np.random.default_rng(4)
    make_store("c4", long_docs(rng, 1500, 400, hi=20), vocab_size=400)
    make_store("spec", long_docs(rng, 1200, 400, hi=20), vocab_size=400)
    pooled = mixkit.counts("c4", protocol="paper", seed=3) + mixkit.counts("spec", protocol="paper", seed=3)
    for c4_share, spec_share in [(0.8, 0.2), (0.88, 0.12), (0.95, 0.05)]:
        d = C.distribution(f"c4:{c4_share},spec:{spec_share}", protocol="paper", seed=3)
        assert d.documents == (1000, 1000)
        np.testing.assert_allclose(d.probs, pooled / pooled.sum(), rtol=1e-12, atol=0)
    # Under the default protocol the same expression is 80/20 by tokens: a different distribution.
    tokens = C.distribution("c4:0.8,spec:0.2").probs
    assert np.abs(tokens - pooled / pooled.sum()).sum() > 0.01


def test_paper_document_counts_rule():
    assert C.paper_document_counts([1000, 1000], [0.8, 0.2], anchor=1) == [1000, 1000]  # 4000 capped
    assert C.paper_document_counts([1000, 999], [0.88, 0.12], anchor=1) == [1000, 999]
    assert C.paper_document_counts([1000, 1000], [0.2, 0.8], anchor=1) == [250, 1000]
    assert C.paper_document_counts([1000, 1000], [4, 1], anchor=1) == [1000, 1000]
    assert C.paper_document_counts([1000, 10, 1000], [0.5, 0.1, 0.4], anchor=1) == [50, 10, 40]
    assert C.paper_document_counts([1000, 10, 1000], [0.5, 0.1, 0.0], anchor=1) == [50, 10, 0]
    # Same order of operations as the script: int(total * c4 / specialty), not int(total * (c4 / specialty)).
    n, c4, spec = 7, 1.0 - 0.7, 0.7
    assert C.paper_document_counts([100, n], [c4, spec], anchor=1)[0] == int(n * c4 / spec)
    names = ["c4", "code", "math"]
    assert C.paper_anchor(names, [0.8, 0.2, 0.0]) == 1
    assert C.paper_anchor(names, [0.8, 0.2, 0.0], base="code") == 0
    assert C.paper_anchor(names, [0.0, 0.2, 0.8], base="nope") == 1
    assert C.paper_anchor(names, [1.0, 0.0, 0.0]) == 0


def test_paper_base_decides_the_anchor(make_store):
    rng = np.random.default_rng(9)
    make_store("c4", long_docs(rng, 40, 200, hi=30), vocab_size=200)
    make_store("code", long_docs(rng, 40, 200, hi=30), vocab_size=200)
    c4_first = C.distribution("c4:0.2,code:0.8", protocol="paper")
    assert c4_first.documents == (10, 40)  # the base (first part) is scaled: int(40 * 0.2 / 0.8)
    code_first = C.distribution("code:0.8,c4:0.2", protocol="paper", base="c4")
    assert code_first.documents == (40, 10)
    np.testing.assert_array_equal(code_first.probs, c4_first.probs)
    assert C.distribution("code:0.8,c4:0.2", protocol="paper").documents == (40, 40)  # base code: c4 kept whole
    # The base is also the first positive part when it is alone.
    assert C.distribution("c4:1,code:0", protocol="paper").documents == (40, 0)


def test_paper_protocol_is_deterministic_and_seeded(make_store):
    rng = np.random.default_rng(12)
    make_store("big", long_docs(rng, 1500, 300, hi=15), vocab_size=300)
    make_store("other", long_docs(rng, 30, 300, hi=15), vocab_size=300)
    first = C.distribution("big:0.9,other:0.1", protocol="paper", seed=5).probs
    again = C.distributions(["big:0.9,other:0.1"], protocol="paper", seed=5)[0].probs
    assert first.tobytes() == again.tobytes()
    assert C.distribution("big:0.9,other:0.1", protocol="paper", seed=6).probs.tobytes() != first.tobytes()
    # The store's paper counts are those of 1,000 sampled documents cut to 512 tokens, with the same seed.
    np.testing.assert_array_equal(
        mixkit.counts("big", protocol="paper", seed=5, cache=False),
        mixkit.counts("big", docs=1000, seed=5, max_tokens_per_doc=512, cache=False),
    )


def test_paper_protocol_never_touches_the_cache(make_store):
    docs = random_docs(np.random.default_rng(13), 30, 100)
    store = make_store("keep", docs, vocab_size=100)
    full = mixkit.counts(store)
    npy, meta = C.cache_paths(store)
    before = (npy.read_bytes(), meta.read_bytes())
    r = C.count_store(store, C.CountOptions(protocol="paper"))
    assert (r.how, r.cache_file) == ("paper sample, not cached", None)
    C.distribution("keep", protocol="paper")
    assert (npy.read_bytes(), meta.read_bytes()) == before
    assert "protocol" not in json.loads(meta.read_text())["options"]  # caches from before protocols stay valid
    assert C.CountOptions(protocol="paper").key()["protocol"] == "paper"
    np.testing.assert_array_equal(mixkit.counts(store), full)


def test_protocol_options_are_checked():
    paper = C.CountOptions(protocol="paper", seed=2)
    assert (paper.docs, paper.max_tokens_per_doc, paper.count_eos) == (1000, 512, False)
    assert C.CountOptions(protocol="paper", docs=1000, max_tokens_per_doc=512) == C.CountOptions(protocol="paper")
    for bad, msg in [
        (dict(protocol="paper", docs=50), "docs=50 contradicts"),
        (dict(protocol="paper", max_tokens_per_doc=128), "max_tokens_per_doc=128 contradicts"),
        (dict(protocol="paper", count_eos=True), "count_eos"),
        (dict(protocol="script"), "protocol must be one of all, paper"),
    ]:
        with pytest.raises(MixkitError, match=msg):
            C.CountOptions(**bad)
    assert C.resolve_options(None) == C.CountOptions()
    assert C.resolve_options(None, protocol="paper", seed=4) == C.CountOptions(protocol="paper", seed=4)
    assert C.resolve_options(paper, protocol="paper", seed=2) is paper
    with pytest.raises(MixkitError, match="disagrees"):
        C.resolve_options(paper, protocol="all")
    with pytest.raises(MixkitError, match="disagrees"):
        C.resolve_options(paper, seed=3)


def test_paper_protocol_refuses_mix_by_and_empty_samples(make_store):
    make_store("a", [np.array([1, 2, 0])], vocab_size=10)
    make_store("only_eos", [np.array([0]), np.array([0])], vocab_size=10)
    with pytest.raises(MixkitError, match="mix_by does not apply"):
        C.distribution("a", protocol="paper", mix_by="docs")
    with pytest.raises(MixkitError, match="no tokens left"):
        C.distribution("a:0.8,only_eos:0.2", protocol="paper")
    np.testing.assert_array_equal(  # the anchor has tokens; an empty base part adds none
        C.distribution("only_eos:0.8,a:0.2", protocol="paper").probs, np.bincount([1, 2], minlength=10) / 2
    )
