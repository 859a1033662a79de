"""The fast encoder: same ids as ``tokenizers`` (properties, probes, real corpora), and refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from tokenizers.normalizers import NFD

from mixkit.encoders import (
    FastEncoder,
    HFEncoder,
    Unsupported,
    fast_spec,
    load_encoder,
    probe_texts,
    self_test,
    tokenizers_nfc,
)
from mixkit.errors import MixkitError
from mixkit.presets import TextSpec
from mixkit.samples import DEFAULT_TOKENIZER
from mixkit.store import TokenStore
from mixkit.tokenize import TokenizeConfig, tokenize
from tests.support import run_cli, run_cli_fail, write_jsonl

HF = HFEncoder.from_file(DEFAULT_TOKENIZER)
FAST = FastEncoder.from_file(DEFAULT_TOKENIZER)

# Pieces that stress each step: whitespace runs around the added-token lengths, characters
# NFC changes (singletons, decomposed sequences, Hangul jamo), combining marks, special
# tokens written in the text, contractions, digits, emoji sequences, mixed scripts.
FRAGMENTS = st.one_of(
    st.integers(1, 60).map(lambda n: " " * n),
    st.sampled_from(["\t", "\n", "\r\n", "\u00a0", "\u3000", "\u2028", "\x0b", "\x85", " \n", "\n "]),
    st.sampled_from(["e\u0301", "\u212b", "\u2126", "A\u030a\u0323", "\u1100\u1161\u11a8", "\u0958", "o\u0308\u0304", "ﬁ"]),
    st.sampled_from(["<|endoftext|>", "<|padding|>", "'s", "'ll", "'RE", "123", "٣", "½", "🎉", "👨‍👩‍👧", "🇫🇷", "中文", "한국어", "Ελλ"]),
    st.characters(categories=["Mn", "Mc", "Me"]),
    st.text(max_size=12),
)
TEXTS = st.lists(FRAGMENTS, max_size=12).map("".join)


@given(st.lists(TEXTS, min_size=1, max_size=8))
# U+07FD (NKo, Unicode 11) is a combining mark to Python's Unicode tables and a starter to the
# older ones tokenizers normalizes with: Python's NFC would reorder it, tokenizers' does not.
@example(["\u0300\u07fd"])
@example(["A\u07fd\u0300"])
def test_fast_encoder_gives_the_ids_of_tokenizers(texts):
    assert FAST.encode_batch(texts) == HF.encode_batch(texts)


@given(TEXTS)
def test_nfc_changing_input_is_normalized_first(text):
    nfd = NFD().normalize_str(text)  # tokenizers' own tables, as its NFC uses
    assert FAST.encode_batch([nfd]) == HF.encode_batch([nfd])
    assert FAST.encode_batch([nfd]) == FAST.encode_batch([tokenizers_nfc(text)])


def test_space_runs_use_the_added_tokens_longest_first():
    ids = FAST.encode_batch(["a" + " " * 30 + "b"])[0]
    assert ids == HF.encode_batch(["a" + " " * 30 + "b"])[0]
    assert 50254 in ids, "the 24-space token comes first"


def test_special_token_strings_stay_plain_text():
    ids = FAST.encode_batch(["a<|endoftext|>b"])[0]
    assert 0 not in ids and ids == HF.encode_batch(["a<|endoftext|>b"])[0]


def test_probe_set_passes_and_threads_change_nothing():
    texts = probe_texts(sorted(FAST.spec.added), ["<|endoftext|>", "<|padding|>"])
    assert self_test(FAST, HF) is None
    threaded = FastEncoder(FAST.spec, num_threads=2)
    assert threaded.encode_batch(texts) == FAST.encode_batch(texts)


@pytest.mark.parametrize("encoder", [FAST, HF], ids=["fast", "hf"])
def test_lone_surrogates_are_refused_by_both(encoder):
    with pytest.raises(MixkitError, match="text 1 of the batch contains a lone surrogate"):
        encoder.encode_batch(["fine", "bad \ud800 text"])


def test_lone_surrogate_record_is_a_bad_record(tmp_path):
    src = tmp_path / "s.jsonl"
    src.write_text('{"text": "ok"}\n{"text": "bad \\ud800 here"}\n')
    d = str(tmp_path / "d")
    assert "lone surrogate U+D800" in run_cli_fail("tokenize", str(src), "--name", "x", "--data-dir", d, "--quiet")
    run_cli("tokenize", str(src), "--name", "x", "--data-dir", d, "--quiet", "--on-error", "skip")
    assert json.loads((tmp_path / "d" / "x.json").read_text())["skipped"]["lone surrogate"] == 1


# -- byte-identical stores ----------------------------------------------------------------------

BUNDLED = [("c4", "c4"), ("code", "code"), ("gsm8k_train", "gsm8k"), ("gsm8k_test", "gsm8k"), ("humaneval", None),
           ("instructions", "instructions"), ("math", "math"), ("qa", "qa")]


def _stores_with_both(tmp_path: Path, sources: list[str], text: TextSpec) -> tuple[TokenStore, TokenStore]:
    out = []
    for encoder in ("hf", "fast"):
        d = tmp_path / encoder
        m = tokenize(TokenizeConfig(sources, "s", text, data_dir=str(d), quiet=True, encoder=encoder, batch_bytes=1 << 18))
        assert m["encoder"]["name"] == encoder
        out.append(TokenStore.open(d / "s"))
    return out[0], out[1]


def _assert_identical(hf: TokenStore, fast: TokenStore) -> None:
    for ext in (".bin", ".idx"):
        assert hf.prefix.with_suffix(ext).read_bytes() == fast.prefix.with_suffix(ext).read_bytes()
    assert hf.fingerprint == fast.fingerprint


@pytest.mark.parametrize(("sample", "preset"), BUNDLED, ids=[s for s, _ in BUNDLED])
def test_bundled_samples_give_identical_stores(tmp_path, samples_dir, sample, preset):
    text = TextSpec(preset=preset) if preset else TextSpec(template="{prompt}{canonical_solution}")
    _assert_identical(*_stores_with_both(tmp_path, [str(samples_dir / f"{sample}.jsonl.gz")], text))


SHARED = [("web/c4_sample.jsonl", "{text}"), ("web/cc_en_head-0091.jsonl.gz", "{text}"),
          ("wiki/enwiki_wikiextractor.jsonl", "{text}"), ("code/thealgorithms_python.jsonl", "{text}"),
          ("gsm8k/train.jsonl", "{question}\n{answer}"), ("math/math_test_1000.jsonl", "{problem}\n{solution}")]


@pytest.mark.slow
@pytest.mark.parametrize(("rel", "template"), SHARED, ids=[r for r, _ in SHARED])
def test_shared_corpora_give_identical_stores(tmp_path, shared_data, rel, template):
    path = shared_data / rel
    if not path.exists():
        pytest.skip(f"{rel} not present")
    _assert_identical(*_stores_with_both(tmp_path, [str(path)], TextSpec(template=template)))


def test_worker_processes_write_the_same_bytes(tmp_path, samples_dir):
    src = str(samples_dir / "c4.jsonl.gz")
    d1, d2 = tmp_path / "one", tmp_path / "two"
    m1 = tokenize(TokenizeConfig([src], "c", data_dir=str(d1), quiet=True, encoder="fast", workers=1, batch_bytes=1 << 17))
    m2 = tokenize(TokenizeConfig([src], "c", data_dir=str(d2), quiet=True, encoder="fast", workers=2, batch_bytes=1 << 17))
    assert m1["fingerprint"] == m2["fingerprint"]
    assert (d1 / "c.bin").read_bytes() == (d2 / "c.bin").read_bytes()


# -- refusals -----------------------------------------------------------------------------------


def _neox_json() -> dict:
    return json.loads(DEFAULT_TOKENIZER.read_text())


def _wordpiece(tmp_path: Path) -> Path:
    from tokenizers import Tokenizer
    from tokenizers.models import WordPiece
    from tokenizers.pre_tokenizers import Whitespace

    vocab = {"[UNK]": 0, "<|endoftext|>": 1, "hello": 2, "world": 3, "##s": 4}
    tok = Tokenizer(WordPiece(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = Whitespace()
    path = tmp_path / "wordpiece.json"
    tok.save(str(path))
    return path


def _nfkc(tmp_path: Path) -> Path:
    data = _neox_json()
    data["normalizer"] = {"type": "NFKC"}
    path = tmp_path / "nfkc.json"
    path.write_text(json.dumps(data))
    return path


def _missing_merge(tmp_path: Path) -> Path:
    """Accepted by ``fast_spec`` but not reproduced: tiktoken emits ``Ġthe`` whole, tokenizers cannot reach it."""
    data = _neox_json()
    data["model"]["merges"] = [m for m in data["model"]["merges"] if m not in ("Ġt he", "Ġ the", "Ġth e")]
    path = tmp_path / "missing-merge.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(("make", "why"), [(_wordpiece, "model is WordPiece"), (_nfkc, "normalizer NFKC")])
def test_unsupported_pipelines_are_refused(tmp_path, make, why):
    with pytest.raises(Unsupported, match=why):
        fast_spec(json.loads(make(tmp_path).read_text()))


def test_a_pipeline_the_probes_catch_falls_back(tmp_path):
    path = _missing_merge(tmp_path)
    fast_spec(json.loads(path.read_text()))  # structurally fine ...
    choice = load_encoder(path, "auto")
    assert choice.encoder.name == "hf" and "encodes differently" in choice.note  # ... but not the same ids


@pytest.mark.parametrize("make", [_wordpiece, _nfkc], ids=["wordpiece", "nfkc"])
def test_auto_falls_back_with_one_line_and_fast_refuses(tmp_path, make, capsys):
    tok = make(tmp_path)
    src = write_jsonl(tmp_path / "r.jsonl", [{"text": "hello worlds"}])
    m = tokenize(TokenizeConfig([str(src)], "x", tokenizer=str(tok), data_dir=str(tmp_path / "d"), quiet=True))
    assert m["encoder"]["name"] == "hf" and "fast encoder not used" in m["encoder"]["note"]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("note: fast encoder not used")
    out = run_cli_fail("tokenize", str(src), "--name", "y", "--tokenizer", str(tok), "--encoder", "fast",
                       "--data-dir", str(tmp_path / "d"), "--quiet")
    assert "fast encoder not used" in out and "--encoder hf" in out


def test_manifest_names_the_encoder_and_auto_picks_fast(tmp_path):
    src = write_jsonl(tmp_path / "r.jsonl", [{"text": "some  text"}])
    m = tokenize(TokenizeConfig([str(src)], "x", data_dir=str(tmp_path / "d"), quiet=True))
    assert m["encoder"]["name"] == "fast" and m["encoder"]["library"].startswith("tiktoken")
    with pytest.raises(MixkitError, match="encoder: expected one of"):
        TokenizeConfig([str(src)], "x", encoder="bpe")


def test_auto_encodes_on_speculation_and_starts_over_when_refused(tmp_path, capsys):
    """With encoder processes, ``auto`` encodes with the fast encoder while its self-test runs;
    refused, the run drops that work and gives the store ``tokenizers`` gives, byte for byte."""
    tok = _missing_merge(tmp_path)
    docs = [{"text": f"document {i}: " + "they've said hello and they've gone " * (3 + i % 7)} for i in range(300)]
    src = write_jsonl(tmp_path / "r.jsonl", docs)

    def run(name: str, encoder: str):
        return tokenize(TokenizeConfig([str(src)], name, tokenizer=str(tok), data_dir=str(tmp_path / "d"), quiet=True,
                                       encoder=encoder, workers=2, batch_bytes=4000))

    auto = run("auto", "auto")
    assert FastEncoder.from_file(tok).encode(docs[0]["text"]) != HFEncoder.from_file(tok).encode_batch([docs[0]["text"]])[0]
    assert auto["encoder"]["name"] == "hf" and "encodes differently" in auto["encoder"]["note"]
    assert capsys.readouterr().err.count("note: fast encoder not used") == 1
    hf = run("hf", "hf")
    d = tmp_path / "d"
    for ext in (".bin", ".idx"):
        assert (d / f"auto{ext}").read_bytes() == (d / f"hf{ext}").read_bytes()
    assert auto["fingerprint"] == hf["fingerprint"]


def test_auto_on_speculation_keeps_the_fast_encoder_it_proved(tmp_path):
    docs = [{"text": f"doc {i}  with   spaces\tand ünïcödé " * (1 + i % 5)} for i in range(200)]
    src = write_jsonl(tmp_path / "r.jsonl", docs)
    tok = tmp_path / "tokenizer.json"  # a copy: a path this process has not chosen an encoder for yet
    tok.write_bytes(DEFAULT_TOKENIZER.read_bytes())
    out = {}
    for encoder in ("auto", "hf"):
        out[encoder] = tokenize(TokenizeConfig([str(src)], encoder, tokenizer=str(tok), data_dir=str(tmp_path / "d"),
                                               quiet=True, encoder=encoder, workers=2, batch_bytes=3000))
    assert out["auto"]["encoder"]["name"] == "fast" and "note" not in out["auto"]["encoder"]
    assert out["auto"]["fingerprint"] == out["hf"]["fingerprint"]


def test_workers_spawn_where_there_is_no_forkserver(tmp_path, monkeypatch):
    """Encoder processes fork from a forkserver where the platform has one, else are spawned;
    the store is the same either way."""
    import multiprocessing

    from mixkit import tokenize as tokenize_module

    assert tokenize_module._worker_context().get_start_method() in multiprocessing.get_all_start_methods()
    docs = [{"text": f"row {i}: they've  said\t{i * 7} things " * (1 + i % 4)} for i in range(120)]
    src = write_jsonl(tmp_path / "r.jsonl", docs)
    out = {}
    for how in ("default", "spawn"):
        if how == "spawn":
            monkeypatch.setattr(multiprocessing, "get_all_start_methods", lambda: ["spawn"])
            assert tokenize_module._worker_context().get_start_method() == "spawn"
        out[how] = tokenize(TokenizeConfig([str(src)], how, data_dir=str(tmp_path / "d"), quiet=True, encoder="fast",
                                           workers=2, batch_bytes=2000))
    assert out["default"]["fingerprint"] == out["spawn"]["fingerprint"]
