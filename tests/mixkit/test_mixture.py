"""The one mixture expression type and parser."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mixkit.errors import MixkitError
from mixkit.mixture import Mixture, is_mixture_expr, parse_mixture


def test_forms_agree():
    a = parse_mixture("c4:0.8,code:0.2")
    assert a.weights == {"c4": 0.8, "code": 0.2}
    assert parse_mixture("c4=0.8, code=0.2") == a
    assert parse_mixture({"c4": 0.8, "code": 0.2}) == a
    assert parse_mixture(a) is a
    assert parse_mixture("code").weights == {"code": 1.0}
    assert parse_mixture("c4:4,code:1").shares == pytest.approx({"c4": 0.8, "code": 0.2})
    assert parse_mixture("c4:1,code:0").shares == {"c4": 1.0}
    assert parse_mixture("c4:1,code:0").is_single
    assert str(a) == "c4:0.8,code:0.2"
    assert parse_mixture("runs/data/x.y:0.5").names == ["runs/data/x.y"]


@pytest.mark.parametrize("expr, words", [
    ("", "expected NAME:WEIGHT"),
    ("c4:0.8,", "expected NAME:WEIGHT"),
    ("c4:x", "is not a number"),
    (":0.5", "no name"),
    ("c4:-1", "non-negative"),
    ("c4:inf", "non-negative"),
    ("c4:0,code:0", "all zero"),
    ("c4:0.5,c4:0.5", "named twice"),
    (3, "must be text"),
])
def test_bad_expressions_one_line(expr, words):
    with pytest.raises(MixkitError) as e:
        parse_mixture(expr)
    assert words in e.value.message and "\n" not in e.value.message


def test_is_mixture_expr():
    assert is_mixture_expr("c4:0.8,code:0.2") and is_mixture_expr("c4,code") and is_mixture_expr("code:1")
    assert not is_mixture_expr("c4") and not is_mixture_expr("data/c4") and not is_mixture_expr("x:y")


names = st.text(alphabet="abcdefghijklmnop_-0123456789", min_size=1, max_size=8)


@given(st.dictionaries(names, st.floats(min_value=0.001, max_value=1000), min_size=1, max_size=6))
def test_text_round_trip(weights):
    m = Mixture.parse(weights)
    again = Mixture.parse(str(m))
    assert again.names == m.names
    assert again.shares == pytest.approx(m.shares, rel=1e-5)
    assert sum(m.shares.values()) == pytest.approx(1.0)


@pytest.mark.parametrize("expr, message", [
    ("c4=x", "--phase '0:c4=x': weight 'x' of 'c4' is not a number"),
    ("c4=1,code=-0.5", "--phase '0:c4=x': weight of 'code' must be finite and non-negative, got -0.5"),
    ({"c4": 0, "code": 0}, "--phase '0:c4=x': the weights are all zero"),
    ({"c4": True}, "--phase '0:c4=x': weight of 'c4' is not a number: True"),
])
def test_where_names_the_place_in_errors(expr, message):
    with pytest.raises(MixkitError) as e:
        Mixture.parse(expr, where="--phase '0:c4=x'")
    assert e.value.message == message
