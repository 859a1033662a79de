"""`mixkit train-tokenizer`: layout, determinism, round trips through tokenizers and transformers,
use by `mixkit tokenize`, the document sample, and bad input."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import sys
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mixkit.errors import MixkitError
from mixkit.presets import TextSpec
from mixkit.readers import Record
from mixkit.store import TokenStore
from mixkit.tokenize import TokenizeConfig, tokenize
from mixkit.tokenizer_training import EOS_TOKEN, _Documents, _sample, train_tokenizer
from tests import support
from tests.support import run_cli

C4 = TextSpec(preset="c4")
SLICE = 200  # documents of the bundled c4 sample the fast tests train on
TEXTS = [
    "Hello world.",
    "  two  spaces, a\ttab and\r\nlines\n\n",
    "Ünïcödé — naïve café, 日本語, emoji 🎉✓",
    "x = [i ** 2 for i in range(10)]  # code",
    "no NFC change here",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A 384-token tokenizer with one extra special token, trained on a slice of the bundled c4."""
    from mixkit.samples import sample_path

    out = tmp_path_factory.mktemp("tok") / "tok384.json"
    train_tokenizer([str(sample_path("c4"))], 384, out, C4, max_docs=SLICE, special_tokens=["<|pad|>"])
    return out


def run_cli_fail(*args: str) -> str:
    """The command fails with one ``Error: ...`` line and no traceback."""
    output = support.run_cli_fail(*args)
    lines = output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), output
    return output


def write_jsonl(path: Path, records) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def test_layout_is_gpt_neox_byte_level(trained):
    from tokenizers import Tokenizer, pre_tokenizers

    tok = Tokenizer.from_file(str(trained))
    assert tok.get_vocab_size() == 384
    assert tok.token_to_id(EOS_TOKEN) == 0 and tok.token_to_id("<|pad|>") == 1
    vocab = tok.get_vocab()
    assert set(pre_tokenizers.ByteLevel.alphabet()) <= set(vocab), "all 256 byte symbols"
    assert sorted(vocab.values()) == list(range(384)), "ids are dense"
    spec = json.loads(trained.read_text())
    assert spec["normalizer"] == {"type": "NFC"}
    assert spec["pre_tokenizer"]["type"] == "ByteLevel" and spec["pre_tokenizer"]["add_prefix_space"] is False
    assert spec["decoder"]["type"] == "ByteLevel"
    assert spec["model"]["type"] == "BPE" and len(spec["model"]["merges"]) == 384 - 2 - 256
    # The merges compress: the trained vocabulary needs fewer tokens than bytes on its corpus.
    sentence = "the quick brown fox jumps over the lazy dog and then it goes to the store"
    assert len(tok.encode(sentence).ids) < 0.8 * len(sentence)


@pytest.fixture(scope="module")
def loaded(trained):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(trained))


@given(text=st.text(max_size=200))
def test_tokenizers_round_trip_is_nfc(loaded, text):
    ids = loaded.encode(text, add_special_tokens=False).ids
    assert loaded.decode(ids, skip_special_tokens=False) == unicodedata.normalize("NFC", text)


def test_decomposed_text_comes_back_composed(loaded):
    tok = loaded
    decomposed = unicodedata.normalize("NFD", "café naïve Ångström")
    assert decomposed != "café naïve Ångström"
    assert tok.decode(tok.encode(decomposed).ids) == "café naïve Ångström"


def test_transformers_loads_it_and_round_trips(trained, loaded):
    from transformers import PreTrainedTokenizerFast

    hf = PreTrainedTokenizerFast(tokenizer_file=str(trained), eos_token=EOS_TOKEN)
    assert hf.eos_token_id == 0 and len(hf) == 384
    ref = loaded
    for text in TEXTS:
        ids = hf.encode(text, add_special_tokens=False)
        assert ids == ref.encode(text, add_special_tokens=False).ids
        assert hf.decode(ids, clean_up_tokenization_spaces=False) == text


