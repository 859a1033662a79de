"""``mixkit count|distance|proximity``: same numbers as the Python API, files, errors, real-data ordering."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner

from cli.mixkit_cli import main
from mixkit import distance as D
from mixkit import unigram as C
from mixkit.store import write_store
from tests.support import bundled_store


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory):
    """Stores of the bundled c4, gsm8k (train), math, math_mammoth and code samples, GPT-NeoX tokens, EOS 0."""
    d = tmp_path_factory.mktemp("samples")
    for sample in ("c4", "gsm8k_train", "math", "math_mammoth", "code"):
        bundled_store(d, sample)
    return d


def run(args, data_dir, ok=True):
    result = CliRunner().invoke(main, [*args, "--data-dir", str(data_dir)])
    if ok:
        assert result.exit_code == 0, result.output
    return result


def api(specs, data_dir, **kw):
    return {d.label: d.probs for d in C.distributions(list(specs), data_dir=data_dir, **kw)}


def test_distance_pair_json_equals_api(sample_dir):
    out = run(["distance", "c4", "gsm8k", "--json"], sample_dir).output
    got = json.loads(out)
    p = api(["c4", "gsm8k"], sample_dir)
    assert got == {"a": "c4", "b": "gsm8k", "metrics": D.all_metrics(p["c4"], p["gsm8k"])}
    assert list(got["metrics"]) == ["js", "js_distance", "kl_ab", "kl_ba", "tv", "hellinger", "cosine", "jaccard", "paper"]


def test_distance_pair_table_and_single_metric(sample_dir):
    table = run(["distance", "gsm8k", "math"], sample_dir).output
    for name in D.METRIC_NAMES:
        assert f"\n{name} " in table
    p = api(["gsm8k", "math"], sample_dir)
    single = run(["distance", "gsm8k", "math", "--metric", "hellinger"], sample_dir).output.strip()
    assert float(single) == D.hellinger(p["gsm8k"], p["math"])
    opts = ["--docs", "300", "--seed", "1", "--max-tokens-per-doc", "128", "--mix-by", "docs", "--smoothing", "1e-5"]
    got = json.loads(run(["distance", "gsm8k", "c4:0.9,math:0.1", "--json", *opts], sample_dir).output)
    p = api(["gsm8k", "c4:0.9,math:0.1"], sample_dir, mix_by="docs", options=C.CountOptions(docs=300, seed=1, max_tokens_per_doc=128))
    assert got["metrics"] == D.all_metrics(p["gsm8k"], p["c4:0.9,math:0.1"], D.MetricOptions(smoothing=1e-5))


def test_distance_matrix_files(sample_dir, tmp_path):
    names = ["gsm8k", "math", "c4", "code"]
    out = tmp_path / "out"
    got = json.loads(run(["distance", *names, "--metric", "cosine", "--json", "--out", str(out)], sample_dir).output)
    p = api(names, sample_dir)
    expected = D.distance_matrix([p[n] for n in names], "cosine")
    assert got["labels"] == names and got["metric"] == "cosine"
    np.testing.assert_array_equal(np.array(got["matrix"]), expected)
    rows = list(csv.reader((out / "distance.csv").open()))
    assert rows[0] == ["", *names]
    np.testing.assert_array_equal(np.array([[float(x) for x in r[1:]] for r in rows[1:]]), expected)
    png = (out / "distance.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000
    first_csv = (out / "distance.csv").read_bytes()
    text = run(["distance", *names, "--metric", "cosine", "--out", str(out)], sample_dir).output
    assert (out / "distance.csv").read_bytes() == first_csv  # same inputs, same bytes
    assert "gsm8k" in text and f"{expected[0, 1]:.6f}" in text


def test_gsm8k_is_nearer_math_than_code_on_every_metric(sample_dir):
    p = api(["gsm8k", "math", "c4", "code"], sample_dir)
    for name in D.METRIC_NAMES:
        to_math = D.metric(name, p["gsm8k"], p["math"])
        assert to_math < D.metric(name, p["gsm8k"], p["code"]), name
    # Over which token ids occur at all, GSM8K is nearer the math data than web text too.
    assert D.jaccard_distance(p["gsm8k"], p["math"]) < D.jaccard_distance(p["gsm8k"], p["c4"])


def test_gsm8k_nearer_math_than_web_by_js(sample_dir):
    """The paper's premise on the shipped samples: the MAmmoTH-like math data (MATH solutions plus word
    problems with rationales) is nearer GSM8K than web text is; MATH's LaTeX-heavy solutions alone are not."""
    p = api(["gsm8k", "math_mammoth", "math", "c4"], sample_dir)
    web = D.js_divergence(p["gsm8k"], p["c4"])
    assert D.js_divergence(p["gsm8k"], p["math_mammoth"]) < web
    assert D.js_divergence(p["gsm8k"], p["math"]) > web, "why the MATH-only sample was not enough"


