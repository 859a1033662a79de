"""The one config helper: every key, type and location checked, one error format."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mixkit.config import ConfigError, Where, from_table, invalid, to_table
from mixkit.errors import MixkitError


@dataclass
class Inner:
    lr: float = 3e-4
    kind: Literal["a", "b"] = "a"

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise invalid("lr", "must be positive")


@dataclass
class Outer:
    name: str
    steps: int
    flags: list[int] = field(default_factory=list)
    inner: Inner = field(default_factory=Inner)
    tasks: dict[str, Inner] = field(default_factory=dict)
    maybe: str | None = None
    either: int | list[int] = 0
    anything: Any = None
    derived: str = field(default="", metadata={"config": False})


WHERE = Where("exp.toml", "")


def test_builds_nested_typed_config():
    cfg = from_table(Outer, {"name": "x", "steps": 3, "flags": [1, 2], "inner": {"lr": 1}, "tasks": {"t": {"kind": "b"}},
                             "either": [4]}, WHERE)
    assert cfg.inner.lr == 1.0 and isinstance(cfg.inner.lr, float)
    assert cfg.tasks["t"].kind == "b" and cfg.either == [4] and cfg.maybe is None


@pytest.mark.parametrize("table, message", [
    ({"name": "x", "steps": 1, "stpes": 2}, "exp.toml: top level stpes: unknown key (known: "),
    ({"name": "x"}, "exp.toml: top level steps: missing (required)"),
    ({"name": "x", "steps": "3"}, "exp.toml: top level steps: expected an integer, got '3'"),
    ({"name": "x", "steps": True}, "exp.toml: top level steps: expected an integer, got True"),
    ({"name": "x", "steps": 1, "flags": [1, "a"]}, "exp.toml: top level flags[1]: expected an integer, got 'a'"),
    ({"name": "x", "steps": 1, "inner": {"lrr": 1}}, "exp.toml: [inner] lrr: unknown key (known: kind, lr)"),
    ({"name": "x", "steps": 1, "inner": {"lr": -1}}, "exp.toml: [inner] lr: must be positive"),
    ({"name": "x", "steps": 1, "inner": {"kind": "c"}}, "exp.toml: [inner] kind: expected one of 'a', 'b', got 'c'"),
    ({"name": "x", "steps": 1, "inner": 3}, "exp.toml: [inner]: expected a table, got 3"),
    ({"name": "x", "steps": 1, "tasks": {"t": {"bad": 1}}}, "exp.toml: [tasks.t] bad: unknown key"),
    ({"name": "x", "steps": 1, "either": "z"}, "exp.toml: top level either: expected an integer or a list, got 'z'"),
    ({"name": "x", "steps": 1, "derived": "no"}, "exp.toml: top level derived: unknown key"),
    ({"name": "x", "steps": 1, "inner": {"lr": float("nan")}}, "[inner] lr: expected a finite number"),
])
def test_every_error_names_file_table_and_key(table, message):
    with pytest.raises(ConfigError) as e:
        from_table(Outer, table, WHERE)
    assert message in e.value.message
    assert "\n" not in e.value.message


def test_extra_arguments_and_round_trip():
    cfg = from_table(Outer, {"name": "x", "steps": 2, "inner": {"lr": 0.5}}, WHERE, derived="d")
    assert cfg.derived == "d"
    table = to_table(cfg)
    assert "derived" not in table
    assert from_table(Outer, table, WHERE) == from_table(Outer, {"name": "x", "steps": 2, "inner": {"lr": 0.5}}, WHERE)


@given(st.integers(min_value=-10**6, max_value=10**6), st.floats(allow_nan=False, allow_infinity=False, min_value=1e-9,
                                                                  max_value=1e9))
def test_numbers_round_trip(steps, lr):
    cfg = from_table(Outer, {"name": "n", "steps": steps, "inner": {"lr": lr}}, WHERE)
    assert from_table(Outer, to_table(cfg), WHERE) == cfg


def test_a_config_built_directly_fails_with_one_line():
    """Outside ``from_table`` (Python callers, command-line options) the check is a ``MixkitError``:
    the command line prints ``Error: key: problem``, no traceback; ``ValueError`` still catches it."""
    with pytest.raises(MixkitError) as e:
        Inner(lr=-1)
    assert e.value.message == "lr: must be positive"
    with pytest.raises(ValueError):
        Inner(lr=-1)
