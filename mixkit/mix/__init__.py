"""Mixes: token stores → a phased plan of dataset weights → a deterministic sample stream.

``plan`` (what to mix when), ``indices`` (Numba kernels: Megatron-compatible sample
and blending indices), ``build`` (writes ``DATA_DIR/mixes/NAME/``), ``stream``
(``MixStream``: batches at any step in O(1)), ``inspect`` (planned vs realised shares).
"""

from __future__ import annotations

from mixkit.mix.build import build_mix, mix_dir
from mixkit.mix.plan import MixPlan, Phase, load_plan_file, parse_phase, simple_phases
from mixkit.mix.stream import MixStream

__all__ = ["MixPlan", "MixStream", "Phase", "build_mix", "load_plan_file", "mix_dir", "parse_phase", "simple_phases"]
