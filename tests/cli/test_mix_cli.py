"""``mixkit build-mix`` and ``mixkit inspect`` from the command line: forms, bad input, reports."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from click.testing import CliRunner

from cli.mixkit_cli import main
from mixkit.mix import MixStream
from tests.support import random_docs


@pytest.fixture
def stores(make_store):
    rng = np.random.default_rng(3)
    make_store("c4", random_docs(rng, 150, 1000, 80))
    make_store("code", random_docs(rng, 200, 1000, 40))
    make_store("math", random_docs(rng, 40, 1000, 30))
    other_tok = {"file": "other.json", "sha256": hashlib.sha256(b"other").hexdigest(), "vocab_size": 1000}
    make_store("alien", random_docs(rng, 40, 1000, 30), tokenizer=other_tok)
    make_store("tiny", [np.array([5, 6, 0])])


def run(*args: str):
    return CliRunner().invoke(main, ["build-mix", *args], catch_exceptions=False)


SHAPE = ["--steps", "20", "--seq-len", "16", "--global-batch", "8", "--seed", "7"]


def test_simple_form_equals_phase_form_and_plan_file(data_dir, stores, tmp_path):
    r = run("--base", "c4", "--add", "code", "--ratio", "0.2", "--start-step", "6", "--name", "simple", *SHAPE)
    assert r.exit_code == 0, r.output
    assert "planned" in r.output and "realised" in r.output
    r = run("--phase", "0:c4=1", "--phase", "6:c4=0.8,code=0.2", "--name", "phased", *SHAPE)
    assert r.exit_code == 0, r.output
    plan = tmp_path / "plan.toml"
    plan.write_text(
        "steps = 20\nseq_len = 16\nglobal_batch = 8\nseed = 7\n"
        "[[phase]]\nstart = 0\nweights = { c4 = 1.0 }\n"
        "[[phase]]\nstart = 6\nweights = { c4 = 4, code = 1 }\n"
    )
    r = run("--plan", str(plan), "--name", "planned")
    assert r.exit_code == 0, r.output
    streams = [MixStream.open(n) for n in ("simple", "phased", "planned")]
    for t in (0, 5, 6, 19):
        assert np.array_equal(streams[0].batch(t), streams[1].batch(t))
        assert np.array_equal(streams[0].batch(t), streams[2].batch(t))


def test_ratio_one_and_start_zero_and_base_only(data_dir, stores):
    assert run("--base", "c4", "--add", "code", "--ratio", "1.0", "--start-step", "4", "--name", "cpt", *SHAPE).exit_code == 0
    s = MixStream.open("cpt")
    assert set(s.sources(3).tolist()) == {0} and set(s.sources(4).tolist()) == {1}
    assert run("--base", "c4", "--add", "code", "--ratio", "0.25", "--name", "from0", *SHAPE).exit_code == 0
    assert 1 in MixStream.open("from0").sources(0)
    assert run("--base", "c4", "--name", "baseline", *SHAPE).exit_code == 0
    assert MixStream.open("baseline").source_names == ["c4"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--base", "nope"], "no token store named 'nope'"),
        (["--base", "c4", "--add", "alien", "--ratio", "0.1"], "different tokenizers"),
        (["--base", "c4", "--add", "code", "--ratio", "1.5"], r"--ratio must be in \[0, 1\]"),
        (["--base", "c4", "--add", "code", "--ratio", "-0.1"], r"--ratio must be in \[0, 1\]"),
        (["--phase", "0:c4=1,code=-0.5"], "negative"),
        (["--phase", "0:c4=0,code=0"], "weights are all zero"),
        (["--base", "c4", "--add", "code", "--ratio", "0.2", "--start-step", "20"], "must be below"),
        (["--phase", "0:c4=1", "--phase", "30:code=1"], "must be below steps"),
        (["--phase", "0:c4=1", "--phase", "8:code=1", "--phase", "4:c4=1"], "out of order"),
        (["--phase", "3:c4=1"], "first phase must start at step 0"),
        (["--phase", "0:c4=x"], "not a number"),
        (["--phase", "c4=1"], "START_STEP"),
        (["--base", "tiny"], "larger than store 'tiny'"),
        (["--base", "c4", "--world-size", "3"], "not divisible by world_size 3"),
        (["--base", "c4", "--ratio", "0.2"], "--ratio needs --add|go with --base"),
        (["--base", "c4", "--phase", "0:c4=1"], "exactly one of"),
        (["--base", "math", "--steps", "400"], "--allow-repeat"),
    ],
)
def test_bad_input_is_a_clear_error_and_writes_nothing(data_dir, stores, args, message):
    shape = [a for a in SHAPE]
    if "--steps" in args:
        i = shape.index("--steps")
        del shape[i : i + 2]
    r = CliRunner().invoke(main, ["build-mix", *args, "--name", "bad", *shape])
    usage = any(m in message for m in ("exactly one of", "needs --add"))  # options that do not go together
    assert r.exit_code == (2 if usage else 1), r.output
    assert r.output.startswith("Error: ") and "Traceback" not in r.output
    import re

    assert re.search(message, r.output), r.output
    mixes = data_dir / "mixes"
    assert not mixes.exists() or not any(mixes.iterdir())


def test_plan_file_errors(data_dir, stores, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[[phase]]\nstart = 0\n")
    r = CliRunner().invoke(main, ["build-mix", "--plan", str(bad), "--name", "x", *SHAPE])
    assert r.exit_code == 1 and f"{bad}: [phase[0]] weights: missing (required)" in r.output
    bad.write_text("this is = = not toml")
    r = CliRunner().invoke(main, ["build-mix", "--plan", str(bad), "--name", "x", *SHAPE])
    assert r.exit_code == 1 and "invalid TOML" in r.output
    r = CliRunner().invoke(main, ["build-mix", "--plan", str(tmp_path / "missing.toml"), "--name", "x", *SHAPE])
    assert r.exit_code == 1 and "plan file" in r.output and "does not exist" in r.output
    for text, message in [
        ("steps = 20\n[[phase]]\nstart = 0\nweights = { c4 = 1 }\nsteps_ = 3\n", "[phase[0]] steps_: unknown key"),
        ("stpes = 20\n[[phase]]\nstart = 0\nweights = { c4 = 1 }\n", "top level stpes: unknown key"),
        ("[[phase]]\nstart = 0\nweights = { c4 = 1, code = -1 }\n", "[phase[0]]: phase at step 0: weight of 'code'"),
        ("[[phase]]\nstart = -2\nweights = { c4 = 1 }\n", "[phase[0]] start: must be a non-negative integer"),
        ("[[phase]]\nstart = 0\nweights = { c4 = 'x' }\n", "[phase[0]] weights.c4: expected an integer or a number"),
        ("seq_len = 1\n[[phase]]\nstart = 0\nweights = { c4 = 1 }\n", "seq_len: must be at least 2"),
        ("phase = []\n", "top level phase: needs [[phase]] tables"),
    ]:
        bad.write_text(text)
        r = CliRunner().invoke(main, ["build-mix", "--plan", str(bad), "--name", "x", "--steps", "20"])
        assert r.exit_code == 1 and message in r.output and str(bad) in r.output, (text, r.output)


def test_overwrite_flag(data_dir, stores):
    assert run("--base", "c4", "--name", "ow", *SHAPE).exit_code == 0
    r = CliRunner().invoke(main, ["build-mix", "--base", "code", "--name", "ow", *SHAPE])
    assert r.exit_code == 1 and "--overwrite" in r.output
    assert run("--base", "code", "--name", "ow", "--overwrite", *SHAPE).exit_code == 0
    assert MixStream.open("ow").source_names == ["code"]


def test_allow_repeat_flag(data_dir, stores):
    shape = SHAPE[2:]
    assert run("--base", "math", "--steps", "400", "--allow-repeat", "--name", "rep", *shape).exit_code == 0
    assert MixStream.open("rep").manifest["datasets"][0]["epochs"] > 1


def test_inspect_reports_shares_and_writes_png(data_dir, stores, tmp_path):
    assert run("--phase", "0:c4=1", "--phase", "5:c4=0.6,code=0.3,math=0.1", "--name", "ins", *SHAPE).exit_code == 0
    png = tmp_path / "shares.png"
    r = CliRunner().invoke(main, ["inspect", "ins", "--plot", str(png)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "phase steps [0, 5)" in r.output and "phase steps [5, 20)" in r.output
    line = next(ln for ln in r.output.splitlines() if ln.strip().startswith("math"))
    planned, realised, samples = line.split()[1:4]
    assert float(planned) == pytest.approx(0.1) and abs(float(realised) - 0.1) < 1 / 120 + 1e-9
    assert int(samples.replace(",", "")) == 12  # 10% of 15 steps x 8 samples
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = CliRunner().invoke(main, ["inspect", "ins"], catch_exceptions=False)
    assert (data_dir / "mixes" / "ins" / "shares.png").is_file()
    r = CliRunner().invoke(main, ["inspect", "missing"])
    assert r.exit_code == 1 and "no mix named 'missing'" in r.output
