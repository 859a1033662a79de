"""Every config in experiments/ from a fresh clone: it parses, dry-runs without the network or any
path outside the repository, its comments' arithmetic holds, and the GPU configs repeat no specialty
corpus more than about four times."""

from __future__ import annotations

import re
import shutil
import sys

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

import pytest
from click.testing import CliRunner

from cli.mixkit_cli import main
from lab import dryrun
from lab.config import load_study
from lab.plan import plan_study
from mixkit import readers
from mixkit.errors import MixkitError
from mixkit.samples import SAMPLES_DIR
from tests.support import ROOT

CONFIGS = sorted(p.name for p in (ROOT / "experiments").glob("*.toml"))
GPU_CONFIGS = ["pythia-70m-gpu.toml", "sweep-gpu.toml"]
MAX_EPOCHS = 4.0
NUMBER = r"(\d[\d,]*)"


def _kind(path) -> str:
    return "sweep" if "sweep" in tomllib.loads(path.read_text()) else "experiment"


def _no_network(monkeypatch):
    def refuse(*_a, **_k):
        raise AssertionError("a dry run must not reach the hub or any URL")

    monkeypatch.setattr(readers, "_hub_builder", refuse)
    monkeypatch.setattr(readers, "_expand_url", refuse)


@pytest.fixture
def fresh_clone(tmp_path, monkeypatch):
    """The experiments folder alone in an empty directory (no ../shared next to it), offline, empty HF cache."""
    shutil.copytree(ROOT / "experiments", tmp_path / "experiments")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    _no_network(monkeypatch)
    return tmp_path


