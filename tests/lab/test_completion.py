"""lab.completion: the completion records that let a rerun skip finished (and pruned) runs."""

from __future__ import annotations

from lab import completion
from mixkit import atomic


def test_run_key_ignores_where_the_run_lives_but_not_what_it_computes():
    table = {"name": "code20-s1", "seed": 1, "out_dir": "/a/runs/x", "data_dir": "/a/data", "optim": {"lr": 1e-3}}
    key = completion.run_key(table, {"m": "f1"}, "base-key")
    assert key == completion.run_key(dict(table, out_dir="runs/x", data_dir="data"), {"m": "f1"}, "base-key")
    assert key != completion.run_key(dict(table, optim={"lr": 2e-3}), {"m": "f1"}, "base-key")
    assert key != completion.run_key(table, {"m": "f2"}, "base-key"), "a rebuilt mix is new input"
    assert key != completion.run_key(table, {"m": "f1"}, "other-base"), "a changed base run makes its variants stale"
    assert key != completion.run_key(table, {"m": "f1"})


def test_a_record_holds_for_the_same_key_and_the_same_results(tmp_path):
    run_dir = tmp_path / "runs" / "r"
    run_dir.mkdir(parents=True)
    assert not completion.is_recorded(tmp_path, "r", run_dir, "k")
    atomic.write_json(run_dir / "results.json", {"stages": []})
    completion.write_record(tmp_path, "r", run_dir, "k")
    assert completion.is_recorded(tmp_path, "r", run_dir, "k")
    assert not completion.is_recorded(tmp_path, "r", run_dir, "other"), "other inputs"
    atomic.write_json(run_dir / "results.json", {"stages": [1]})
    assert not completion.is_recorded(tmp_path, "r", run_dir, "k"), "results changed since"
    (run_dir / "results.json").unlink()
    assert not completion.is_recorded(tmp_path, "r", run_dir, "k"), "the run folder was lost"
    completion.record_path(tmp_path, "r").write_text("not json")
    assert not completion.is_recorded(tmp_path, "r", run_dir, "k")


def test_pruning_deletes_the_checkpoint_folders_only(tmp_path):
    stage = tmp_path / "runs" / "pretrain-s1" / "pretrain"
    for step in ("step_00000003", "step_00000006"):
        (stage / "checkpoints" / step).mkdir(parents=True)
        (stage / "checkpoints" / step / "state.pt").write_bytes(b"x")
    (stage / "metrics.jsonl").write_text("{}\n")
    assert completion.prune_checkpoints([stage, tmp_path / "missing"]) == 2
    assert not (stage / "checkpoints").exists() and (stage / "metrics.jsonl").is_file()
    assert completion.prune_checkpoints([stage]) == 0
