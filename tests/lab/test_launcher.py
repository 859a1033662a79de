"""`--launcher slurm`: the job graph, its scripts, relaunching, and a fake Slurm that runs it to the local report."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

import pytest
from click.testing import CliRunner

from cli.mixkit_cli import main
from lab.config import load_study, parse_study
from lab.launcher import SlurmLauncher, mark_done, run_key
from lab.runner import StudyRunner
from mixkit.errors import MixkitError
from tests.support import fake_slurm, shortened_quickstart, toml_text


def small_study(tmp_path: Path, launcher: dict | None = None) -> Path:
    """The shortened quickstart cut to two variants and one task (two seeds keep the per-seed graph)."""
    table = tomllib.loads(shortened_quickstart(tmp_path).read_text())
    table["variants"] = {"baseline": "base", "base": "c4:1", "code20": "c4:0.8,code:0.2"}
    table["tasks"] = {"gsm8k": table["tasks"]["gsm8k"]}
    table["corpora"] = {k: v for k, v in table["corpora"].items() if k in ("c4", "code", "gsm8k")}
    table["train"].update(heldout_docs=1, eval_seq_len=32)
    table["sft"].update(max_steps=1, seq_len=48)
    if launcher is not None:
        table["launcher"] = launcher
    path = tmp_path / "study.toml"
    path.write_text(toml_text(table))
    return path


def _graph(jobs) -> dict[str, tuple]:
    return {j.key: (j.runs, j.array, j.after_ok, j.after_any) for j in jobs}


def test_the_job_graph_orders_base_runs_branches_and_the_report(tmp_path):
    config = small_study(tmp_path)
    launcher = SlurmLauncher(load_study(config), tmp_path / "out", config, log=lambda m: None)
    graph = _graph(launcher.graph(finished=set(), queued={}))
    assert graph == {
        "prepare": ([], False, [], []),
        "pretrain-s1234": (["pretrain-s1234"], False, ["prepare"], []),
        "branches-s1234": (["base-s1234", "code20-s1234"], True, ["prepare", "pretrain-s1234"], []),
        "pretrain-s1235": (["pretrain-s1235"], False, ["prepare"], []),
        "branches-s1235": (["base-s1235", "code20-s1235"], True, ["prepare", "pretrain-s1235"], []),
        "report": ([], False, [], ["prepare", "pretrain-s1234", "branches-s1234", "pretrain-s1235", "branches-s1235"]),
    }
    # Finished runs get no job; queued ones are depended on by id, not resubmitted.
    graph = _graph(launcher.graph(finished={"pretrain-s1234", "base-s1234", "pretrain-s1235"},
                                  queued={"code20-s1235": "77_1"}))
    assert graph == {
        "prepare": ([], False, [], []),
        "branches-s1234": (["code20-s1234"], True, ["prepare"], []),
        "branches-s1235": (["base-s1235"], True, ["prepare"], []),
        "report": ([], False, [], ["prepare", "branches-s1234", "77_1", "branches-s1235"]),
    }
    assert SlurmLauncher.dependency(launcher.graph(set(), {"pretrain-s1234": "12"})[1], {"prepare": "11"}) \
        == "afterok:11:12"


def test_scripts_carry_the_launcher_table_and_flags_win(tmp_path):
    config = small_study(tmp_path, {"partition": "gpu", "account": "proj", "time": "1-00:00:00", "gpus_per_job": 2,
                                    "cpus_per_job": 8, "setup": ["module load cuda"], "sbatch_args": ["--qos=high"]})
    cfg = load_study(config)
    launcher = SlurmLauncher(cfg, tmp_path / "out", config, overrides={"partition": "a100", "time": None})
    jobs = {j.key: j for j in launcher.graph(set(), {})}
    base = launcher.script(jobs["pretrain-s1234"])
    for line in ("#SBATCH --partition=a100", "#SBATCH --account=proj", "#SBATCH --time=1-00:00:00",
                 "#SBATCH --gres=gpu:2", "#SBATCH --cpus-per-task=8", "#SBATCH --qos=high", "module load cuda"):
        assert line in base.splitlines(), line
    assert base.rstrip().endswith("--mark-done --run pretrain-s1234")
    array = launcher.script(jobs["branches-s1235"])
    assert "RUNS=(base-s1235 code20-s1235)" in array and '--run "${RUNS[$SLURM_ARRAY_TASK_ID]}"' in array
    assert "#SBATCH --array=0-1" in array
    assert "--gres" not in launcher.script(jobs["prepare"]) and "--gres" not in launcher.script(jobs["report"])


@pytest.mark.parametrize(("launcher", "message"), [
    ({"time": "soon"}, r"\[launcher\] time: 'soon' is not a Slurm time"),
    ({"gpus_per_job": -1}, r"\[launcher\] gpus_per_job: must be >= 0"),
    ({"partitoin": "gpu"}, r"\[launcher\] partitoin: unknown key"),
    ({"sbatch_args": ["qos=high"]}, r"\[launcher\] sbatch_args: 'qos=high' is not an sbatch option"),
])
def test_launcher_table_errors(tmp_path, launcher, message):
    with pytest.raises(MixkitError, match=message):
        load_study(small_study(tmp_path, launcher))


def test_the_launcher_table_changes_no_run_key(tmp_path):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
    one = run_key(small_study(tmp_path / "a", {"partition": "x"}))
    assert one == run_key(small_study(tmp_path / "b", {"partition": "y", "gpus_per_job": 4}))
    table = tomllib.loads((tmp_path / "a" / "study.toml").read_text())
    table["seeds"] = [1, 2]
    (tmp_path / "c.toml").write_text(toml_text(table))
    assert run_key(tmp_path / "c.toml") != one
    assert parse_study(table).launcher.partition == "x"


def test_dry_run_prints_the_graph_and_submits_nothing(tmp_path, monkeypatch):
    slurm = fake_slurm(tmp_path, monkeypatch)
    monkeypatch.chdir(tmp_path)
    config = small_study(tmp_path)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["experiment", "--config", str(config), "--out", str(out), "--launcher", "slurm",
                                       "--dry-run", "--partition", "gpu"])
    assert result.exit_code == 0, result.output
    assert "job branches-s1234: array of 2: [0] base-s1234, [1] code20-s1234; 1 GPU(s); afterok:prepare:pretrain-s1234" \
        in result.output
    assert "job report: report.md from every run that finished; 0 GPU(s); afterany:prepare:pretrain-s1234:" \
        "branches-s1234:pretrain-s1235:branches-s1235" in result.output
    assert "--partition=gpu" in result.output and "--gres=gpu:1" in result.output
    assert "dry run: 6 job(s), nothing submitted" in result.output
    assert slurm.jobs == [] and not out.exists()
    # The local launcher's dry run prints the plan.
    result = CliRunner().invoke(main, ["experiment", "--config", str(config), "--out", str(out), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "1 variants + the baseline; 4 variant runs" in result.output and not out.exists()


def test_sbatch_missing_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch, no squeue
    config = small_study(tmp_path)
    result = CliRunner().invoke(main, ["experiment", "--config", str(config), "--out", str(tmp_path / "o"),
                                       "--launcher", "slurm"])
    assert result.exit_code != 0 and "Error: sbatch not found" in result.output


def _normalised_report(out: Path) -> str:
    text = (out / "report.md").read_text()
    return re.sub(r"- Command: `[^`]*`", "- Command: …", text).replace(str(out), "OUT")


@pytest.mark.slow
def test_a_fake_slurm_runs_the_graph_to_the_local_report_and_a_relaunch_resubmits_only_the_failed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = small_study(tmp_path)
    # The local reference trains each run as its own process (`--jobs`), as every Slurm job does: the
    # in-process path can differ in the last float digits (seen in a p-value of a ~0 difference).
    # One math thread per process: a BLAS that adapts its threads to the load (MKL_DYNAMIC) sums in
    # another order on a busy machine, which moves such a p-value in its third digit.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(var, "1")
    local = tmp_path / "local"
    StudyRunner(load_study(config), local, log=lambda m: None, config_path=str(config), jobs=2).run()

    slurm = fake_slurm(tmp_path, monkeypatch)
    out = tmp_path / "cluster"
    monkeypatch.setenv("FAKE_SLURM_FAIL", "quickstart-branches-s1235[1]")  # code20-s1235 fails once
    result = CliRunner().invoke(main, ["experiment", "--config", str(config), "--out", str(out), "--launcher", "slurm"])
    assert result.exit_code == 0, result.output
    jobs = {j["name"].removeprefix("quickstart-"): j for j in slurm.jobs}
    assert list(jobs) == ["prepare", "pretrain-s1234", "branches-s1234", "pretrain-s1235", "branches-s1235", "report"]
    ids = {k: j["id"] for k, j in jobs.items()}
    assert jobs["prepare"]["dependencies"] == []
    assert jobs["pretrain-s1234"]["dependencies"] == [["afterok", ids["prepare"]]]
    assert jobs["branches-s1234"]["dependencies"] == [["afterok", ids["prepare"]], ["afterok", ids["pretrain-s1234"]]]
    assert jobs["branches-s1234"]["options"]["array"] == "0-1"
    assert jobs["report"]["dependencies"] == [["afterany", ids[k]] for k in
                                              ("prepare", "pretrain-s1234", "branches-s1234", "pretrain-s1235", "branches-s1235")]
    assert all(j["options"].get("kill-on-invalid-dep") == "yes" for k, j in jobs.items() if k != "prepare")
    assert jobs["branches-s1235"]["tasks"] == {"0": "COMPLETED", "1": "FAILED"}
    assert jobs["report"]["state"] == "FAILED", "the report job names the run that did not finish"
    report_log = next((out / "logs" / "slurm").glob("report-*.out")).read_text()
    assert "1 run(s) did not finish: code20-s1235" in report_log
    assert (out / "report.md").exists(), "the report holds what finished"
    assert json.loads((out / "launch" / "jobs.json").read_text())["runs"]["code20-s1235"] == f"{ids['branches-s1235']}_1"

    # Relaunch: only the failed run is resubmitted (with prepare and the report), and the report is the local one.
    monkeypatch.delenv("FAKE_SLURM_FAIL")
    before = len(slurm.jobs)
    result = CliRunner().invoke(main, ["experiment", "--config", str(config), "--out", str(out), "--launcher", "slurm"])
    assert result.exit_code == 0, result.output
    again = {j["name"].removeprefix("quickstart-"): j for j in slurm.jobs[before:]}
    assert list(again) == ["prepare", "branches-s1235", "report"]
    assert "RUNS=(code20-s1235)" in again["branches-s1235"]["script"]
    assert again["branches-s1235"]["dependencies"] == [["afterok", again["prepare"]["id"]]]
    assert all(j["state"] == "COMPLETED" for j in again.values())
    assert _normalised_report(out) == _normalised_report(local)
    assert json.loads((out / "experiment.json").read_text())["command"].endswith("--launcher slurm")


def test_a_relaunch_depends_on_jobs_still_queued(tmp_path, monkeypatch):
    """A run whose job Slurm still holds is not resubmitted; what needs it waits for that job id."""
    slurm = fake_slurm(tmp_path, monkeypatch)
    monkeypatch.chdir(tmp_path)
    config = small_study(tmp_path)
    out = tmp_path / "out"
    cfg = load_study(config)
    # Everything held: the first launch submits the whole graph and nothing runs.
    names = ["prepare", "pretrain-s1234", "branches-s1234", "pretrain-s1235", "branches-s1235", "report"]
    monkeypatch.setenv("FAKE_SLURM_HOLD", ",".join(f"quickstart-{n}" for n in names))
    SlurmLauncher(cfg, out, config, log=lambda m: None).launch()
    first = {j["name"].removeprefix("quickstart-"): j["id"] for j in slurm.jobs}
    # Meanwhile two runs finished (as their jobs would record it).
    for run in ("pretrain-s1234", "base-s1234"):
        mark_done(out, run, config)
    monkeypatch.setenv("FAKE_SLURM_HOLD", ",".join(f"quickstart-{n}" for n in names))
    jobs = SlurmLauncher(cfg, out, config, log=lambda m: None).launch()
    graph = _graph(jobs)
    assert list(graph) == ["prepare", "report"], "every run is finished or still queued"
    assert graph["report"][3] == ["prepare", f"{first['branches-s1234']}_1", first["pretrain-s1235"],
                                  f"{first['branches-s1235']}_0", f"{first['branches-s1235']}_1"]


def test_a_sweep_dry_run_prints_its_plan_and_its_job_graph(tmp_path, monkeypatch):
    from tests.lab.test_sweep import shortened_sweep

    slurm = fake_slurm(tmp_path, monkeypatch)
    monkeypatch.chdir(tmp_path)
    config = shortened_sweep(tmp_path)
    result = CliRunner().invoke(main, ["sweep", "--config", str(config), "--out", str(tmp_path / "out"),
                                       "--launcher", "slurm", "--dry-run", "--gpus-per-job", "0"])
    assert result.exit_code == 0, result.output
    assert "4 grid variants + the baseline" in result.output
    assert ("job branches-s1234: array of 5: [0] base-s1234, [1] code50-at2-s1234, [2] code100-at2-s1234, "
            "[3] code50-at4-s1234, [4] code100-at4-s1234; 0 GPU(s); afterok:prepare:pretrain-s1234") in result.output
    assert "job branches-s1235: array of 1: [0] base-s1235" in result.output, "variant_seeds = 1: the baseline alone"
    assert "--gres" not in result.output and slurm.jobs == []
