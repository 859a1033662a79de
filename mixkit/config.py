"""One config pattern: a typed dataclass built from a TOML table, checked whole at load.

Every config of the project (tokenize, mix plan, model, optimizer, train, run, stage, SFT,
task, experiment, sweep) is a ``@dataclass`` whose field annotations are its schema.
``from_table(Cls, table, where)`` builds it:

- an unknown key, a missing required key and a value of the wrong type are refused with
  one line naming the file, the table and the key, in one format::

      experiments/small.toml: [optim] lrr: unknown key (known: beta1, beta2, eps, ...)
      experiments/small.toml: [schedule] steps: expected an integer, got '12'

- types come from the annotations: ``int`` (not ``bool``), ``float`` (an integer is
  widened), ``str``, ``bool``, ``list[X]``, ``tuple[X, ...]``, ``dict[str, X]``,
  ``X | None``, unions tried in order, ``Literal[...]``, ``Any``, and nested dataclasses
  (built from a sub-table, so their errors name ``[outer.inner]``);
- fields with ``metadata={"config": False}`` are not read from the table (derived data);
- ``__post_init__`` checks values and raises ``invalid(key, problem)``, which is
  located the same way. The default of every field is written once, in its dataclass.

Because the whole tree of a config is built before any work starts, a typo in the last
table of a file fails in the first second, not after an hour of tokenizing.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

from mixkit.errors import MixkitError

T = TypeVar("T")


class ConfigError(MixkitError):
    """A config value the user can fix; the message locates it (file, table, key)."""


class Invalid(MixkitError, ValueError):
    """Raised by a config's ``__post_init__``: ``key`` is the offending field (or dotted sub-key).

    ``from_table`` locates it (file, table, key). A config built directly in Python or
    from command-line options raises it as it is: a ``MixkitError`` (one line on the
    command line, ``key: problem``), and a ``ValueError`` for callers that catch those.
    """

    def __init__(self, key: str, problem: str):
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


def invalid(key: str, problem: str) -> Invalid:
    """The exception a ``__post_init__`` raises for a bad value: ``raise invalid("lr", "must be positive")``."""
    return Invalid(key, problem)


@dataclass(frozen=True)
class Where:
    """Where a table came from: the file (None when built in Python) and its dotted table name."""

    file: str | None = None
    table: str = ""

    def sub(self, name: str) -> Where:
        return Where(self.file, f"{self.table}.{name}" if self.table else str(name))

    def location(self) -> str:
        table = f"[{self.table}]" if self.table else "top level"
        return f"{self.file}: {table}" if self.file else table

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.location()} {key}: {problem}")


def where_of(file: str | os.PathLike | None, table: str = "") -> Where:
    return Where(None if file is None else str(file), table)


def config_fields(cls: type) -> list[dataclasses.Field]:
    """The fields a table may set (those not marked ``metadata={"config": False}``)."""
    return [f for f in dataclasses.fields(cls) if f.metadata.get("config", True) and f.init]


def config_keys(cls: type) -> list[str]:
    return [f.name for f in config_fields(cls)]


def has_default(f: dataclasses.Field) -> bool:
    return f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING


def field_default(cls: type, name: str) -> Any:
    """The default of field ``name`` of the config ``cls``, for a command-line option or its help
    text, so that the default stays written once, in the dataclass."""
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    if not has_default(f):
        raise KeyError(f"{cls.__name__}.{name} has no default")
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()


def from_table(cls: type[T], table: Any, where: Where | None = None, **extra: Any) -> T:
    """Build the dataclass ``cls`` from ``table``, checking every key and type; ``extra`` are
    keyword arguments that do not come from the table (derived or runtime values)."""
    where = where or Where()
    if not isinstance(table, dict):
        raise ConfigError(f"{where.location()}: expected a table, got {_show(table)}")
    fields = {f.name: f for f in config_fields(cls)}
    unknown = [k for k in table if k not in fields]
    if unknown:
        raise where.error(str(unknown[0]), f"unknown key (known: {', '.join(sorted(fields)) or 'none'})")
    hints = _hints(cls)
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        if name in table:
            kwargs[name] = coerce(table[name], hints.get(name, Any), where, name)
        elif name not in extra and not has_default(f):
            raise where.error(name, "missing (required)")
    kwargs.update(extra)
    try:
        return cls(**kwargs)
    except Invalid as e:
        raise where.error(e.key, e.problem) from None
    except ConfigError:
        raise
    except MixkitError as e:  # a check not yet written as invalid(key, ...): still located
        raise ConfigError(f"{where.location()}: {e.message}") from None


def coerce(value: Any, kind: Any, where: Where, key: str) -> Any:
    """``value`` checked against the annotation ``kind`` (see the module docstring)."""
    if kind is Any or kind is object:
        return value
    origin = typing.get_origin(kind)
    args = typing.get_args(kind)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return coerce(value, option, where, key)
            except ConfigError as e:
                errors.append(e)
        if len(options) == 1:
            raise errors[0]
        raise where.error(key, f"expected {' or '.join(_name(o) for o in options)}, got {_show(value)}")
    if origin is Literal:
        if value not in args:
            raise where.error(key, f"expected one of {', '.join(repr(a) for a in args)}, got {_show(value)}")
        return value
    if dataclasses.is_dataclass(kind) and isinstance(kind, type):
        return from_table(kind, value, where.sub(key))
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise where.error(key, f"expected a list, got {_show(value)}")
        item = args[0] if args else Any
        items = [coerce(v, item, where, f"{key}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise where.error(key, f"expected a table, got {_show(value)}")
        item = args[1] if len(args) == 2 else Any
        if dataclasses.is_dataclass(item):
            sub = where.sub(key)
            return {str(k): from_table(item, v, sub.sub(str(k))) for k, v in value.items()}
        return {str(k): coerce(v, item, where, f"{key}.{k}") for k, v in value.items()}
    if kind is bool:
        if not isinstance(value, bool):
            raise where.error(key, f"expected true or false, got {_show(value)}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise where.error(key, f"expected an integer, got {_show(value)}")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise where.error(key, f"expected a number, got {_show(value)}")
        if not math.isfinite(value):
            raise where.error(key, f"expected a finite number, got {_show(value)}")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise where.error(key, f"expected a string, got {_show(value)}")
        return value
    if kind is Path:
        if not isinstance(value, str):
            raise where.error(key, f"expected a path, got {_show(value)}")
        return Path(value)
    if isinstance(kind, type):
        if not isinstance(value, kind):
            raise where.error(key, f"expected {_name(kind)}, got {_show(value)}")
        return value
    return value


def to_table(obj: Any) -> Any:
    """A config back to plain TOML/JSON data (the inverse of ``from_table`` for written files)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        values = {f.name: getattr(obj, f.name) for f in config_fields(type(obj))}
        return {k: to_table(v) for k, v in values.items() if v is not None}
    if isinstance(obj, dict):
        return {str(k): to_table(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list | tuple):
        return [to_table(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _hints(cls: type) -> dict[str, Any]:
    module = sys.modules.get(cls.__module__)
    return typing.get_type_hints(cls, globalns=vars(module) if module else None)


def _name(kind: Any) -> str:
    if kind is int:
        return "an integer"
    if kind is float:
        return "a number"
    if kind is str:
        return "a string"
    if kind is bool:
        return "true or false"
    origin = typing.get_origin(kind)
    if origin in (list, tuple):
        return "a list"
    if origin is dict or dataclasses.is_dataclass(kind):
        return "a table"
    return getattr(kind, "__name__", str(kind))


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