def test_same_inputs_give_the_same_bytes(tmp_path, samples_dir):
    src = [str(samples_dir / "gsm8k_test.jsonl.gz")]
    a = train_tokenizer(src, 320, tmp_path / "a.json", TextSpec(preset="gsm8k"))
    b = train_tokenizer(src, 320, tmp_path / "b.json", TextSpec(preset="gsm8k"))
    assert a.path.read_bytes() == b.path.read_bytes()
    assert a.sha256 == b.sha256 == hashlib.sha256(a.path.read_bytes()).hexdigest()
    c = train_tokenizer(src, 330, tmp_path / "c.json", TextSpec(preset="gsm8k"))
    assert c.path.read_bytes() != a.path.read_bytes(), "the test can see a difference"


def test_same_bytes_whatever_the_threads_and_hash_seed(tmp_path, samples_dir):
    """The Rust trainer counts in parallel: 1 and 2 threads, and two Python hash seeds, agree."""
    digests = set()
    for threads, hash_seed in ((1, "0"), (2, "1")):
        out = tmp_path / f"t{threads}.json"
        env = {**os.environ, "RAYON_NUM_THREADS": str(threads), "RAYON_RS_NUM_CPUS": str(threads), "PYTHONHASHSEED": hash_seed}
        r = subprocess.run(
            [sys.executable, "-m", "cli.mixkit_cli", "train-tokenizer", str(samples_dir / "c4.jsonl.gz"), "--preset", "c4",
             "--vocab-size", "512", "--max-docs", "300", "--out", str(out)],
            capture_output=True, text=True, env=env,
        )
        assert r.returncode == 0, r.stderr
        digests.add(out.read_bytes())
    assert len(digests) == 1


def test_tokenize_with_it_records_its_hash(tmp_path, trained, loaded, samples_dir):
    out = run_cli("tokenize", str(samples_dir / "c4.jsonl.gz"), "--name", "c4", "--preset", "c4", "--tokenizer", str(trained),
                  "--data-dir", str(tmp_path), "--quiet", "--holdout-docs", "10")
    assert "c4: 990 documents" in out
    store = TokenStore.open(tmp_path / "c4")
    m = store.manifest
    assert m["tokenizer"]["sha256"] == hashlib.sha256(trained.read_bytes()).hexdigest()
    assert m["tokenizer"]["vocab_size"] == 384 and m["eos"]["id"] == 0 and m["dtype"] == "uint16"
    tok = loaded
    with gzip.open(samples_dir / "c4.jsonl.gz", "rt") as f:
        texts = {unicodedata.normalize("NFC", json.loads(line)["text"]) for line in f}
    for doc in (store[0], store[len(store) - 1]):
        assert doc[-1] == 0 and (doc[:-1] != 0).all()
        assert tok.decode(doc[:-1].tolist(), skip_special_tokens=False) in texts
    assert int(store.tokens.max()) < 384


def test_cli_prints_the_file_and_its_hash(tmp_path, samples_dir):
    out = tmp_path / "sub" / "tok.json"
    text = run_cli("train-tokenizer", str(samples_dir / "gsm8k_test.jsonl.gz"), "--preset", "gsm8k", "--vocab-size", "300",
                   "--out", str(out), "--special-token", "<|pad|>", "--special-token", EOS_TOKEN)
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    assert f"{out}: 300 tokens from " in text and digest in text
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(out))
    assert tok.token_to_id(EOS_TOKEN) == 0 and tok.token_to_id("<|pad|>") == 1, "a repeated EOS is not added twice"


def test_template_field_and_presets_pick_the_text(tmp_path):
    recs = [{"q": "alpha beta", "a": "gamma"}] * 30
    src = str(write_jsonl(tmp_path / "r.jsonl", recs))
    t = train_tokenizer([src], 300, tmp_path / "t.json", TextSpec(template="{q}|{a}"))
    assert t.bytes == 30 * len("alpha beta|gamma") and t.documents == 30
    t = train_tokenizer([src], 300, tmp_path / "f.json", TextSpec(field="a"))
    assert t.bytes == 30 * len("gamma")