def test_proximity_json_equals_api_and_ranks(sample_dir):
    mixes = ["c4:0.8,code:0.2", "c4:0.8,math:0.2"]
    args = ["proximity", "--pretrain", "c4", "--target", "gsm8k", "--metric", "js", "--metric", "paper"]
    for m in mixes:
        args += ["--mix", m]
    got = json.loads(run([*args, "--json"], sample_dir).output)
    p = api(["c4", *mixes, "gsm8k"], sample_dir)
    rows = D.proximity_table(p["c4"], [(m, p[m]) for m in mixes], [("gsm8k", p["gsm8k"])], ["js", "paper"])
    assert got["rows"] == [r.__dict__ for r in rows]
    by_metric = {(r["metric"], r["rank"]): r for r in got["rows"]}
    assert by_metric[("js", 1)]["advantage"] >= by_metric[("js", 2)]["advantage"]
    # Adding math moves C4 towards GSM8K.
    assert next(r for r in got["rows"] if r["metric"] == "js" and r["mixture"] == "c4:0.8,math:0.2")["advantage"] > 0
    table = run(args, sample_dir).output
    assert "advantage" in table and "c4:0.8,math:0.2" in table


def test_count_command_fills_cache(sample_dir):
    first = run(["count", "gsm8k", "--max-tokens-per-doc", "100", "--force"], sample_dir).output
    assert "gsm8k:" in first and "(counted)" in first
    store_counts = C.counts("gsm8k", data_dir=sample_dir, max_tokens_per_doc=100)
    assert f"{int(store_counts.sum()):,} tokens" in first
    again = run(["count", "gsm8k", "--max-tokens-per-doc", "100"], sample_dir).output
    assert "(cached)" in again


def test_protocol_paper_equals_api(sample_dir):
    """--protocol paper: the same numbers as the API's, --pretrain as each mixture's base, and no cache written."""
    got = json.loads(run(["distance", "gsm8k", "c4:0.8,code:0.2", "--protocol", "paper", "--seed", "3", "--json"], sample_dir).output)
    p = api(["gsm8k", "c4:0.8,code:0.2"], sample_dir, protocol="paper", seed=3)
    assert got["metrics"] == D.all_metrics(p["gsm8k"], p["c4:0.8,code:0.2"])
    assert p["gsm8k"].tobytes() != api(["gsm8k"], sample_dir)["gsm8k"].tobytes()  # not the 'all' distribution
    mixes = ["code:0.2,c4:0.8", "c4:0.88,math:0.12"]
    args = ["proximity", "--pretrain", "c4", "--target", "gsm8k", "--metric", "paper", "--protocol", "paper", "--json"]
    got = json.loads(run([*args, "--mix", mixes[0], "--mix", mixes[1]], sample_dir).output)
    p = api(["c4", *mixes, "gsm8k"], sample_dir, protocol="paper", base="c4")
    rows = D.proximity_table(p["c4"], [(m, p[m]) for m in mixes], [("gsm8k", p["gsm8k"])], ["paper"])
    assert got["rows"] == [r.__dict__ for r in rows]
    out = run(["count", "gsm8k", "--protocol", "paper"], sample_dir).output
    counts = C.counts("gsm8k", data_dir=sample_dir, protocol="paper")
    assert f"gsm8k: {int(counts.sum()):,} tokens" in out and "(paper sample, not cached)" in out


@pytest.fixture
def bad_dir(tmp_path):
    d = tmp_path / "bad"
    write_store(d / "a", [np.array([1, 2, 0]), np.array([3, 0])], vocab_size=10)
    write_store(d / "b", [np.array([4, 0])], vocab_size=10)
    write_store(d / "other", [np.array([1, 0])], vocab_size=12)
    write_store(d / "empty", [], vocab_size=10)
    return d


@pytest.mark.parametrize(
    "args, message",
    [
        (["distance", "a", "nope"], "no token store named 'nope'"),
        (["distance", "a", "other"], "different tokenizers"),
        (["distance", "a", "empty"], "empty"),
        (["distance", "a", "a:-1,b:2"], "non-negative"),
        (["distance", "a", "a:0,b:0"], "all zero"),
        (["distance", "a"], "at least two sources"),
        (["count", "nope"], "no token store named 'nope'"),
        (["count", "a", "--docs", "0"], "docs must be a positive"),
        (["proximity", "--pretrain", "a", "--mix", "a:1,other:1", "--target", "b"], "different tokenizers"),
        (["proximity", "--pretrain", "a", "--mix", "b", "--target", "empty"], "empty"),
        (["distance", "a", "b", "--smoothing", "-1"], "smoothing"),
        (["distance", "a", "b", "--protocol", "paper", "--docs", "50"], "docs=50 contradicts"),
        (["count", "a", "--protocol", "paper", "--max-tokens-per-doc", "9"], "max_tokens_per_doc=9 contradicts"),
        (["distance", "a", "a:1,b:1", "--protocol", "paper", "--mix-by", "docs"], "mix_by does not apply"),
        (["distance", "a", "b", "--protocol", "script"], "Invalid value for '--protocol'"),
    ],
)
def test_bad_inputs_give_one_line_errors(bad_dir, args, message):
    result = run(args, bad_dir, ok=False)
    assert result.exit_code == (2 if message.startswith("Invalid value") else 1), result.output  # 2: click's usage errors
    assert message in result.output
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
