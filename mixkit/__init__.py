"""mixkit: midtraining data mixtures.

corpus → token store (``mixkit.store``) → unigram counts (``mixkit.unigram``) →
distances (``mixkit.distance``); token stores → mix plan → mix stream
(``mixkit.mix``) → trainer batches.

Heavy modules load on first use, so ``import mixkit`` stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from mixkit.errors import MixkitError
from mixkit.store import TokenStore

__version__ = "0.1.0"

_LAZY = {
    "counts": ("mixkit.unigram", "counts"),
    "MixStream": ("mixkit.mix.stream", "MixStream"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(import_module(module), attr)
    raise AttributeError(f"module 'mixkit' has no attribute {name!r}")


__all__ = ["MixkitError", "TokenStore", "__version__", "counts", "MixStream"]