def test_a_small_corpus_gives_a_smaller_vocabulary(tmp_path):
    src = str(write_jsonl(tmp_path / "r.jsonl", [{"text": "abab abab"}]))
    t = train_tokenizer([src], 1000, tmp_path / "t.json")
    assert 257 < t.vocab_size < 1000 and t.requested_vocab_size == 1000
    text = run_cli("train-tokenizer", src, "--vocab-size", "1000", "--out", str(tmp_path / "c.json"))
    assert "ran out of pairs" in text


@given(n=st.integers(0, 40), m=st.integers(1, 50), seed=st.integers(0, 2**32 - 1))
def test_max_docs_is_a_seeded_uniform_sample_in_corpus_order(tmp_path_factory, n, m, seed):
    d = tmp_path_factory.mktemp("s")
    recs = [{"text": f"doc {i}"} for i in range(n)]
    docs = _Documents([str(write_jsonl(d / "r.jsonl", recs))], TextSpec(), lines=False, on_error="raise")
    got = list(_sample(docs, m, seed))
    if n <= m:
        expected = [r["text"] for r in recs]
    else:
        expected = [f"doc {i}" for i in sorted(np.random.default_rng(seed).choice(n, size=m, replace=False))]
    assert got == expected
    assert list(_sample(docs, m, seed)) == got


