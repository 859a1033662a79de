"""Mix plans: the three forms give one MixPlan, defaults live in MixPlan, errors are one clear line."""

from __future__ import annotations

import pytest

from mixkit.config import ConfigError, Where, field_default, from_table
from mixkit.errors import MixkitError
from mixkit.mix.plan import MixPlan, Phase, load_plan_file, parse_phase, plan_from_options


def test_the_three_forms_are_one_plan(tmp_path):
    plan_file = tmp_path / "plan.toml"
    plan_file.write_text("steps = 20\n[[phase]]\nstart = 0\nweights = { c4 = 1.0 }\n"
                         "[[phase]]\nstart = 6\nweights = { c4 = 0.8, code = 0.2 }\n")
    simple = plan_from_options(base="c4", add="code", ratio=0.2, start_step=6, steps=20)
    phased = plan_from_options(phases=["0:c4=1", "6:c4:0.8,code:0.2"], steps=20)
    filed = plan_from_options(plan_file=plan_file)
    assert [p.normalized() for p in simple.phases] == [p.normalized() for p in phased.phases]
    assert [p.normalized() for p in phased.phases] == [p.normalized() for p in filed.phases]
    for plan in (simple, phased, filed):
        assert (plan.steps, plan.seq_len, plan.global_batch, plan.seed) == (20, 2048, 1024, 1234)
    assert field_default(MixPlan, "seq_len") == MixPlan([Phase(0, {"c4": 1})], steps=1).seq_len == 2048
    assert plan_from_options(plan_file=plan_file, steps=30, seed=5).steps == 30  # the options win over the file


def test_plan_file_weights_are_kept_as_written(tmp_path):
    plan_file = tmp_path / "plan.toml"
    plan_file.write_text("[[phase]]\nstart = 0\nweights = { c4 = 4, code = 1.5 }\n")
    plan = load_plan_file(plan_file, steps=3)
    assert plan.phases[0].weights == {"c4": 4, "code": 1.5} and isinstance(plan.phases[0].weights["c4"], int)


@pytest.mark.parametrize("kwargs, message", [
    (dict(base="c4", phases=["0:c4=1"], steps=3), "exactly one of"),
    (dict(phases=["0:c4=1"], add="code", steps=3), "--add and --ratio go with --base"),
    (dict(phases=["0:c4=1"]), "--steps is required"),
    (dict(phases=["0:c4=1,c4=2"], steps=3), "--phase '0:c4=1,c4=2': 'c4' is named twice"),
    (dict(phases=["x:c4=1"], steps=3), "start step 'x' is not an integer"),
    (dict(phases=["-1:c4=1"], steps=3), "--phase '-1:c4=1': start_step: must be a non-negative integer"),
    (dict(phases=["0:c4=1"], steps=3, seq_len=1), "seq_len: must be at least 2"),
    (dict(phases=["0:c4=1"], steps=3, global_batch=0), "global_batch: must be a positive integer"),
])
def test_errors_are_one_line(kwargs, message):
    with pytest.raises(MixkitError) as e:
        plan_from_options(**kwargs)
    assert message in e.value.message and "\n" not in e.value.message


def test_mix_plan_from_a_table_is_located():
    plan = from_table(MixPlan, {"phases": [{"start_step": 0, "weights": {"c4": 1}}], "steps": 4})
    assert plan.phases == [Phase(0, {"c4": 1.0})] and plan.seq_len == 2048
    with pytest.raises(ConfigError, match=r"mix.toml: \[mix\] steps: must be a positive integer"):
        from_table(MixPlan, {"phases": [{"start_step": 0, "weights": {"c4": 1}}], "steps": 0}, Where("mix.toml", "mix"))
    assert parse_phase("5:c4").weights == {"c4": 1.0}  # a bare name weighs 1