@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_dry_runs_from_a_fresh_clone(fresh_clone, name):
    path = fresh_clone / "experiments" / name
    cfg = load_study(path, kind=_kind(path))
    where = [s for c in cfg.corpora.values() for s in c.sources] + [
        s for t in cfg.tasks.values() for s in (*t.train, *t.val)]
    for source in where:
        assert "://" in source or source.startswith(str(SAMPLES_DIR)), \
            f"{name}: {source} is neither a bundled sample nor a hub dataset or URL"
        assert "shared" not in source.split("/")
    out = fresh_clone / "out"
    result = CliRunner().invoke(main, [_kind(path), "--config", str(path), "--out", str(out), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "training steps:" in result.output and "epochs" in result.output
    for corpus in cfg.corpora:
        assert re.search(rf"^{re.escape(corpus)} ", result.output, re.M), corpus
    assert not out.exists(), "a dry run writes nothing"
    assert "/work/" not in result.output.replace(str(fresh_clone), "")


@pytest.mark.parametrize("name", GPU_CONFIGS)
def test_the_gpu_configs_repeat_no_specialty_corpus_more_than_four_times(name):
    cfg = load_study(ROOT / "experiments" / name)
    plan = plan_study(cfg)
    budgets = {b.name: b for b in dryrun.budgets(cfg, plan, ROOT / "no-such-folder")}
    mixed = {c for v in cfg.variants.values() for c in cfg.mixture(v.name).shares}
    assert {"code", "math"} <= mixed
    for c in mixed:
        b = budgets[c]
        assert b.size is not None and b.epochs is not None, f"{name}: {c} has no declared size"
        assert b.epochs <= MAX_EPOCHS, f"{name}: {c} is read {b.epochs:.2f} times by one run"
    assert budgets[cfg.schedule.pretrain].epochs < 1, "the web corpus is never repeated"
    assert all(s.startswith("hf://") for c in cfg.corpora.values() for s in c.sources)
    assert {"gsm8k", "code"} <= set(cfg.tasks)


@pytest.mark.parametrize("name", CONFIGS)
def test_the_comments_arithmetic_holds(name):
    """`A × B [× C] = N` in a config's comments multiplies out; "training steps with sharing: N" is the plan's."""
    text = (ROOT / "experiments" / name).read_text()
    comments = "\n".join(line.split("#", 1)[1] for line in text.splitlines() if "#" in line)
    flat = re.sub(r"\s*\n\s*", " ", comments)
    for m in re.finditer(rf"{NUMBER} × {NUMBER}(?: × {NUMBER})? = {NUMBER}", flat):
        *factors, product = [int(x.replace(",", "")) for x in m.groups() if x is not None]
        got = 1
        for f in factors:
            got *= f
        assert got == product, f"{name}: {m.group(0)}"
    cfg = load_study(ROOT / "experiments" / name)
    plan = plan_study(cfg)
    for m in re.finditer(rf"training steps with sharing: {NUMBER}", flat):
        assert int(m.group(1).replace(",", "")) == plan.steps_shared, f"{name}: {m.group(0)}"
    if name in GPU_CONFIGS:
        t = cfg.schedule.steps * cfg.schedule.global_batch * cfg.schedule.seq_len
        assert f"{t:,} tokens per run" in flat
        assert f"{plan.steps_shared * cfg.schedule.global_batch * cfg.schedule.seq_len:,}" in flat


def test_declared_sizes_and_prefixes_are_checked(tmp_path):
    table = tomllib.loads((ROOT / "experiments" / "quickstart.toml").read_text())
    table["corpora"]["code"]["tokens"] = -1
    from lab.config import parse_study

    with pytest.raises(MixkitError, match=r"\[corpora.code\] tokens: must be positive"):
        parse_study(table)
    table["corpora"]["code"] = {"sources": ["x.jsonl"], "preset": "code", "template": "{text}"}
    with pytest.raises(MixkitError, match=r"\[corpora.code\] preset: give a preset or a template"):
        parse_study(table)
    table["corpora"]["code"] = {"sources": ["hf://o/n:train"], "template": "no field"}
    with pytest.raises(MixkitError, match=r"\[corpora.code\] template"):
        parse_study(table)
    table["corpora"]["code"] = {"sources": ["hf://o/n:train"], "template": "{text}", "max_tokens": 1000}
    cfg = parse_study(table)
    assert cfg.corpora["code"].sources == ["hf://o/n:train"], "a URL is kept as written, not made a path"
    size, basis = dryrun.corpus_size(cfg.corpora["code"], tmp_path)
    assert size == 1000 and "max_tokens" in basis
    size, basis = dryrun.corpus_size(cfg.corpora["qa"], tmp_path)
    assert size and basis.startswith("estimate from")


def test_draws_follow_the_schedule():
    """draw(c, v) = T · (S · [c = pretrain] + (N − S) · w_c); the study total counts shared base steps once."""
    cfg = load_study(ROOT / "experiments" / "quickstart.toml")
    t, n, s = 8 * 64, 60, 30
    d = dryrun.draws(cfg)
    assert d["base"] == {"c4": t * n}
    assert d["code20"]["code"] == pytest.approx(t * (n - s) * 0.2)
    assert d["code20"]["c4"] == pytest.approx(t * s + t * (n - s) * 0.8)
    assert d["code100"] == {"code": t * (n - s), "c4": t * s}
    totals = dryrun.study_totals(cfg, plan_study(cfg))
    assert sum(totals.values()) == pytest.approx(plan_study(cfg).steps_shared * t)


def test_a_corpus_prefix_and_template_reach_the_store_and_its_cache_check(tmp_path):
    """``max_docs`` / ``max_tokens`` and ``template`` are passed to ``mixkit tokenize``; a rerun reuses the
    stores, and another prefix makes them again."""
    from lab.runner import StudyRunner
    from mixkit.store import TokenStore
    from tests.support import shortened_quickstart, toml_text

    table = tomllib.loads(shortened_quickstart(tmp_path).read_text())
    for name, corpus in table["corpora"].items():
        corpus["max_docs"] = 20 if name == "c4" else 5
    table["corpora"]["code"] = {"sources": ["@samples/code.jsonl.gz"], "template": "# {path}\n{text}", "max_tokens": 3000}
    config = tmp_path / "prefix.toml"
    config.write_text(toml_text(table))
    from lab.config import load_study as load

    logs: list[str] = []
    runner = StudyRunner(load(config), tmp_path / "out", log=logs.append)
    runner.tokenize()
    code = TokenStore.open("code", runner.data_dir)
    assert code.manifest["limit"]["max_tokens"] == 3000 and code.num_tokens <= 3000
    assert code.manifest["text"] == {"template": "# {path}\n{text}"}
    assert len(TokenStore.open("gsm8k", runner.data_dir)) == 5
    assert len(TokenStore.open("c4", runner.data_dir)) + len(TokenStore.open("c4-holdout", runner.data_dir)) == 20
    logs.clear()
    runner.tokenize()
    assert logs == [], "the stores are current"
    table["corpora"]["gsm8k"]["max_docs"] = 6
    config.write_text(toml_text(table))
    runner = StudyRunner(load(config), tmp_path / "out", log=logs.append)
    runner.tokenize()
    assert [m.split(":")[0] for m in logs] == ["tokenize gsm8k"] and len(TokenStore.open("gsm8k", runner.data_dir)) == 6