def test_max_docs_samples_across_sources_not_a_prefix(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", [{"text": f"aaa {i}"} for i in range(50)])
    b = write_jsonl(tmp_path / "b.jsonl", [{"text": f"bbb {i}"} for i in range(50)])
    docs = _Documents([str(a), str(b)], TextSpec(), lines=False, on_error="raise")
    picked = list(_sample(docs, 20, seed=0))
    assert len(picked) == 20 and any(p.startswith("aaa") for p in picked) and any(p.startswith("bbb") for p in picked)
    assert list(_sample(docs, 20, seed=1)) != picked
    t = train_tokenizer([str(a), str(b)], 300, tmp_path / "t.json", max_docs=20, seed=0)
    assert t.documents == 20


def test_skip_counts_bad_and_empty_records(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"text": "good text"}\nnot json\n{"text": "   "}\n{"other": 1}\n{"text": "more good text"}\n')
    t = train_tokenizer([str(path)], 300, tmp_path / "t.json", on_error="skip")
    assert t.documents == 2
    assert t.skipped == {"empty": 1, "malformed JSON": 1, "missing field": 1}


# -- bad input: one line, nothing written --------------------------------------------------------


def test_no_documents(tmp_path):
    src = write_jsonl(tmp_path / "empty.jsonl", [{"text": ""}, {"text": "  \n"}])
    out = tmp_path / "t.json"
    line = run_cli_fail("train-tokenizer", str(src), "--vocab-size", "300", "--out", str(out))
    assert "no documents" in line and "'empty': 2" in line
    assert not out.exists() and not list(tmp_path.glob(".t.json*"))


@pytest.mark.parametrize(("vocab", "specials", "smallest"), [(256, [], 257), (100, [], 257), (258, ["<|a|>", "<|b|>"], 259)])
def test_vocab_size_below_bytes_and_specials(tmp_path, samples_dir, vocab, specials, smallest):
    args = ["train-tokenizer", str(samples_dir / "gsm8k_test.jsonl.gz"), "--preset", "gsm8k", "--vocab-size", str(vocab),
            "--out", str(tmp_path / "t.json")]
    for s in specials:
        args += ["--special-token", s]
    line = run_cli_fail(*args)
    assert f"use at least {smallest}" in line and "256 byte symbols" in line
    with pytest.raises(MixkitError, match="at least 257"):
        train_tokenizer([str(samples_dir / "gsm8k_test.jsonl.gz")], 256, tmp_path / "t.json", TextSpec(preset="gsm8k"))


def test_vocab_size_at_the_minimum_has_no_merges(tmp_path, samples_dir):
    t = train_tokenizer([str(samples_dir / "gsm8k_test.jsonl.gz")], 257, tmp_path / "t.json", TextSpec(preset="gsm8k"))
    assert t.vocab_size == 257 and json.loads(t.path.read_text())["model"]["merges"] == []


def test_unwritable_out(tmp_path, samples_dir):
    src = str(samples_dir / "gsm8k_test.jsonl.gz")
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    line = run_cli_fail("train-tokenizer", src, "--preset", "gsm8k", "--vocab-size", "300", "--out", str(blocker / "t.json"))
    assert "cannot write there" in line
    line = run_cli_fail("train-tokenizer", src, "--preset", "gsm8k", "--vocab-size", "300", "--out", str(tmp_path))
    assert "is a directory" in line


def test_existing_out_needs_overwrite(tmp_path, samples_dir):
    src = str(samples_dir / "gsm8k_test.jsonl.gz")
    out = tmp_path / "t.json"
    out.write_text("keep me")
    line = run_cli_fail("train-tokenizer", src, "--preset", "gsm8k", "--vocab-size", "300", "--out", str(out))
    assert "already exists" in line and "--overwrite" in line and out.read_text() == "keep me"
    run_cli("train-tokenizer", src, "--preset", "gsm8k", "--vocab-size", "300", "--out", str(out), "--overwrite")
    assert json.loads(out.read_text())["model"]["type"] == "BPE"


@pytest.mark.parametrize(
    ("setup", "extra", "expected"),
    [
        (lambda d: d / "missing.jsonl", [], "does not exist"),
        (lambda d: (d / "x.csv").write_text("a,b\n") and d / "x.csv", [], "unknown input format"),
        (lambda d: (d / "bad.jsonl").write_text('{"text": "ok"}\n{broken\n') and d / "bad.jsonl", [], "bad.jsonl:line 2: malformed JSON"),
        (lambda d: write_jsonl(d / "q.jsonl", [{"question": "q"}]), [], "no field 'text'"),
        (lambda d: write_jsonl(d / "q.jsonl", [{"question": "q"}]), ["--preset", "gsm8k"], "no field 'answer'"),
        (lambda d: write_jsonl(d / "t.jsonl", [{"text": "t"}]), ["--max-docs", "0"], "max docs must be a positive integer"),
    ],
)
def test_bad_sources(tmp_path, setup, extra, expected):
    src = setup(tmp_path)
    out = tmp_path / "out" / "t.json"
    line = run_cli_fail("train-tokenizer", str(src), "--vocab-size", "300", "--out", str(out), *extra)
    assert expected in line, line
    assert not out.exists()


def test_no_sources_and_two_text_options():
    assert "no input sources" in run_cli_fail("train-tokenizer", "--vocab-size", "300", "--out", "t.json")
    assert "only one of" in run_cli_fail("train-tokenizer", "x.jsonl", "--vocab-size", "300", "--out", "t.json",
                                         "--field", "a", "--preset", "c4")


def test_documents_match_what_tokenize_stores(tmp_path, samples_dir):
    """Training reads the same documents `mixkit tokenize` stores (same readers, presets, skips)."""
    src = samples_dir / "qa.jsonl.gz"
    docs = list(_Documents([str(src)], TextSpec(preset="qa"), lines=False, on_error="raise"))
    with gzip.open(src, "rt") as f:
        first = json.loads(f.readline())
    assert docs[0] == TextSpec(preset="qa").text(Record(first, "x"))
    m = tokenize(TokenizeConfig([str(src)], "qa", TextSpec(preset="qa"), data_dir=str(tmp_path), quiet=True))
    assert m["documents"] == len(docs)
