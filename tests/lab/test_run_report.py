"""``trainer report``: the table over run directories, its CSV and PNG, and the shared result helpers."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from cli.report_cmd import report
from lab.run_report import MISSING, format_table, load_results, plot_report, report_table, table_csv
from lab.statistics import pearson, relative_spread
from mixkit.errors import MixkitError
from trainer.run_dir import read_metrics

PNG = b"\x89PNG\r\n\x1a\n"


def write_results(d: Path, run: str | None, sft: dict[str, tuple[float, float]]) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    obj = {"stages": [{"name": "midtrain", "kind": "midtrain", "dir": "midtrain", "start_step": 6, "end_step": 10,
                       "final_loss": 4.0}],
           "heldout": None, "evals": {},
           "sft": {t: {"val_loss": v, "heldout_loss": h, "steps": 3, "dir": f"sft-{t}"} for t, (v, h) in sft.items()}}
    if run is not None:
        obj["run"] = run
    (d / "results.json").write_text(json.dumps(obj))
    return d


@pytest.fixture
def runs(tmp_path) -> list[Path]:
    return [
        write_results(tmp_path / "r-base", "base-s1234", {"gsm8k": (2.0, 3.5), "code": (1.6, 3.6)}),
        write_results(tmp_path / "r-code20", "code20-s1234", {"gsm8k": (1.9, 3.45), "code": (1.2, 3.7)}),
        write_results(tmp_path / "r-math12", "math12-s1234", {"gsm8k": (2.1, 3.5)}),  # code SFT unfinished
        write_results(tmp_path / "r-new", "new", {}),  # no SFT yet
    ]


def test_table_values_hand_computed(runs):
    rows = report_table(load_results(runs), "base-s1234")
    assert [(r.task, r.run) for r in rows] == [(t, n) for t in ("gsm8k", "code")
                                               for n in ("base-s1234", "code20-s1234", "math12-s1234", "new")]
    by = {(r.task, r.run): r for r in rows}
    base = by[("gsm8k", "base-s1234")]
    assert base.is_baseline and base.benefit == 0.0 and base.heldout_change == 0.0
    assert by[("gsm8k", "code20-s1234")].benefit == pytest.approx((2.0 - 1.9) / 2.0)
    assert by[("gsm8k", "code20-s1234")].heldout_change == pytest.approx((3.45 - 3.5) / 3.5)
    assert by[("gsm8k", "math12-s1234")].benefit == pytest.approx(-0.05)
    assert by[("code", "code20-s1234")].benefit == pytest.approx(0.25)
    assert by[("code", "code20-s1234")].heldout_change == pytest.approx(0.1 / 3.6)
    for key in [("code", "math12-s1234"), ("gsm8k", "new"), ("code", "new")]:
        r = by[key]
        assert r.val_loss is None and r.heldout_loss is None and r.benefit is None and r.heldout_change is None


def test_format_table(runs):
    text = format_table(report_table(load_results(runs), "base-s1234"))
    lines = text.splitlines()
    assert lines[0].split() == ["task", "run", "SFT", "val", "loss", "C4", "val", "loss", "benefit", "C4", "vs", "base"]
    assert lines[2].split() == ["gsm8k", "base-s1234", "2.0000", "3.5000", "baseline", "baseline"]
    assert lines[3].split() == ["gsm8k", "code20-s1234", "1.9000", "3.4500", "+5.00%", "-1.43%"]
    assert lines[4].split() == ["gsm8k", "math12-s1234", "2.1000", "3.5000", "-5.00%", "+0.00%"]
    assert lines[5].split() == ["gsm8k", "new", MISSING, MISSING, MISSING, MISSING]
    assert lines[6] == ""  # a blank line between tasks
    assert lines[8].split() == ["code", "code20-s1234", "1.2000", "3.7000", "+25.00%", "+2.78%"]
    assert len({len(line) for line in lines[:6]}) <= 2  # aligned columns (the last line may be shorter)


def test_baseline_by_directory_name_and_missing_run_name(tmp_path, runs):
    write_results(tmp_path / "anon", None, {"gsm8k": (1.0, 3.0)})
    results = load_results([runs[1], tmp_path / "anon" / "results.json"])
    assert results[1]["run"] == "anon"
    rows = report_table(results, "r-code20")
    assert [(r.task, r.run) for r in rows if r.is_baseline] == [("gsm8k", "code20-s1234"), ("code", "code20-s1234")]
    assert rows[1].benefit == pytest.approx((1.9 - 1.0) / 1.9)


def test_baseline_without_the_task_gives_no_benefit(runs):
    rows = report_table(load_results(runs), "math12-s1234")
    assert all(r.benefit is None for r in rows if r.task == "code")
    assert [r.benefit is None for r in rows if r.task == "gsm8k"] == [False, False, False, True]


def test_duplicate_run_names_are_told_apart_by_directory(tmp_path):
    a = write_results(tmp_path / "a", "run", {"gsm8k": (2.0, 3.0)})
    b = write_results(tmp_path / "b", "run", {"gsm8k": (1.0, 3.0)})
    rows = report_table(load_results([a, b]), "b")
    assert [r.run for r in rows] == [str(a), str(b)]
    assert rows[0].benefit == pytest.approx(-1.0)


def test_errors(tmp_path, runs):
    (tmp_path / "empty").mkdir()
    with pytest.raises(MixkitError, match="no results.json"):
        load_results([runs[0], tmp_path / "empty"])
    with pytest.raises(MixkitError, match="no such run directory"):
        load_results([tmp_path / "nope"])
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "results.json").write_text('{"run": "x", ')
    with pytest.raises(MixkitError, match="not valid JSON"):
        load_results([tmp_path / "bad"])
    (tmp_path / "bad" / "results.json").write_text('{"run": "x", "sft": [1]}')
    with pytest.raises(MixkitError, match="'sft' must be an object"):
        load_results([tmp_path / "bad"])
    with pytest.raises(MixkitError, match=r"baseline 'zzz' is not among the runs \(base-s1234, code20-s1234"):
        report_table(load_results(runs), "zzz")
    with pytest.raises(MixkitError, match="no run directories"):
        load_results([])


def test_csv_matches_rows(runs):
    rows = report_table(load_results(runs), "base-s1234")
    parsed = list(csv.DictReader(io.StringIO(table_csv(rows))))
    assert len(parsed) == len(rows)
    for p, r in zip(parsed, rows):
        assert p["task"] == r.task and p["run"] == r.run and p["is_baseline"] == str(int(r.is_baseline))
        for key, v in (("sft_val_loss", r.val_loss), ("c4_val_loss", r.heldout_loss), ("benefit", r.benefit),
                       ("c4_change", r.heldout_change)):
            assert (p[key] == "") if v is None else (float(p[key]) == v)


def test_cli_prints_the_api_table_and_writes_files(tmp_path, runs):
    out = tmp_path / "out"
    res = CliRunner().invoke(report, [*map(str, runs), "--baseline", "base-s1234", "--out", str(out)])
    assert res.exit_code == 0, res.output
    expected = format_table(report_table(load_results(runs), "base-s1234"))
    assert res.stdout.rstrip("\n") == expected
    assert (out / "report.csv").read_text() == table_csv(report_table(load_results(runs), "base-s1234"))
    assert (out / "report.png").read_bytes()[:8] == PNG


def test_cli_default_out_is_current_directory(tmp_path, runs, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(report, [str(runs[0]), str(runs[1]), "--baseline", "r-base"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "report.csv").is_file() and (tmp_path / "report.png").read_bytes()[:8] == PNG


@pytest.mark.parametrize("args, message, code", [
    (["MISSING_DIR", "--baseline", "x"], "no such run directory", 1),
    (["RUN", "--baseline", "nope"], "baseline 'nope' is not among the runs", 1),
    (["RUN"], "Missing option '--baseline'", 2),
])
def test_cli_errors_are_one_line(tmp_path, runs, args, message, code):
    args = [str(tmp_path / "missing") if a == "MISSING_DIR" else str(runs[0]) if a == "RUN" else a for a in args]
    res = CliRunner().invoke(report, args)
    assert res.exit_code == code
    assert message in res.output
    assert "Traceback" not in res.output


def test_no_sft_anywhere_is_not_an_error(tmp_path):
    d = write_results(tmp_path / "x", "x", {})
    res = CliRunner().invoke(report, [str(d), "--baseline", "x", "--out", str(tmp_path / "o")])
    assert res.exit_code == 0
    assert "no SFT results" in res.stdout
    assert (tmp_path / "o" / "report.csv").read_text().count("\n") == 1  # header only


def test_plot_report_writes_a_png(tmp_path, runs):
    plot_report(report_table(load_results(runs), "base-s1234"), tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:8] == PNG


# ---------------------------------------------------------------------------- shared helpers

floats = st.floats(-1e3, 1e3, allow_nan=False)


@given(st.lists(st.tuples(floats, floats), min_size=3, max_size=30))
def test_pearson_matches_numpy(pairs):
    x, y = zip(*pairs)
    r = pearson(x, y)
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        assert r is None
    elif r is None:  # only for a variance lost in rounding
        assert min(np.var(x), np.var(y)) < 1e-20 * max(1.0, np.abs(x).max(), np.abs(y).max()) ** 2
    else:
        assert r == pytest.approx(np.corrcoef(x, y)[0, 1], abs=1e-9)


def test_pearson_known_and_undefined():
    assert pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert pearson([1, 2, 3], [3, 1, 2]) == pytest.approx(np.corrcoef([1, 2, 3], [3, 1, 2])[0, 1])
    assert pearson([1, 2], [1, 2]) is None
    assert pearson([1, 1, 1], [1, 2, 3]) is None
    assert pearson([1, 2, 3], [5, 5, 5]) is None
    with pytest.raises(ValueError):
        pearson([1, 2, 3], [1, 2])


def test_relative_spread():
    assert relative_spread([2.0, 2.2]) == pytest.approx(0.2 / 2.1)
    assert relative_spread([1.0, 1.5, 2.0]) == pytest.approx(1.0 / 1.5)
    assert relative_spread([2.0]) is None


def test_read_metrics_skips_partial_lines(tmp_path):
    p = tmp_path / "metrics.jsonl"
    p.write_text('{"step": 0, "loss": 1.0}\nnot json\n[1]\n{"step": 1, "loss": 0.5}\n{"step": 2, "lo')
    assert read_metrics(p) == [{"step": 0, "loss": 1.0}, {"step": 1, "loss": 0.5}]
    assert read_metrics(tmp_path / "absent.jsonl") == []
