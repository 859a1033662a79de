"""The run directory's one owner: names, atomic writes, the tolerant metrics reader, the results readers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mixkit.errors import MixkitError
from trainer import run_dir as rd


def test_names_of_a_run_directory(tmp_path):
    run = tmp_path / "run"
    assert rd.results_path(run) == run / "results.json"
    assert rd.run_config_path(run) == run / "run.json"
    assert rd.stage_dir(run, "midtrain") == run / "midtrain"
    assert rd.metrics_path(rd.stage_dir(run, "midtrain")) == run / "midtrain" / "metrics.jsonl"
    assert rd.loss_plot_path(run / "pretrain") == run / "pretrain" / "loss.png"
    assert rd.sft_dir(run, "gsm8k") == run / "sft-gsm8k"
    assert rd.sft_dir(run, "gsm8k", {"sft": {"gsm8k": {"dir": "elsewhere"}}}) == run / "elsewhere"
    ckpt = rd.step_dir(run / "pretrain", 60)
    assert ckpt == run / "pretrain" / "checkpoints" / "step_00000060"
    assert rd.checkpoint_stage_dir(ckpt) == run / "pretrain"


def test_results_path_accepts_the_file_or_its_folder(tmp_path):
    (tmp_path / "results.json").write_text("{}")
    assert rd.results_path(tmp_path / "results.json") == tmp_path / "results.json"
    assert rd.results_path(tmp_path) == tmp_path / "results.json"


def test_run_json_is_written_atomically(tmp_path, monkeypatch):
    """A write that fails half way (here: at fsync) leaves the old run.json whole and no stray file."""
    rd.write_run_config(tmp_path, {"name": "r", "seed": 1})
    before = rd.run_config_path(tmp_path).read_bytes()
    assert json.loads(before) == {"name": "r", "seed": 1}

    def fail(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError, match="disk full"):
        rd.write_run_config(tmp_path, {"name": "r", "seed": 2, "big": "x" * 100_000})
    monkeypatch.undo()
    assert rd.run_config_path(tmp_path).read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]


def test_results_round_trip_and_resume(tmp_path):
    assert rd.resume_results(tmp_path, "r") == rd.new_results("r")
    results = rd.new_results("r")
    results["stages"].append({"name": "pretrain", "kind": "pretrain", "final_loss": 3.5})
    rd.write_results(tmp_path, results)
    assert rd.resume_results(tmp_path, "r") == results
    assert rd.read_results(tmp_path) == results
    assert rd.resume_results(tmp_path, "other") == rd.new_results("other"), "another run's results are not continued"


@pytest.mark.parametrize("content,match", [
    (None, "no results.json"),
    ("{not json", "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"sft": [1]}', "'sft' must be an object"),
    ('{"stages": {}}', "'stages' must be a list"),
])
def test_read_results_refuses_what_is_not_results(tmp_path, content, match):
    if content is not None:
        (tmp_path / "results.json").write_text(content)
    with pytest.raises(MixkitError, match=match):
        rd.read_results(tmp_path)
    with pytest.raises(MixkitError, match="no such run directory"):
        rd.read_results(tmp_path / "absent")


def test_read_metrics_skips_partial_and_bad_lines(tmp_path):
    p = tmp_path / "metrics.jsonl"
    good = [{"step": 0, "loss": 2.0}, {"step": 1, "loss": 1.5}, {"step": 2, "eval_loss": 1.7}]
    lines = [json.dumps(good[0]).encode(), b"not json", json.dumps(good[1]).encode(), b"[1, 2]", b"3",
             b'{"step": 9, "loss": \xff\xfe', json.dumps(good[2]).encode(), b'{"step": 3, "lo']
    p.write_bytes(b"\n".join(lines))
    assert rd.read_metrics(p) == good
    assert rd.read_metrics(tmp_path / "absent.jsonl") == []


@given(st.lists(st.dictionaries(st.sampled_from(["step", "loss", "lr"]), st.integers(0, 100)), max_size=8),
       st.binary(max_size=40))
def test_read_metrics_returns_every_whole_record_whatever_garbage_follows(records, tail):
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "metrics.jsonl"
        text = "".join(json.dumps(r) + "\n" for r in records).encode() + tail.replace(b"\n", b" ").replace(b"\r", b" ")
        p.write_bytes(text)
        got = rd.read_metrics(p)
        assert got[: len(records)] == records
        assert all(isinstance(r, dict) for r in got)


def test_metrics_log_resume_keeps_the_steps_before_the_checkpoint(tmp_path):
    p = tmp_path / "stage" / "metrics.jsonl"
    log = rd.MetricsLog(p)
    for step in range(6):
        log.write({"step": step, "loss": 1.0 / (step + 1)})
    log.close()
    with open(p, "a") as f:
        f.write('{"step": 6, "lo')  # killed mid-line
    log = rd.MetricsLog(p, start_step=4)
    log.write({"step": 4, "loss": 0.5})
    log.close()
    assert [r["step"] for r in rd.read_metrics(p)] == [0, 1, 2, 3, 4]
    assert rd.MetricsLog(p).close() is None and rd.read_metrics(p) == [], "a fresh start empties the log"


def test_content_key_is_canonical():
    a = rd.content_key({"b": 1, "a": [1, 2], "p": Path("x")})
    assert a == rd.content_key({"a": [1, 2], "p": "x", "b": 1}), "key order and str() of paths do not matter"
    assert a != rd.content_key({"a": [1, 2], "p": "x", "b": 2})
    assert len(a) == 16 and int(a, 16) >= 0


def test_result_readers():
    results = {
        "stages": [{"name": "pretrain", "kind": "pretrain"}, {"name": "midtrain", "kind": "midtrain"}],
        "evals": {"pretrain": {"heldout_loss": 3.5}, "midtrain": {"heldout_loss": 3.4}},
        "sft": {"gsm8k": {"val_loss": 1.9, "heldout_loss": 3.6}, "code": {"val_loss": float("nan")}, "bad": 3},
    }
    assert rd.sft_tasks(results) == ["gsm8k", "code"]
    assert rd.sft_losses(results, "gsm8k") == (1.9, 3.6)
    assert rd.sft_losses(results, "code") == (None, None), "not finite: not a result"
    assert rd.sft_losses(results, "absent") == (None, None)
    assert rd.pre_sft_heldout_loss(results) == 3.4, "after the last pretrain/midtrain stage"
    results["evals"]["midtrain"] = {}
    assert rd.pre_sft_heldout_loss(results) == 3.5
    assert rd.pre_sft_heldout_loss({}) is None


def test_stage_dirs_and_branch_source(tmp_path):
    run = tmp_path / "runs" / "code20-s1"
    for sub in ("midtrain", "sft-gsm8k", "extra", "empty"):
        (run / sub).mkdir(parents=True)
    for sub in ("midtrain", "sft-gsm8k", "extra"):
        (run / sub / "metrics.jsonl").write_text("")
    branch = os.path.relpath(rd.step_dir(tmp_path / "runs" / "pretrain-s1" / "pretrain", 3), run)
    results = {"stages": [{"name": "midtrain", "kind": "midtrain", "dir": "midtrain", "branched_from": branch},
                          {"name": "sft", "kind": "sft"}]}
    assert rd.stage_dirs(run, results) == [(run / "midtrain", "midtrain"), (run / "extra", "extra")]
    assert rd.stage_dirs(run, None) == [(run / "extra", "extra"), (run / "midtrain", "midtrain")]
    source = rd.branch_source(run, results["stages"][0])
    assert source == tmp_path / "runs" / "pretrain-s1" / "pretrain" / "checkpoints" / "step_00000003"
    assert rd.checkpoint_stage_dir(source) == tmp_path / "runs" / "pretrain-s1" / "pretrain"
    assert rd.branch_source(run, results["stages"][1]) is None
