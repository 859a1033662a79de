"""The one mixture expression: ``"c4:0.8,code:0.2"``, used by counts, distance, mix plans and the lab.

Syntax: items separated by commas, each ``NAME:WEIGHT`` or ``NAME=WEIGHT`` (the weight
after the last ``:`` or ``=``); a bare ``NAME`` is ``NAME:1``. Weights are finite and
non-negative with a positive sum; a name appears once. The weights are kept as written
(``weights``) and are read as proportions (``shares`` = weight / sum of weights, zero
weights dropped): ``"c4:4,code:1"`` and ``"c4:0.8,code:0.2"`` are the same mixture.

What a share means (tokens or documents) is decided by the user of the mixture: counts
mixes token distributions, a mix plan draws samples.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mixkit.errors import MixkitError

_SEPARATOR = re.compile(r"[:=](?=[^:=]*$)")


@dataclass(frozen=True)
class Mixture:
    """Named non-negative weights in the order written."""

    items: tuple[tuple[str, float], ...]

    def __post_init__(self) -> None:
        _check(self.items, f"mixture '{self}'" if self.items else "mixture")

    @classmethod
    def parse(cls, expr: str | Mapping[str, float] | Mixture, *, where: str | None = None) -> Mixture:
        """A mixture from its text, a ``{name: weight}`` mapping, or another mixture.

        Errors read ``mixture 'EXPR': problem``, or ``WHERE: problem`` when ``where`` names
        the place the expression came from (``--phase '6000:c4=0.8,code=0.2'``).
        """
        if isinstance(expr, Mixture):
            return expr
        if isinstance(expr, Mapping):
            label = where or f"mixture {dict(expr)!r}"
            items = []
            for name, w in expr.items():
                if isinstance(w, bool) or not isinstance(w, int | float):
                    raise MixkitError(f"{label}: weight of '{name}' is not a number: {w!r}")
                items.append((str(name), float(w)))
            _check(items, label)
            return cls(tuple(items))
        if not isinstance(expr, str):
            raise MixkitError(f"{where + ': ' if where else ''}mixture must be text like 'c4:0.8,code:0.2', got {expr!r}")
        label = where or f"mixture '{expr}'"
        parts = [p.strip() for p in expr.split(",")]
        if not parts or any(not p for p in parts):
            raise MixkitError(f"{label}: expected NAME:WEIGHT items separated by commas")
        items = []
        for part in parts:
            m = _SEPARATOR.search(part)
            if m is None:
                items.append((part, 1.0))
                continue
            name, w = part[:m.start()].strip(), part[m.end():].strip()
            try:
                weight = float(w)
            except ValueError:
                raise MixkitError(f"{label}: weight '{w}' of '{name}' is not a number") from None
            items.append((name, weight))
        _check(items, label)
        return cls(tuple(items))

    @property
    def names(self) -> list[str]:
        return [n for n, _ in self.items]

    @property
    def weights(self) -> dict[str, float]:
        """As written."""
        return dict(self.items)

    @property
    def shares(self) -> dict[str, float]:
        """Proportions summing to 1; zero weights dropped."""
        total = sum(w for _, w in self.items)
        return {n: w / total for n, w in self.items if w > 0}

    @property
    def is_single(self) -> bool:
        """One dataset with a positive weight (a "100%" mixture)."""
        return len(self.shares) == 1

    def __iter__(self) -> Iterator[tuple[str, float]]:
        return iter(self.items)

    def __str__(self) -> str:
        return ",".join(f"{n}:{w:g}" for n, w in self.items)


def _check(items: Sequence[tuple[str, float]], label: str) -> None:
    """The rules of a mixture (module docstring); errors start with ``label``."""
    names = [n for n, _ in items]
    if not names:
        raise MixkitError(f"{label}: no items")
    for name, w in items:
        if not name:
            raise MixkitError(f"{label}: an item has a weight but no name")
        if not math.isfinite(w) or w < 0:
            raise MixkitError(f"{label}: weight of '{name}' must be finite and non-negative, got {w:g}")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise MixkitError(f"{label}: '{twice[0]}' is named twice")
    if sum(w for _, w in items) <= 0:
        raise MixkitError(f"{label}: the weights are all zero")


def is_mixture_expr(text: Any) -> bool:
    """Whether a command-line argument is a mixture rather than one store name or path."""
    return isinstance(text, str) and ("," in text or _SEPARATOR.search(text) is not None
                                      and _looks_like_weight(text[_SEPARATOR.search(text).end():]))


def _looks_like_weight(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def parse_mixture(expr: str | Mapping[str, float] | Mixture) -> Mixture:
    """``Mixture.parse``: the project's one parser of mixture expressions."""
    return Mixture.parse(expr)
