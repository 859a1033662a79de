"""Mixes: token stores → a phased plan of dataset weights → a deterministic sample stream.

``plan`` (what to mix when), ``indices`` (Numba kernels: Megatron-compatible sample
and blending indices), ``format`` (the folder ``DATA_DIR/mixes/NAME/``: file names,
``mix.json``, arrays), ``build`` (writes one), ``stream`` (``MixStream``: batches at any
step in O(1)), ``inspect`` (planned vs realised shares).

The names below load their module on first use, so a reader of mixes (the trainer's
``MixStream``) does not load the writer.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "MixPlan": "mixkit.mix.plan",
    "Phase": "mixkit.mix.plan",
    "load_plan_file": "mixkit.mix.plan",
    "parse_phase": "mixkit.mix.plan",
    "simple_phases": "mixkit.mix.plan",
    "build_mix": "mixkit.mix.build",
    "mix_dir": "mixkit.mix.format",
    "MixStream": "mixkit.mix.stream",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mixkit.mix' has no attribute {name!r}")


__all__ = ["MixPlan", "MixStream", "Phase", "build_mix", "load_plan_file", "mix_dir", "parse_phase", "simple_phases"]
